"""The build-context tar reader, fed archives made byte by byte here (not with tarfile),
so these tests mean the same on every Python: well-formed v7, ustar, GNU and pax
archives, and hostile ones (oversized or endless extended headers, corrupt headers,
truncation, trailing data)."""

from __future__ import annotations

import io

import pytest

from imagesvc.core.tar_reader import (
    ExtendedHeaderTooLargeError,
    Kind,
    TarFormatError,
    TarMember,
    TarReader,
    UnsupportedMemberError,
    parse_pax_records,
)
from tests.unit.tarballs import CountingSource

MIB = 1024 * 1024
USTAR = b"ustar\x0000"
GNU = b"ustar  \x00"
V7 = bytes(8)
END = bytes(1024)


def octal(value: int, width: int) -> bytes:
    return b"%0*o\x00" % (width - 1, value)


def base256(value: int, width: int) -> bytes:
    """GNU's binary numbers: the top bit set, then the value in two's complement."""
    raw = value.to_bytes(width, "big", signed=True)
    return raw if value < 0 else bytes([raw[0] | 0x80]) + raw[1:]


def header(
    name: bytes,
    typeflag: bytes = b"0",
    size: int = 0,
    *,
    size_field: bytes | None = None,
    uid_field: bytes | None = None,
    linkname: bytes = b"",
    magic: bytes = USTAR,
    prefix: bytes = b"",
    uname: bytes = b"",
    signed_checksum: bool = False,
) -> bytes:
    block = bytearray(512)
    block[0:100] = name[:100].ljust(100, b"\x00")
    block[100:108] = octal(0o644, 8)
    block[108:116] = uid_field or octal(1000, 8)
    block[116:124] = octal(100, 8)
    block[124:136] = size_field or octal(size, 12)
    block[136:148] = octal(1_700_000_000, 12)
    block[148:156] = b" " * 8
    block[156:157] = typeflag
    block[157:257] = linkname.ljust(100, b"\x00")
    block[257:265] = magic
    block[265:297] = uname.ljust(32, b"\x00")
    block[345:500] = prefix.ljust(155, b"\x00")
    checksum = sum(block)
    if signed_checksum:
        checksum -= 256 * sum(1 for byte in block if byte & 0x80)
    block[148:156] = b"%06o\x00 " % (checksum & 0o777777)
    return bytes(block)


def data(content: bytes) -> bytes:
    return content + bytes(-len(content) % 512)


def member(
    name: bytes,
    content: bytes = b"",
    *,
    typeflag: bytes = b"0",
    magic: bytes = USTAR,
    prefix: bytes = b"",
    uname: bytes = b"",
    signed_checksum: bool = False,
) -> bytes:
    block = header(
        name,
        typeflag,
        len(content),
        magic=magic,
        prefix=prefix,
        uname=uname,
        signed_checksum=signed_checksum,
    )
    return block + data(content)


def extended(typeflag: bytes, content: bytes, *, declared: int | None = None) -> bytes:
    size = len(content) if declared is None else declared
    return header(b"././@LongLink", typeflag, size) + data(content)


def pax(**records: str) -> bytes:
    """Pax records, each `"<length> <key>=<value>\\n"`, the length counting itself."""
    out = b""
    for key, value in records.items():
        body = f" {key.replace('__', '.')}={value}\n".encode()
        length = len(body) + 1
        while len(str(length).encode()) + len(body) != length:
            length += 1
        out += str(length).encode() + body
    return out


def reader(archive: bytes | CountingSource) -> TarReader:
    source = archive if isinstance(archive, CountingSource) else io.BytesIO(archive)
    return TarReader(source, max_extended_bytes=MIB, max_extended_in_a_row=8)


def read_all(archive: bytes) -> list[tuple[TarMember, bytes]]:
    tar = reader(archive)
    members = []
    while (found := tar.next()) is not None:
        content = b""
        while chunk := tar.read(1000):
            content += chunk
        members.append((found, content))
    return members


def refusal(archive: bytes) -> str:
    with pytest.raises(TarFormatError) as caught:
        read_all(archive)
    return str(caught.value)


def test_ustar_members_with_their_data() -> None:
    archive = member(b"Dockerfile", b"FROM scratch\n") + member(b"big", b"z" * 1300) + END
    [(dockerfile, first), (big, second)] = read_all(archive)
    assert (dockerfile.name, dockerfile.kind, dockerfile.size) == ("Dockerfile", Kind.FILE, 13)
    assert (dockerfile.mode, dockerfile.uid, dockerfile.gid) == (0o644, 1000, 100)
    assert dockerfile.mtime == 1_700_000_000
    assert first == b"FROM scratch\n"
    assert (big.name, second) == ("big", b"z" * 1300)


