from __future__ import annotations

import asyncio
import io
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import pytest

from imagesvc.core.build_context import (
    CheckedContext,
    ContextLimits,
    check_context,
    receive_context,
)
from imagesvc.core.errors import InvalidArgumentError, Reason, ResourceExhaustedError
from tests.unit.tarballs import (
    DOCKERFILE,
    ChunkSource,
    context_tar,
    file_of,
    make_tar,
    regular_files,
    split,
)


def spool(chunks: ChunkSource, limits: ContextLimits) -> CheckedContext:
    """receive_context: checked and rewritten while the chunks arrive."""

    async def receive() -> CheckedContext:
        with ThreadPoolExecutor(1) as executor:
            return await receive_context(chunks, "Dockerfile", limits, executor)

    return asyncio.run(receive())


def rolled_to_disk(context: CheckedContext) -> bool:
    # SpooledTemporaryFile keeps whether it moved from memory to a real file here.
    return bool(vars(context.file)["_rolled"])


def test_received_context_is_rewritten_and_rewound() -> None:
    blob = os.urandom(5000)
    data = context_tar(extra={"app.txt": blob})
    chunks = ChunkSource(split(data, 700))
    context = spool(chunks, ContextLimits(max_bytes=len(data)))
    try:
        assert file_of(context).tell() == 0
        assert regular_files(file_of(context).read())["app.txt"] == blob
        assert context.dockerfile == DOCKERFILE
        assert chunks.taken == chunks.total
    finally:
        context.close()
    assert file_of(context).closed


def test_context_exactly_at_the_cap_is_accepted() -> None:
    data = context_tar()
    context = spool(ChunkSource(split(data, 100)), ContextLimits(max_bytes=len(data)))
    # Accepted at the cap as sent; the rewrite (no 10 KiB record padding) is smaller.
    assert 0 < context.size <= len(data)
    context.close()


def test_context_over_the_cap_stops_at_once_without_reading_the_rest() -> None:
    data = context_tar(extra={"big": os.urandom(4000)})
    chunks = ChunkSource(split(data, 400))
    with pytest.raises(ResourceExhaustedError) as caught:
        spool(chunks, ContextLimits(max_bytes=1000))
    error = caught.value
    assert error.reason is Reason.BUILD_CONTEXT_TOO_LARGE
    assert error.metadata == {"limit_bytes": "1000"}
    assert "1000 bytes" in error.message
    # The third chunk passes the cap; nothing after it is pulled from the client.
    assert chunks.taken == 3


def test_single_oversize_chunk_is_rejected() -> None:
    chunks = ChunkSource([b"x" * 11, b"never read"])
    with pytest.raises(ResourceExhaustedError):
        spool(chunks, ContextLimits(max_bytes=10))
    assert chunks.taken == 1


def test_empty_context_is_invalid_build_context() -> None:
    for chunks in (ChunkSource([]), ChunkSource([b"", b""])):
        with pytest.raises(InvalidArgumentError) as caught:
            spool(chunks, ContextLimits(max_bytes=100))
        assert caught.value.reason is Reason.INVALID_BUILD_CONTEXT
        assert "empty" in caught.value.message


def test_a_bad_archive_is_refused_before_the_rest_is_received() -> None:
    chunks = ChunkSource([b"\xff" * 1024] + [b"\0" * 1024] * 10_000)
    with pytest.raises(InvalidArgumentError) as caught:
        spool(chunks, ContextLimits(max_bytes=10**9))
    assert caught.value.reason is Reason.INVALID_BUILD_CONTEXT
    assert chunks.taken < chunks.total


def test_small_context_stays_in_memory_large_one_rolls_to_disk(tmp_path: Path) -> None:
    limits = ContextLimits(max_bytes=1_000_000, memory_bytes=4096, spool_dir=str(tmp_path))
    small = spool(ChunkSource([context_tar()]), limits)
    big = context_tar(extra={"big": b"b" * 10_000})
    large = spool(ChunkSource(split(big, 1000)), limits)
    try:
        assert not rolled_to_disk(small)
        assert rolled_to_disk(large)
        assert regular_files(file_of(large).read())["big"] == b"b" * 10_000
    finally:
        small.close()
        large.close()


