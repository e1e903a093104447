"""The `with` protocol of the test harness's helpers, written once: each starts something
(a sandbox, a served process, a proxy, a listener) and must stop it whatever happened."""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Self


class ClosedOnExit(abc.ABC):
    """`with thing:` gives the thing and calls its `close()` at the end."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class StartedOnEnter(ClosedOnExit):
    """Also started by `with`: the block gets what `start()` returns, once it is up."""

    @abc.abstractmethod
    def start(self) -> Self: ...

    def __enter__(self) -> Self:
        return self.start()
