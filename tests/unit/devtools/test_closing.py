"""devtools/closing.py: the harness helpers' `with` protocol."""

from __future__ import annotations

from typing import Self

import pytest

from devtools.closing import ClosedOnExit, StartedOnEnter


class Recorder(StartedOnEnter):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def start(self) -> Self:
        self.calls.append("start")
        return self

    def close(self) -> None:
        self.calls.append("close")


class Listener(ClosedOnExit):
    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def test_started_on_enter_and_closed_on_exit() -> None:
    recorder = Recorder()
    with recorder as entered:
        assert entered is recorder
        assert recorder.calls == ["start"]
    assert recorder.calls == ["start", "close"]


def fail_inside(listener: Listener) -> None:
    with listener as entered:
        assert entered is listener
        assert listener.closed == 0
        raise RuntimeError("boom")


def test_closed_on_exit_even_when_the_block_fails_and_the_error_goes_on() -> None:
    listener = Listener()
    with pytest.raises(RuntimeError, match="boom"):
        fail_inside(listener)
    assert listener.closed == 1
