"""Reading a server stream, written once for the sync and the asyncio API: its messages
with a failed call raised as the ImagesvcError of its status, and the guard of objects
that hand out one stream's messages (a watch, an operation) and so can be iterated once.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import TypeVar

import grpc

from imagesvc_client.errors import error_from_rpc

MessageT = TypeVar("MessageT")


@contextlib.contextmanager
def rpc_errors() -> Iterator[None]:
    """A failed call raises the ImagesvcError subclass of its status (NotFound, ...)."""
    try:
        yield
    except grpc.RpcError as error:
        raise error_from_rpc(error) from error


def messages(responses: Iterable[MessageT]) -> Iterator[MessageT]:
    """The messages of a sync server stream; a failed call raises its ImagesvcError."""
    with rpc_errors():
        yield from responses


async def async_messages(responses: AsyncIterable[MessageT]) -> AsyncIterator[MessageT]:
    """The messages of an asyncio server stream; a failed call raises its ImagesvcError."""
    with rpc_errors():
        async for response in responses:
            yield response


class IteratedOnce:
    """The guard of an object handing out one stream's messages: a second iteration would
    silently find the stream consumed, so it is refused."""

    def __init__(self, what: str) -> None:
        self._what = what
        self.started = False

    def start(self) -> None:
        if self.started:
            raise RuntimeError(f"{self._what} can be iterated only once")
        self.started = True
