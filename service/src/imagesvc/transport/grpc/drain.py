"""Graceful drain of the gRPC port on shutdown.

grpc core cancels calls that reach a server which has begun to stop, so a client sees
CANCELLED, a code it does not retry. Draining first instead answers every new
ImageService call with UNAVAILABLE (retryable, e.g. on another replica) while the calls
already running finish; only then is the grpc server stopped.
"""

from __future__ import annotations

import asyncio
import contextlib

from imagesvc.core.errors import Reason, UnavailableError


class Drain:
    """Counts running calls; once `start()` is called, refuses new ones."""

    def __init__(self) -> None:
        self._running = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.draining = False

    def call(self) -> contextlib.AbstractContextManager[None]:
        """Counts one call while it runs; refuses it (UNAVAILABLE) once draining."""
        if self.draining:
            raise UnavailableError(
                "imagesvc is shutting down; retry the call", reason=Reason.SHUTTING_DOWN
            )
        return _Running(self)

    def _enter(self) -> None:
        self._running += 1
        self._idle.clear()

    def _leave(self) -> None:
        self._running -= 1
        if self._running == 0:
            self._idle.set()

    async def start(self, within: float) -> bool:
        """Refuse new calls, then wait up to `within` seconds for running ones to end.
        True when none is left."""
        self.draining = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), within)
        return self._running == 0


class _Running:
    """One call counted by a Drain (a class: cheaper per RPC than a generator)."""

    __slots__ = ("_drain",)

    def __init__(self, drain: Drain) -> None:
        self._drain = drain

    def __enter__(self) -> None:
        self._drain._enter()

    def __exit__(self, *exc_info: object) -> None:
        self._drain._leave()
