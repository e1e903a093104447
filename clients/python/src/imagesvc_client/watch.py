"""Watching images: WatchImages as an iterator of its messages.

    with client.watch(labels=["team=a"], send_initial_images=True) as watch:
        for message in watch:
            if message.HasField("live"):
                print("-- now live --")
            else:
                change = message.change
                print(change.type, change.image.id)

Each message is an ``imagesvc.v1.WatchImagesResponse``: a ``change`` (type and image)
or the ``live`` marker, with a resume token. ``watch.resume_token`` is the last one
received: after a disconnect (``Unavailable``, e.g. the server restarted or the
connection reached its maximum age), watch again with ``resume_token=watch.resume_token``
to get every later change, none repeated. ``FailedPrecondition`` with reason
``WATCH_EXPIRED`` means that is no longer possible: list the images again and start a
new watch. Leaving the ``with`` block (or ``cancel()``) ends the call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any

import grpc

from imagesvc_client._streams import IteratedOnce, async_messages, messages
from imagesvc_client.v1 import image_service_pb2 as pb

__all__ = ["WATCH_EXPIRED", "AsyncImageWatch", "ImageWatch"]

# The reason of a resume token (or a watch) that cannot continue: list again.
WATCH_EXPIRED = "WATCH_EXPIRED"


class _Watch:
    """What both watches keep: the resume token of the last message received."""

    def __init__(self, resume_token: str) -> None:
        self.resume_token = resume_token
        self._once = IteratedOnce("a watch")

    def _received(self, response: pb.WatchImagesResponse) -> pb.WatchImagesResponse:
        if response.resume_token:
            self.resume_token = response.resume_token
        return response


class ImageWatch(_Watch):
    """A running WatchImages call (sync API). Iterate once for its messages."""

    def __init__(self, responses: Iterator[pb.WatchImagesResponse], resume_token: str) -> None:
        super().__init__(resume_token)
        self._responses = responses

    def __iter__(self) -> Iterator[pb.WatchImagesResponse]:
        self._once.start()
        return map(self._received, messages(self._responses))

    def cancel(self) -> None:
        """Ends the call."""
        if isinstance(self._responses, grpc.RpcContext):
            self._responses.cancel()

    def __enter__(self) -> ImageWatch:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.cancel()


class AsyncImageWatch(_Watch):
    """A running WatchImages call (asyncio API): ``async for`` its messages."""

    def __init__(self, call: Any, resume_token: str) -> None:
        super().__init__(resume_token)
        self._call = call

    def __aiter__(self) -> AsyncIterator[pb.WatchImagesResponse]:
        self._once.start()
        return self._messages()

    async def _messages(self) -> AsyncIterator[pb.WatchImagesResponse]:
        async for response in async_messages(self._call):
            yield self._received(response)

    def cancel(self) -> None:
        self._call.cancel()

    async def __aenter__(self) -> AsyncImageWatch:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.cancel()
