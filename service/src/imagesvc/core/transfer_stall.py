"""Ends a pull or push that stopped moving (like containerd's 5-minute stall timeout).

A transfer is stalled when, for `seconds` of waiting on the Engine, no byte moved and
no layer changed state: a registry that stopped sending, a daemon stuck on a lock. It
ends with DEADLINE_EXCEEDED / TRANSFER_STALLED, apart from the caller's deadline, which
bounds the whole call: a 3 GB image on a slow link that still moves is never cut.

Only the time spent waiting for the Engine's next message counts, not the time a
consumer takes to read what was already sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from imagesvc.core.errors import DeadlineExceededError, Reason


class StallWatch:
    """The stall clock of one transfer (`seconds` 0: never stalls). Used from one loop."""

    def __init__(self, seconds: float, operation: str) -> None:
        self._seconds = seconds
        self._operation = operation
        self._idle = 0.0

    def moved(self) -> None:
        """The transfer made progress: the stall clock starts again."""
        self._idle = 0.0

    @contextlib.asynccontextmanager
    async def waiting(self) -> AsyncIterator[None]:
        """Around one wait for the Engine's next message: raises the stall error when the
        waits since the last progress add up to the stall timeout."""
        if self._seconds <= 0:
            yield
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(max(0.0, self._seconds - self._idle)):
                yield
        except TimeoutError:
            raise self.error() from None
        finally:
            self._idle += loop.time() - started

    def error(self) -> DeadlineExceededError:
        return DeadlineExceededError(
            f"the {self._operation} stalled: no bytes moved and no layer changed for"
            f" {self._seconds:g} seconds (this service's transfer stall timeout), so it was"
            " stopped; the registry or the Docker daemon stopped answering",
            reason=Reason.TRANSFER_STALLED,
            metadata={"stall_timeout_seconds": f"{self._seconds:g}"},
        )
