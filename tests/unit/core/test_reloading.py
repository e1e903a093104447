"""ReloadingFile: follows changes (new content, atomic replacement), checks at most once
per interval, keeps the last good version of a broken or missing file and logs one
error per change without the content."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from imagesvc.core.reloading import FileProblem, ReloadingFile


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _parse(data: bytes) -> str:
    text = data.decode()
    if text.startswith("!"):
        raise FileProblem("starts with '!'")
    return text


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _file(path: Path, clock: Clock) -> ReloadingFile[str]:
    return ReloadingFile(path, _parse, what="test file", interval_seconds=1.0, clock=clock)


def test_a_change_is_seen_after_the_interval(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "f"
    path.write_text("one")
    watched = _file(path, clock)
    path.write_text("two!")
    assert watched.current() == "one"  # checked at most once per interval
    clock.now += 1.0
    assert watched.current() == "two!"


def test_an_atomic_replacement_is_seen(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "f"
    path.write_text("one")
    watched = _file(path, clock)
    staged = tmp_path / "f.new"
    staged.write_text("one")  # same size and content: a new inode all the same
    staged.replace(path)
    clock.now += 1.0
    assert watched.current() == "one"
    staged.write_text("uno")
    staged.replace(path)
    clock.now += 1.0
    assert watched.current() == "uno"


def test_a_broken_version_keeps_the_last_good_one_and_logs_once(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "f"
    path.write_text("good")
    watched = _file(path, clock)
    path.write_text("!secret-content")
    caplog.set_level(logging.INFO, "imagesvc.core.reloading")
    for _ in range(3):
        clock.now += 1.0
        assert watched.current() == "good"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].__dict__["problem"] == "starts with '!'"
    assert "secret-content" not in caplog.text
    path.write_text("fixed")
    clock.now += 1.0
    assert watched.current() == "fixed"


def test_a_missing_file_keeps_the_last_good_version(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "f"
    path.write_text("good")
    watched = _file(path, clock)
    path.unlink()
    for _ in range(3):
        clock.now += 1.0
        assert watched.current() == "good"
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
    path.write_text("back")
    clock.now += 1.0
    assert watched.current() == "back"


def test_the_first_load_raises(tmp_path: Path, clock: Clock) -> None:
    with pytest.raises(FileProblem, match=r"test file .*: No such file"):
        _file(tmp_path / "absent", clock)
    broken = tmp_path / "broken"
    broken.write_text("!no")
    with pytest.raises(FileProblem, match="starts with"):
        _file(broken, clock)
