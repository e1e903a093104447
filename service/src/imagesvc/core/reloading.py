"""A parsed file that follows its changes on disk, so that an operator can revoke a token
or a certificate mapping without a restart (including a Kubernetes Secret or ConfigMap
volume, whose files are replaced through a symlink swap).

Checked at most once per interval, on use: one stat() when nothing changed. A file that
fails to read or parse keeps the last good version and logs an error that names the
file and the problem, never its content.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class FileProblem(ValueError):
    """A file that cannot be used; the message never quotes its content."""


_MISSING = (-1, -1, -1, -1)


def _signature(stat: os.stat_result) -> tuple[int, int, int, int]:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


class ReloadingFile(Generic[T]):
    """`current()` is the parsed file, reloaded when it changed. The first load happens in
    the constructor and raises FileProblem, so a broken file stops the start-up."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        parse: Callable[[bytes], T],
        *,
        what: str,
        interval_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.what = what
        self._parse = parse
        self._interval = interval_seconds
        self._clock = clock
        self._lock = threading.Lock()
        try:
            signature = _signature(self.path.stat())
            self._value = self._read()
        except OSError as exc:
            raise FileProblem(f"{what} {self.path}: {exc.strerror or exc}") from None
        self._signature = signature
        self._checked = clock()

    def _read(self) -> T:
        return self._parse(self.path.read_bytes())

    def current(self) -> T:
        now = self._clock()
        if now - self._checked < self._interval:
            return self._value
        with self._lock:
            if now - self._checked >= self._interval:
                self._checked = now
                self._refresh()
        return self._value

    def _refresh(self) -> None:
        try:
            signature = _signature(self.path.stat())
        except OSError as exc:
            self._keep(f"cannot stat it: {exc.strerror or exc}", _MISSING)
            return
        if signature == self._signature:
            return
        try:
            value = self._read()
        except OSError as exc:
            self._keep(f"cannot read it: {exc.strerror or exc}", signature)
            return
        except FileProblem as exc:
            self._keep(str(exc), signature)
            return
        self._value = value
        self._signature = signature
        log.info(f"reloaded the {self.what}", extra={"path": str(self.path)})

    def _keep(self, problem: str, signature: tuple[int, int, int, int]) -> None:
        # Remember a broken version's signature: one error per change, not one per check.
        if signature != self._signature:
            log.error(
                f"the {self.what} changed but cannot be used; keeping the last good version",
                extra={"path": str(self.path), "problem": problem},
            )
        self._signature = signature
