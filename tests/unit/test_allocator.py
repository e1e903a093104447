"""The malloc thresholds of the server and of imagesvc-cli's archive commands: a
stream's 1 MiB buffers are reused, not mapped and faulted in again for every few chunks.
Each case runs in a fresh interpreter, since the thresholds are process-wide."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

from imagesvc import allocator
from imagesvc_client.cli import allocator as cli_allocator

# The module and function that set the thresholds: the server's, and the CLI's.
TUNERS = [
    ("imagesvc.allocator", "tune_allocator"),
    (cli_allocator.__name__, "keep_transfer_buffers"),
]

# Six 1 MiB buffers at a time, allocated and freed again and again (as chunks pass
# through a stream): minor page faults per round.
_ROUNDS = """
import importlib, resource, sys
if sys.argv[1] == "tuned":
    assert getattr(importlib.import_module(sys.argv[2]), sys.argv[3])()
def round_of_buffers():
    held = [bytes(1024 * 1024) for _ in range(6)]
    del held
for _ in range(5):
    round_of_buffers()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    round_of_buffers()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 50)
"""


def _faults_per_round(mode: str, module: str, function: str) -> float:
    result = subprocess.run(
        [sys.executable, "-c", _ROUNDS, mode, module, function],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(result.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
@pytest.mark.parametrize(("module", "function"), TUNERS)
def test_tuned_thresholds_keep_streamed_buffers_mapped(module: str, function: str) -> None:
    untuned = _faults_per_round("default", module, function)
    tuned = _faults_per_round("tuned", module, function)
    # 6 MiB freed per round is 1,536 pages; glibc's defaults give most of them back.
    assert untuned > 100, f"the default allocator faulted only {untuned} pages a round"
    assert tuned < 10, f"the tuned allocator still faulted {tuned} pages a round"


def test_without_glibc_nothing_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    class NotGlibc:
        def __getattr__(self, name: str) -> object:
            raise AttributeError(name)

    monkeypatch.setattr(ctypes, "CDLL", lambda name: NotGlibc())
    assert allocator.tune_allocator() is False
    assert cli_allocator.keep_transfer_buffers() is False
