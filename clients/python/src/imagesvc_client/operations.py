"""Running pulls, pushes and builds: iterate for the events (transfer progress or build
output), then read the result.

    pull = client.pull("127.0.0.1:5000/team/app:1.0")
    for progress in pull:
        print(progress.layers_done, "/", progress.layers_total)
    print(pull.result.image_id)

``result`` (sync) reads whatever is left of the stream first, so
``client.pull(ref).result`` simply waits. Leaving a ``with`` block early cancels the
operation, which stops the work on the daemon too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Any, Generic, TypeVar

import grpc

from imagesvc_client._streams import IteratedOnce
from imagesvc_client.errors import ImagesvcError, Internal, error_from_rpc

__all__ = ["AsyncOperation", "Operation"]

EventT = TypeVar("EventT")
ResultT = TypeVar("ResultT")
ResponseT = TypeVar("ResponseT")


# Splits one response message into (event, None) or (None, result).
Splitter = Callable[[ResponseT], "tuple[EventT | None, ResultT | None]"]


class _Outcome(Generic[EventT, ResultT]):
    """What one pull, push or build stream has told so far; the sync and asyncio
    operations read their streams through it."""

    def __init__(
        self,
        what: str,
        split: Splitter[Any, EventT, ResultT],
        local_error: Callable[[], BaseException | None],
    ) -> None:
        self.what = what
        self._split = split
        self._local_error = local_error
        self.result: ResultT | None = None
        self.error: ImagesvcError | None = None
        self.finished = False

    def event(self, response: Any) -> EventT | None:
        """The event a response carries; keeps the result when it carries that."""
        event, result = self._split(response)
        if result is not None:
            self.take(result)
            return None
        return event

    def fail(self, error: grpc.RpcError | ImagesvcError) -> None:
        """Records how the stream failed."""
        if isinstance(error, ImagesvcError):
            self.error = error
            return
        # An error of our own request stream (e.g. reading the build context) made
        # gRPC cancel the call: report that, not the cancellation.
        local = self._local_error()
        if local is not None:
            self.finished = True
            raise local from None
        self.error = error_from_rpc(error)

    def end(self) -> None:
        """The stream is over: raises its error, or one for a missing result."""
        self.finish()
        if self.error is not None:
            raise self.error

    def take(self, result: ResultT) -> None:
        if self.result is not None:
            raise Internal(f"the {self.what} stream sent a second result")
        self.result = result

    def finish(self) -> None:
        self.finished = True
        if self.result is None and self.error is None:
            self.error = Internal(f"the {self.what} stream ended without a result")

    def value(self) -> ResultT:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class Operation(Generic[EventT, ResultT]):
    """A running pull, push or build (sync API). Iterate once for its events."""

    def __init__(
        self,
        what: str,
        responses: Iterator[ResponseT],
        split: Splitter[ResponseT, EventT, ResultT],
        *,
        local_error: Callable[[], BaseException | None] = lambda: None,
    ) -> None:
        self._responses = responses
        self._outcome: _Outcome[EventT, ResultT] = _Outcome(what, split, local_error)
        self._once = IteratedOnce("an operation's events")

    def __iter__(self) -> Iterator[EventT]:
        self._once.start()
        return self._events()

    def _events(self) -> Iterator[EventT]:
        outcome = self._outcome
        try:
            for response in self._responses:
                event = outcome.event(response)
                if event is not None:
                    yield event
        except (grpc.RpcError, ImagesvcError) as error:
            outcome.fail(error)
        outcome.end()

    def wait(self) -> ResultT:
        """Reads the rest of the stream (if not iterated yet, all of it) and returns
        the result, or raises the ImagesvcError the operation ended with."""
        if not self._once.started:
            for _ in self:
                pass
        elif not self._outcome.finished:
            raise RuntimeError("the events are still being iterated")
        return self._outcome.value()

    @property
    def result(self) -> ResultT:
        """The result: same as ``wait()``."""
        return self.wait()

    @property
    def done(self) -> bool:
        return self._outcome.finished

    def cancel(self) -> None:
        """Stops the operation (the server stops the work on the daemon)."""
        if isinstance(self._responses, grpc.RpcContext):
            self._responses.cancel()

    def __enter__(self) -> Operation[EventT, ResultT]:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self.done:
            self.cancel()


class AsyncOperation(Generic[EventT, ResultT]):
    """A running pull, push or build (asyncio API): ``async for`` its events, then
    ``result``; or ``await op.wait()``."""

    def __init__(
        self,
        what: str,
        call: grpc.aio.Call,
        responses: AsyncIterator[ResponseT],
        split: Splitter[ResponseT, EventT, ResultT],
        *,
        local_error: Callable[[], BaseException | None] = lambda: None,
    ) -> None:
        self._call = call
        self._responses = responses
        self._outcome: _Outcome[EventT, ResultT] = _Outcome(what, split, local_error)
        self._once = IteratedOnce("an operation's events")

    def __aiter__(self) -> AsyncIterator[EventT]:
        self._once.start()
        return self._events()

    async def _events(self) -> AsyncIterator[EventT]:
        outcome = self._outcome
        try:
            async for response in self._responses:
                event = outcome.event(response)
                if event is not None:
                    yield event
        except (grpc.RpcError, ImagesvcError) as error:
            outcome.fail(error)
        outcome.end()

    async def wait(self) -> ResultT:
        """Reads the rest of the stream and returns the result (or raises)."""
        if not self._once.started:
            async for _ in self:
                pass
        elif not self._outcome.finished:
            raise RuntimeError("the events are still being iterated")
        return self._outcome.value()

    @property
    def result(self) -> ResultT:
        """The result once the events were iterated to the end (or raises its error)."""
        if not self._outcome.finished:
            raise RuntimeError("the operation has not finished: iterate it or await wait()")
        return self._outcome.value()

    @property
    def done(self) -> bool:
        return self._outcome.finished

    def cancel(self) -> None:
        self._call.cancel()

    async def __aenter__(self) -> AsyncOperation[EventT, ResultT]:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self.done:
            self.cancel()