class RecordingSpool(tempfile.SpooledTemporaryFile[bytes]):
    instances: ClassVar[list[RecordingSpool]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        RecordingSpool.instances.append(self)


class FailingSource(ChunkSource):
    async def __anext__(self) -> bytes:
        if self.taken == self.total:
            raise ConnectionResetError("client went away")
        return await super().__anext__()


@pytest.mark.parametrize(
    ("chunks", "error"),
    [
        (FailingSource([b"abc"]), ConnectionResetError),
        (ChunkSource(split(context_tar(extra={"a": b"x" * 3000}), 1000)), ResourceExhaustedError),
        (ChunkSource([]), InvalidArgumentError),
    ],
)
def test_spool_file_is_closed_whenever_spooling_fails(
    monkeypatch: pytest.MonkeyPatch, chunks: ChunkSource, error: type[Exception]
) -> None:
    RecordingSpool.instances.clear()
    monkeypatch.setattr(tempfile, "SpooledTemporaryFile", RecordingSpool)
    with pytest.raises(error):
        spool(chunks, ContextLimits(max_bytes=2500, memory_bytes=100))
    # Received and checked at once: a spool exists only if the archive got that far.
    assert len(RecordingSpool.instances) <= 1
    assert all(spool.closed for spool in RecordingSpool.instances)


LIMITS = ContextLimits(max_bytes=10**6, memory_bytes=4096)


def test_check_context_plain_tar_is_rewritten_with_the_same_members() -> None:
    data = context_tar(extra={"app/main.py": b"print(1)\n"})
    checked = check_context(io.BytesIO(data), "", LIMITS)
    try:
        assert checked.dockerfile == DOCKERFILE
        assert file_of(checked).tell() == 0
        rewritten = file_of(checked).read()
        assert len(rewritten) == checked.size
        assert rewritten[:2] != b"\x1f\x8b"
        assert regular_files(rewritten) == regular_files(data)
    finally:
        checked.close()
    assert file_of(checked).closed


def test_check_context_unpacks_gzip_for_the_engine() -> None:
    data = context_tar(compress=True)
    assert data[:2] == b"\x1f\x8b"
    checked = check_context(io.BytesIO(data), "Dockerfile", LIMITS)
    rewritten = file_of(checked).read()
    checked.close()
    assert rewritten[:2] != b"\x1f\x8b"
    assert regular_files(rewritten) == {"Dockerfile": DOCKERFILE}


def test_check_context_accepts_dot_slash_member_names() -> None:
    data = make_tar({"./Dockerfile": DOCKERFILE, "./src/main.c": b"int main;"})
    checked = check_context(io.BytesIO(data), "", LIMITS)
    rewritten = file_of(checked).read()
    checked.close()
    assert checked.dockerfile == DOCKERFILE
    assert regular_files(rewritten) == {"Dockerfile": DOCKERFILE, "src/main.c": b"int main;"}


@pytest.mark.parametrize("dockerfile", ["build/Dockerfile.dev", "./build/Dockerfile.dev"])
def test_check_context_custom_dockerfile_path(dockerfile: str) -> None:
    data = make_tar({"build/Dockerfile.dev": DOCKERFILE})
    checked = check_context(io.BytesIO(data), dockerfile, LIMITS)
    checked.close()
    assert checked.dockerfile == DOCKERFILE
    with pytest.raises(InvalidArgumentError) as caught:
        check_context(io.BytesIO(data), "", LIMITS)
    assert caught.value.reason is Reason.INVALID_BUILD_OPTIONS
    assert caught.value.metadata == {"dockerfile": "Dockerfile"}


def test_missing_dockerfile_is_invalid_build_options() -> None:
    file = io.BytesIO(make_tar({"README": b"hi"}, compress=True))
    with pytest.raises(InvalidArgumentError) as caught:
        check_context(file, "Containerfile", LIMITS)
    assert caught.value.reason is Reason.INVALID_BUILD_OPTIONS
    assert "'Containerfile'" in caught.value.message
    assert caught.value.metadata == {"dockerfile": "Containerfile"}


@pytest.mark.parametrize(
    "data",
    [
        b"this is not a tar archive at all",
        os.urandom(4096).replace(b"\x1f\x8b", b"xx"),
        b"\x1f\x8b" + b"not really gzip" * 20,
        context_tar(compress=True)[:40],  # truncated gzip
        b"x" * 1024,
    ],
)
def test_garbage_is_invalid_build_context(data: bytes) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        check_context(io.BytesIO(data), "", LIMITS)
    assert caught.value.reason is Reason.INVALID_BUILD_CONTEXT
    assert "not a valid tar archive" in caught.value.message


def test_check_context_reads_gzip_into_a_spooled_file(tmp_path: Path) -> None:
    blob = os.urandom(20_000)
    data = context_tar(compress=True, extra={"blob": blob})
    limits = ContextLimits(max_bytes=10**6, memory_bytes=1024, spool_dir=str(tmp_path))
    checked = spool(ChunkSource(split(data, 1000)), limits)
    try:
        # The rewritten archive is spooled under the same limits.
        assert rolled_to_disk(checked)
        assert regular_files(file_of(checked).read())["blob"] == blob
    finally:
        checked.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Any:
    """A 64 KiB tmpfs: a real disk that fills up (needs root, as CI and scripts/test run)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI and scripts/test run as root)")
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_spool_disk_is_resource_exhausted_not_internal(small_disk: Path) -> None:
    limits = ContextLimits(max_bytes=1 << 20, memory_bytes=4096, spool_dir=str(small_disk))
    data = context_tar(extra={"big.bin": os.urandom(200_000)})
    with pytest.raises(ResourceExhaustedError) as caught:
        spool(ChunkSource(split(data, 8192)), limits)
    assert caught.value.reason is Reason.SPOOL_FULL
    assert "no disk space left to spool the build context" in str(caught.value)
    assert str(small_disk) not in str(caught.value)  # a caller needs no server paths
    assert not list(small_disk.iterdir())  # nothing left behind


def test_what_follows_the_end_of_the_archive_is_read_to_the_end_and_dropped() -> None:
    # tarfile pads to 10 KiB records: the chunks after the end-of-archive blocks are
    # still read (counted as received, held to the cap), not left unread in the stream.
    data = context_tar() + bytes(8192)
    chunks = ChunkSource(split(data, 512))
    context = spool(chunks, ContextLimits(max_bytes=len(data)))
    context.close()
    assert chunks.taken == chunks.total