def test_unread_data_is_skipped_by_next() -> None:
    tar = reader(member(b"a", b"x" * 2000) + member(b"b", b"y") + END)
    first = tar.next()
    assert first is not None
    assert tar.read(10) == b"x" * 10
    second = tar.next()
    assert second is not None
    assert (second.name, tar.read(100)) == ("b", b"y")
    assert tar.next() is None
    assert tar.next() is None


def test_ustar_prefix_and_name_are_joined() -> None:
    [(found, _)] = read_all(member(b"file.txt", b"1", prefix=b"some/deep/dir") + END)
    assert found.name == "some/deep/dir/file.txt"


def test_v7_headers_ignore_the_ustar_fields_and_mark_directories_with_a_slash() -> None:
    archive = (
        member(b"old/", typeflag=b"\x00", magic=V7, uname=b"ignored", prefix=b"ignored")
        + member(b"old/file", b"v7", typeflag=b"\x00", magic=V7)
        + END
    )
    [(directory, _), (file, content)] = read_all(archive)
    assert (directory.name, directory.kind, directory.uname) == ("old/", Kind.DIRECTORY, "")
    assert (file.name, file.kind, content) == ("old/file", Kind.FILE, b"v7")


def test_links_devices_and_directories_have_no_data_whatever_their_size_field() -> None:
    archive = (
        header(b"link", b"2", 1000, linkname=b"target")
        + header(b"hard", b"1", 1000, linkname=b"link")
        + header(b"dev", b"3", 1000)
        + header(b"dir", b"5", 1000)
        + member(b"after", b"ok")
        + END
    )
    found = [(m.name, m.kind, m.size, m.linkname, content) for m, content in read_all(archive)]
    assert found == [
        ("link", Kind.SYMLINK, 0, "target", b""),
        ("hard", Kind.HARD_LINK, 0, "link", b""),
        ("dev", Kind.CHAR_DEVICE, 0, "", b""),
        ("dir", Kind.DIRECTORY, 0, "", b""),
        ("after", Kind.FILE, 2, "", b"ok"),
    ]


def test_unknown_types_are_returned_as_such() -> None:
    [(volume, content), (after, _)] = read_all(
        member(b"label", b"abc", typeflag=b"V") + member(b"after") + END
    )
    assert (volume.kind, volume.typeflag, content) == (Kind.OTHER, "V", b"abc")
    assert after.name == "after"


def test_gnu_long_names_and_long_link_names() -> None:
    name = b"n" * 300
    target = b"t" * 200
    archive = (
        extended(b"L", name + b"\x00")
        + extended(b"K", target + b"\x00")
        + header(b"n" * 100, b"2", linkname=b"t" * 100, magic=GNU)
        + END
    )
    [(found, _)] = read_all(archive)
    assert (found.name, found.linkname, found.kind) == ("n" * 300, "t" * 200, Kind.SYMLINK)


def test_pax_records_override_the_header() -> None:
    records = pax(
        path="p" * 150,
        linkpath="elsewhere",
        size="5",
        uid="4000000",
        gid="7",
        uname="dev",
        gname="users",
        mtime="1600000000.5",
        SCHILY__xattr__user__note="kept",
        comment="ignored",
    )
    # The header says 3 bytes, the pax record 5: the record wins, as for every reader.
    archive = extended(b"x", records) + header(b"short", size=3) + data(b"12345") + END
    [(found, content)] = read_all(archive)
    assert (found.name, found.linkname, found.size, content) == (
        "p" * 150,
        "elsewhere",
        5,
        b"12345",
    )
    assert (found.uid, found.gid, found.uname, found.gname) == (4000000, 7, "dev", "users")
    assert found.mtime == 1600000000.5
    assert dict(found.xattrs) == {"SCHILY.xattr.user.note": "kept"}


def test_solaris_x_headers_are_pax_headers() -> None:
    [(found, _)] = read_all(extended(b"X", pax(path="solaris")) + member(b"s") + END)
    assert found.name == "solaris"


def test_global_pax_records_apply_to_every_later_member_until_overridden() -> None:
    archive = (
        member(b"before")
        + extended(b"g", pax(uname="everyone", gid="9"))
        + member(b"one")
        + extended(b"x", pax(uname="just-me"))
        + member(b"two")
        + member(b"three")
        + END
    )
    found = [(m.name, m.uname, m.gid) for m, _ in read_all(archive)]
    assert found == [
        ("before", "", 100),
        ("one", "everyone", 9),
        ("two", "just-me", 9),
        ("three", "everyone", 9),
    ]


