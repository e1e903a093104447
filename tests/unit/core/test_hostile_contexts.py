"""Hostile build contexts: refused with a clean INVALID_ARGUMENT (or RESOURCE_EXHAUSTED
for size) by check_context, which rewrites every acceptable archive for the Engine."""

from __future__ import annotations

import gzip
import io
import tarfile
import time
from collections.abc import Callable

import pytest

from imagesvc.core.build_context import (
    MAX_DOCKERFILE_BYTES,
    CheckedContext,
    ContextLimits,
    check_context,
)
from imagesvc.core.errors import InvalidArgumentError, Reason, ResourceExhaustedError
from tests.unit.tarballs import DOCKERFILE, CountingSource, file_of, regular_files

LIMITS = ContextLimits(max_bytes=8 * 1024 * 1024, memory_bytes=64 * 1024)

Member = Callable[[tarfile.TarFile], None]


def file(name: str, data: bytes = b"x") -> Member:
    def add(archive: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        archive.addfile(info, io.BytesIO(data))

    return add


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> Member:
    def add(archive: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = target
        archive.addfile(info)

    return add


def special(name: str, kind: bytes) -> Member:
    def add(archive: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.devmajor, info.devminor = 1, 3
        archive.addfile(info)

    return add


def directory(name: str) -> Member:
    def add(archive: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        archive.addfile(info)

    return add


def archive(*members: Member, dockerfile: bool = True, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
        if dockerfile:
            file("Dockerfile", DOCKERFILE)(tar)
        for member in members:
            member(tar)
    return buffer.getvalue()


def check(data: bytes, limits: ContextLimits = LIMITS) -> CheckedContext:
    return check_context(io.BytesIO(data), "", limits)


def refused(data: bytes) -> str:
    with pytest.raises(InvalidArgumentError) as caught:
        check(data).close()  # closed even when it is wrongly accepted
    assert caught.value.reason is Reason.INVALID_BUILD_CONTEXT
    return caught.value.message


@pytest.mark.parametrize(
    ("members", "why"),
    [
        ([file("../escape")], "'..' component"),
        ([file("a/../../escape")], "'..' component"),
        ([file("a/../b")], "'..' component"),
        ([file("/etc/passwd")], "absolute path"),
        ([link("abs", "/etc")], "absolute path"),
        ([link("up", "..")], "outside the context"),
        # Replaced later, but unpacked first all the same (found by hypothesis).
        ([link("app.txt", ".."), file("app.txt")], "outside the context"),
        ([link("a/up", "../../x")], "outside the context"),
        ([link("d", "."), link("t", "d/..")], "outside the context"),
        ([link("deep", "a/b/c"), link("t", "deep/../../../..")], "outside the context"),
        ([link("a", "b"), link("b", "a"), link("c", "a/x")], "too many levels"),
        ([link("sub", "real"), file("sub/file")], "below the symlink 'sub'"),
        ([file("d/f"), link("d", "elsewhere")], "both a directory"),
        ([file("f"), file("f/g")], "not a directory"),
        ([link("h", "../x", tarfile.LNKTYPE)], "'..' component"),
        ([link("h", "/etc/shadow", tarfile.LNKTYPE)], "absolute path"),
        ([link("h", "missing", tarfile.LNKTYPE)], "not an earlier file"),
        ([link("s", "real"), link("h", "s/x", tarfile.LNKTYPE)], "not an earlier file"),
        ([special("null", tarfile.CHRTYPE)], "character device"),
        ([special("disk", tarfile.BLKTYPE)], "block device"),
        ([special("pipe", tarfile.FIFOTYPE)], "FIFO"),
        ([file("x" * 256)], "longer than 255 bytes"),
        ([file("/".join(["d" * 200] * 21))], "longer than 4096 bytes"),
    ],
)
def test_hostile_members_are_refused(members: list[Member], why: str) -> None:
    assert why in refused(archive(*members))


def test_the_message_names_the_member() -> None:
    assert "member '../../etc/passwd'" in refused(archive(file("../../etc/passwd")))


def test_acceptable_links_are_kept() -> None:
    data = archive(
        directory("sub"),
        file("sub/file", b"content"),
        link("sub/up", "../sub/file"),
        link("top", "sub"),
        link("dangling", "not/there"),
        link("hard", "sub/file", tarfile.LNKTYPE),
    )
    checked = check(data)
    with tarfile.open(fileobj=checked.file, mode="r:") as rewritten:
        kinds = {m.name: (m.type, m.linkname) for m in rewritten.getmembers()}
    checked.close()
    assert kinds["sub/up"] == (tarfile.SYMTYPE, "../sub/file")
    assert kinds["top"] == (tarfile.SYMTYPE, "sub")
    assert kinds["dangling"] == (tarfile.SYMTYPE, "not/there")
    assert kinds["hard"] == (tarfile.LNKTYPE, "sub/file")
    assert kinds["sub"][0] == tarfile.DIRTYPE


def test_modes_times_owners_and_xattrs_survive_the_rewrite() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        file("Dockerfile", DOCKERFILE)(tar)
        info = tarfile.TarInfo("bin/tool")
        info.size, info.mode, info.mtime = 3, 0o4755, 1_600_000_000
        info.uid, info.gid, info.uname, info.gname = 1000, 100, "dev", "users"
        info.pax_headers = {"SCHILY.xattr.user.note": "kept", "comment": "dropped"}
        tar.addfile(info, io.BytesIO(b"abc"))
    checked = check(buffer.getvalue())
    with tarfile.open(fileobj=checked.file, mode="r:") as rewritten:
        tool = rewritten.getmember("bin/tool")
    checked.close()
    assert (tool.mode, tool.mtime, tool.uid, tool.gid) == (0o4755, 1_600_000_000, 1000, 100)
    assert (tool.uname, tool.gname) == ("dev", "users")
    assert tool.pax_headers.get("SCHILY.xattr.user.note") == "kept"
    assert "comment" not in tool.pax_headers


def refused_early(data: bytes, header_offset: int) -> str:
    """The refusal of `data`, which must come before anything past the header at
    `header_offset` (an extended header's data) was read."""
    source = CountingSource(data)
    with pytest.raises(InvalidArgumentError) as caught:
        check_context(source, "", LIMITS).close()
    assert caught.value.reason is Reason.INVALID_BUILD_CONTEXT
    assert source.furthest == header_offset + 512
    return caught.value.message


def test_an_oversized_pax_header_is_refused_before_it_is_read() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        file("Dockerfile", DOCKERFILE)(tar)
        info = tarfile.TarInfo("big-header")
        info.pax_headers = {"comment": "x" * (2 * 1024 * 1024)}
        tar.addfile(info)
    # The Dockerfile's header and its one block of data, then the pax header.
    message = refused_early(buffer.getvalue(), header_offset=2 * 512)
    assert "extended header of 2097" in message
    assert "limit 1 MiB" in message


def test_a_huge_gnu_long_name_is_refused() -> None:
    data = archive(file("n" * (1024 * 1024 + 10)), fmt=tarfile.GNU_FORMAT)
    assert "extended header of 1048587 bytes" in refused_early(data, header_offset=2 * 512)


def test_endless_extended_headers_are_refused() -> None:
    dockerfile = tarfile.TarInfo("Dockerfile")
    dockerfile.size = len(DOCKERFILE)
    padding = b"\0" * (-len(DOCKERFILE) % 512)
    # A 300-character name: a GNU 'L' header and its data block, then the real header.
    long_name = tarfile.TarInfo("a" * 300).tobuf(tarfile.GNU_FORMAT)
    assert len(long_name) == 3 * 512
    data = (
        dockerfile.tobuf(tarfile.GNU_FORMAT)
        + DOCKERFILE
        + padding
        + long_name[:1024] * 50
        + long_name[1024:]
        + b"\0" * 1024
    )
    assert "too many extended headers" in refused(data)


def test_a_corrupt_header_in_the_middle_is_an_error_not_the_end() -> None:
    good = archive(file("a", b"1"), file("b", b"2"))
    corrupt = bytearray(good)
    header = 2 * 512  # after the Dockerfile's header and data: the header of "a"
    assert corrupt[header : header + 1] == b"a"
    corrupt[header + 148 : header + 156] = b"0000000\0"  # wrong checksum
    message = refused(bytes(corrupt))
    assert "not a valid tar archive" in message
    assert "checksum" in message


def test_data_after_the_end_of_the_archive_is_ignored() -> None:
    data = archive(file("a")) + b"trailing garbage" * 100
    checked = check(data)
    rewritten = file_of(checked).read()
    checked.close()
    assert b"trailing garbage" not in rewritten
    assert regular_files(rewritten) == {"Dockerfile": DOCKERFILE, "a": b"x"}
    # Each member is a header and one block of data, then the two blocks of the end.
    assert len(rewritten) == checked.size == 2 * (512 + 512) + 1024
    assert rewritten.endswith(bytes(1024))


def test_truncated_member_data_is_an_error() -> None:
    data = archive(file("big", b"z" * 5000))
    message = refused(data[: 512 * 4])
    assert "not a valid tar archive" in message
    assert "'big' ends early" in message


def test_a_gzip_bomb_stops_at_the_cap() -> None:
    raw = archive(file("zeros", bytes(64 * 1024 * 1024)))
    bomb = gzip.compress(raw, compresslevel=9)
    assert len(bomb) < 200 * 1024
    started = time.monotonic()
    with pytest.raises(ResourceExhaustedError) as caught:
        check(bomb, ContextLimits(max_bytes=4 * 1024 * 1024))
    assert caught.value.reason is Reason.BUILD_CONTEXT_TOO_LARGE
    assert "unpacks to more" in caught.value.message
    assert caught.value.metadata == {"limit_bytes": str(4 * 1024 * 1024)}
    # It stopped at the cap instead of inflating all 64 MiB.
    assert time.monotonic() - started < 2


def test_concatenated_gzip_members_are_one_stream() -> None:
    raw = archive(file("a", b"alpha"), file("b", b"beta"))
    cut = 3 * 512
    data = gzip.compress(raw[:cut]) + gzip.compress(raw[cut:])
    checked = check(data)
    assert regular_files(file_of(checked).read()) == {
        "Dockerfile": DOCKERFILE,
        "a": b"alpha",
        "b": b"beta",
    }
    checked.close()


def test_the_dockerfile_must_be_a_regular_file_of_bounded_size() -> None:
    symlinked = archive(file("real", DOCKERFILE), link("Dockerfile", "real"), dockerfile=False)
    assert "must be a regular file" in refused(symlinked)
    hardlinked = archive(
        file("real", DOCKERFILE), link("Dockerfile", "real", tarfile.LNKTYPE), dockerfile=False
    )
    assert "must be a regular file" in refused(hardlinked)
    big = b"FROM scratch\n" + b"#" * MAX_DOCKERFILE_BYTES
    assert "larger than" in refused(archive(file("Dockerfile", big), dockerfile=False))


def test_the_last_dockerfile_wins_as_for_the_engine() -> None:
    data = archive(
        file("Dockerfile", b"FROM busybox\n"),
        file("Dockerfile", b"FROM alpine\n"),
        dockerfile=False,
    )
    checked = check(data)
    checked.close()
    assert checked.dockerfile == b"FROM alpine\n"


def test_the_unpacked_size_counts_for_plain_archives_too() -> None:
    data = archive(file("blob", b"b" * 100_000))
    with pytest.raises(ResourceExhaustedError):
        check(data, ContextLimits(max_bytes=50_000))
