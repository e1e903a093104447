"""Every log record of the process while a test runs, at DEBUG, in the server's JSON
format and raw (message, arguments, every attribute), so that a test can read the access
and audit lines and assert that no secret was written anywhere."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from imagesvc.logs import JsonFormatter

_LOGGERS = ["", "imagesvc", "grpc", "uvicorn", "asyncio", "docker", "urllib3", "requests"]


class CapturedLogs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._json = JsonFormatter()
        self._lock = threading.Lock()
        self.lines: list[str] = []
        self.records: list[dict[str, Any]] = []
        self.loggers: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        line = self._json.format(record)
        with self._lock:
            self.loggers.add(record.name)
            self.lines.append(line)
            self.lines.append(f"{record.msg!r} {record.args!r} {record.exc_text or ''}")
            self.lines.append(repr(vars(record)))
            self.records.append(json.loads(line))

    def named(self, logger: str) -> list[dict[str, Any]]:
        with self._lock:
            return [record for record in self.records if record["logger"] == logger]

    def since(self, mark: int) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.records[mark:])

    def mark(self) -> int:
        with self._lock:
            return len(self.records)

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], within: float = 5.0
    ) -> list[dict[str, Any]]:
        """The records matching `predicate`, once there is one (lines written after the
        caller got its answer, like the access line of a failed call, come a bit later)."""
        deadline = time.monotonic() + within
        while True:
            with self._lock:
                found = [record for record in self.records if predicate(record)]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    def assert_free_of(self, secrets: Iterable[str]) -> None:
        with self._lock:
            blob = "\n".join(self.lines)
        for secret in secrets:
            assert secret not in blob, "a secret appears in a log line"


@contextmanager
def capture_logs() -> Iterator[CapturedLogs]:
    handler = CapturedLogs()
    saved = [(logging.getLogger(name), logging.getLogger(name).level) for name in _LOGGERS]
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        for logger, _ in saved:
            logger.setLevel(logging.DEBUG)
            # A library logger that someone silenced must speak here too.
            assert not logger.disabled, logger.name
        yield handler
    finally:
        root.removeHandler(handler)
        for logger, level in saved:
            logger.setLevel(level)