def test_global_pax_records_add_up_to_one_limit() -> None:
    # Each global header is under the limit; together (held for every later member)
    # they are not: memory must not grow with the number of global headers.
    half = {f"comment{i}": "c" * (MIB // 2) for i in range(3)}
    archive = b"".join(extended(b"g", pax(**{k: v})) + member(b"m") for k, v in half.items())
    assert "global pax records add up to more than" in refusal(archive + END)


def test_global_xattrs_apply_and_local_ones_win() -> None:
    archive = (
        extended(b"g", pax(SCHILY__xattr__user__a="global", SCHILY__xattr__user__b="global"))
        + extended(b"x", pax(SCHILY__xattr__user__b="local"))
        + member(b"m")
        + END
    )
    [(found, _)] = read_all(archive)
    assert dict(found.xattrs) == {
        "SCHILY.xattr.user.a": "global",
        "SCHILY.xattr.user.b": "local",
    }


def test_a_gnu_long_name_wins_over_a_pax_path_as_for_go() -> None:
    archive = extended(b"x", pax(path="from-pax")) + extended(b"L", b"from-gnu\x00") + member(b"h")
    [(found, _)] = read_all(archive + END)
    assert found.name == "from-gnu"


def test_base256_numbers() -> None:
    archive = (
        header(b"big", size_field=base256(3, 12), uid_field=base256(2**40, 8)) + data(b"abc") + END
    )
    [(found, content)] = read_all(archive)
    assert (found.size, found.uid, content) == (3, 2**40, b"abc")


def test_a_negative_base256_size_is_refused() -> None:
    archive = header(b"neg", size_field=base256(-512, 12)) + END
    assert "negative" in refusal(archive)


def test_a_signed_checksum_is_accepted() -> None:
    name = "é-ü".encode()  # bytes over 0x7f: the signed and unsigned sums differ
    [(found, _)] = read_all(member(name, signed_checksum=True) + END)
    assert found.name == "é-ü"


def test_a_bad_checksum_is_refused() -> None:
    block = bytearray(member(b"a", b"1"))
    block[0:1] = b"b"  # the name changed after the checksum was computed
    assert "checksum" in refusal(bytes(block) + END)


def test_a_corrupt_header_in_the_middle_is_an_error_not_the_end() -> None:
    corrupt = bytearray(member(b"b", b"2"))
    corrupt[148:156] = b"0000000\x00"
    archive = member(b"a", b"1") + bytes(corrupt) + member(b"c") + END
    tar = reader(archive)
    assert tar.next() is not None
    with pytest.raises(TarFormatError, match="offset 1024 has a wrong checksum"):
        tar.next()


def test_garbage_numbers_are_refused() -> None:
    assert "not an octal number" in refusal(
        header(b"a", size_field=b"12 9abc\x00\x00\x00\x00\x00") + END
    )


def test_an_oversized_pax_header_is_refused_before_its_data_is_read() -> None:
    # The header declares 2 MiB; only one block follows. Had the reader tried to read the
    # data, it would have complained of a truncated header instead.
    start = len(member(b"Dockerfile", b"FROM scratch\n"))
    source = CountingSource(
        member(b"Dockerfile", b"FROM scratch\n") + header(b"pax", b"x", 2 * MIB) + bytes(512)
    )
    tar = reader(source)
    assert tar.next() is not None
    with pytest.raises(ExtendedHeaderTooLargeError) as caught:
        tar.next()
    assert (caught.value.size, caught.value.limit) == (2 * MIB, MIB)
    assert "extended header of 2097152 bytes" in str(caught.value)
    assert source.furthest == start + 512


@pytest.mark.parametrize("typeflag", [b"x", b"X", b"g", b"L", b"K"])
def test_every_kind_of_extended_header_has_the_limit(typeflag: bytes) -> None:
    source = CountingSource(header(b"huge", typeflag, MIB + 1) + bytes(512))
    with pytest.raises(ExtendedHeaderTooLargeError):
        reader(source).next()
    assert source.furthest == 512


def test_an_extended_header_of_exactly_the_limit_is_read() -> None:
    name = b"d/" * (MIB // 2 - 1) + b"f\x00"
    assert len(name) == MIB
    [(found, _)] = read_all(extended(b"L", name) + member(b"short") + END)
    assert len(found.name) == MIB - 1


def test_a_huge_gnu_long_name_given_in_base256_is_refused() -> None:
    huge = header(b"././@LongLink", b"L", size_field=base256(2**62, 12))
    with pytest.raises(ExtendedHeaderTooLargeError):
        read_all(huge + END)


def test_endless_extended_headers_are_refused() -> None:
    chain = extended(b"L", b"a" * 300 + b"\x00") * 50
    assert refusal(chain + member(b"x") + END) == "too many extended headers in a row"
    mixed = (extended(b"x", pax(path="p")) + extended(b"g", pax(uname="u"))) * 5
    assert refusal(mixed + member(b"x") + END) == "too many extended headers in a row"


def test_eight_extended_headers_in_a_row_are_allowed() -> None:
    chain = extended(b"x", pax(comment="c")) * 7 + extended(b"L", b"eighth\x00")
    [(found, _)] = read_all(chain + member(b"x") + END)
    assert found.name == "eighth"


def test_the_count_starts_again_at_every_member() -> None:
    archive = (extended(b"x", pax(comment="c")) * 8 + member(b"m")) * 3 + END
    assert len(read_all(archive)) == 3


@pytest.mark.parametrize(
    ("records", "why"),
    [
        (b"99 path=too-long\n", "length does not match"),
        (b"12 path=none", "length does not match"),
        (b"12 pathnone\n", "not key=value"),
        (b"9 =value\n", "not key=value"),
        (b"path=x\n", "no valid length"),
        (b"09 path=x\n", "no valid length"),
        (b"12 path=a\x00b\n", "NUL byte"),
        (pax(size="-1"), "not a number"),
        (pax(mtime="yesterday"), "not a time"),
        (pax(uid=str(2**63)), "not a number (of 64 bits)"),
        (pax(mtime=str(2**64) + ".5"), "not a time (of 64 bits)"),
    ],
)
def test_malformed_pax_records_are_refused(records: bytes, why: str) -> None:
    assert why in refusal(extended(b"x", records) + member(b"m") + END)


def test_pax_records_are_parsed_by_their_length() -> None:
    # A value may hold newlines and '=': only the length says where a record ends.
    records = b"18 comment=a\nb=c\n\n" + pax(path="p")
    assert parse_pax_records(records) == {"comment": "a\nb=c\n", "path": "p"}


def test_gnu_sparse_files_are_refused() -> None:
    with pytest.raises(UnsupportedMemberError, match="GNU sparse") as caught:
        read_all(member(b"holes", b"x", typeflag=b"S", magic=GNU) + END)
    assert caught.value.name == "holes"
    with pytest.raises(UnsupportedMemberError, match="GNU sparse"):
        read_all(extended(b"x", pax(GNU__sparse__major="1")) + member(b"holes") + END)
    with pytest.raises(TarFormatError, match="GNU sparse"):
        read_all(extended(b"g", pax(GNU__sparse__major="1")) + member(b"holes") + END)


def test_truncated_member_data_is_an_error() -> None:
    archive = member(b"big", b"z" * 5000)
    tar = reader(archive[:2048])
    assert tar.next() is not None
    assert tar.read(1536) == b"z" * 1536
    with pytest.raises(TarFormatError, match="'big' ends early"):
        tar.read(1000)


def test_missing_padding_after_the_data_is_an_error() -> None:
    archive = header(b"a", size=10) + b"0123456789"
    assert "'a' ends early" in refusal(archive)


def test_a_truncated_header_is_an_error() -> None:
    assert "ends inside a header" in refusal(member(b"a", b"1") + header(b"b")[:300])


def test_an_empty_stream_is_an_error() -> None:
    assert refusal(b"") == "the archive is empty"


def test_an_extended_header_describing_no_member_is_an_error() -> None:
    assert "describes no member" in refusal(member(b"a") + extended(b"x", pax(path="p")) + END)
    assert "describes no member" in refusal(extended(b"L", b"name\x00"))


def test_data_after_two_zero_blocks_is_never_read() -> None:
    archive = member(b"a", b"1") + END
    source = CountingSource(archive + b"trailing garbage" * 100)
    tar = reader(source)
    assert tar.next() is not None
    assert tar.next() is None
    assert source.furthest == len(archive)


def test_one_zero_block_then_the_end_of_the_stream_is_the_end() -> None:
    [(found, _)] = read_all(member(b"a", b"1") + bytes(512))
    assert found.name == "a"


def test_no_zero_blocks_at_all_is_the_end_too() -> None:
    assert [m.name for m, _ in read_all(member(b"a", b"1"))] == ["a"]


def test_a_zero_block_followed_by_a_header_is_an_error_as_for_go() -> None:
    archive = member(b"a") + bytes(512) + member(b"hidden") + END
    assert "followed by a header" in refusal(archive)
