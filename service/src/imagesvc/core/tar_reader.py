"""A streaming tar reader of our own, for build contexts: it decides what an uploaded
archive holds, so that decision is the same on every Python (tarfile's internals, which
an earlier guard hooked, differ between patch releases) and every limit is enforced
before the bytes it protects are read.

Read: 512-byte headers with their checksum verified (unsigned or signed sum, as POSIX
and Go's archive/tar accept), octal and base-256 numbers, v7, ustar (prefix + name), GNU
(`L`/`K` long names) and pax (`x`, Solaris `X`, global `g`) headers. Refused
(TarFormatError): a corrupt or truncated header, truncated member data, an extended
header over `max_extended_bytes` (judged from its header, before its data is read), more
than `max_extended_in_a_row` extended headers in a row, malformed pax records, a zero
block followed by a header (Go refuses it; tarfile would drop the rest), an extended
header describing no member, global pax records adding up to more than one extended
header's limit, and GNU sparse files. The archive ends at a block of zeros
(then another, or the end of the stream, as tarfile and Go accept); whatever follows is
never read. Where the formats' rules leave a choice, Go's archive/tar (the Engine's
reader) is followed: the last `x` header before a member wins, and a GNU long name wins
over a pax path.
"""

from __future__ import annotations

import re
from collections import ChainMap
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

BLOCK = 512
_CHUNK = 1024 * 1024
_ZERO_BLOCK = bytes(BLOCK)
_USTAR_MAGIC = b"ustar\x0000"  # magic and version of ustar and pax headers
_GNU_MAGIC = b"ustar  \x00"
_CHECKSUM = slice(148, 156)
_PAX_TYPES = frozenset("xXg")
_LONG_NAME_TYPES = frozenset("LK")
_EXTENDED_TYPES = _PAX_TYPES | _LONG_NAME_TYPES
_HEADER_ONLY_TYPES = frozenset("123456")
_HIGH_BYTES = bytes(range(0x80, 0x100))
_OCTAL = re.compile(rb"[0-7]+")
_PAX_LENGTH = re.compile(rb"[1-9][0-9]{0,19} ")
_PAX_TIME = re.compile(r"-?[0-9]{1,30}(\.[0-9]{1,30})?")
_PAX_INTEGER = re.compile(r"[0-9]{1,30}")
_XATTR = "SCHILY.xattr."
_SPARSE = "GNU.sparse."


class Readable(Protocol):
    """A byte stream: `read` may hand out a view of a buffer it holds instead of a copy."""

    def read(self, size: int = -1, /) -> bytes | memoryview: ...


class TarFormatError(Exception):
    """The stream is not a tar archive this reader accepts; the message says why."""


class ExtendedHeaderTooLargeError(TarFormatError):
    """An extended header (pax or GNU long name) declares more than the limit."""

    def __init__(self, name: str, size: int, limit: int) -> None:
        super().__init__(f"has an extended header of {size} bytes (limit {limit} bytes)")
        self.name, self.size, self.limit = name, size, limit


class UnsupportedMemberError(TarFormatError):
    """A member this reader cannot read safely (a GNU sparse file)."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(why)
        self.name = name


class Kind(Enum):
    FILE = "file"
    HARD_LINK = "hard link"
    SYMLINK = "symlink"
    CHAR_DEVICE = "character device"
    BLOCK_DEVICE = "block device"
    DIRECTORY = "directory"
    FIFO = "FIFO"
    OTHER = "unknown"


# "7" (contiguous file) is a regular file to POSIX readers that do not know better.
_KINDS = {
    "0": Kind.FILE,
    "\x00": Kind.FILE,
    "7": Kind.FILE,
    "1": Kind.HARD_LINK,
    "2": Kind.SYMLINK,
    "3": Kind.CHAR_DEVICE,
    "4": Kind.BLOCK_DEVICE,
    "5": Kind.DIRECTORY,
    "6": Kind.FIFO,
}


@dataclass(frozen=True, slots=True)
class TarMember:
    name: str
    kind: Kind
    typeflag: str
    size: int
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    uname: str = ""
    gname: str = ""
    mtime: int | float = 0
    linkname: str = ""
    xattrs: Mapping[str, str] = field(default_factory=dict)


def _text(raw: bytes) -> str:
    """A header string field: up to the first NUL, UTF-8 (other bytes kept as they are)."""
    return raw.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


def _number(raw: bytes, what: str) -> int:
    """A numeric header field: base-256 (GNU, top bit set, two's complement) or octal
    padded with spaces and NULs (an empty field is 0), as Go's archive/tar reads them."""
    if raw and raw[0] & 0x80:
        if raw[0] & 0x40:
            value = int.from_bytes(raw, "big", signed=True)
        else:
            value = int.from_bytes(bytes([raw[0] & 0x7F]) + raw[1:], "big")
        if not -(2**63) <= value < 2**63:
            raise TarFormatError(f"the {what} field of a header is out of range")
        return value
    digits = raw.strip(b" \x00")
    if not digits:
        return 0
    if not _OCTAL.fullmatch(digits):
        raise TarFormatError(f"the {what} field of a header is not an octal number")
    return int(digits, 8)


def _checksum_matches(block: bytes, recorded: int) -> bool:
    """Whether `recorded` is the unsigned or the signed sum of the header's bytes, its
    checksum field counted as spaces (POSIX says unsigned; old writers summed signed)."""
    unsigned = sum(block) - sum(block[_CHECKSUM]) + 8 * 0x20
    if recorded == unsigned:
        return True
    counted = block[: _CHECKSUM.start] + block[_CHECKSUM.stop :]
    high = len(counted) - len(counted.translate(None, _HIGH_BYTES))
    return recorded == unsigned - 256 * high


def parse_pax_records(data: bytes) -> dict[str, str]:
    """`"<length> <key>=<value>\\n"` records, the length counting the whole record; any
    malformed record refuses the header (as Go does) rather than being skipped."""
    records: dict[str, str] = {}
    position = 0
    while position < len(data):
        match = _PAX_LENGTH.match(data, position)
        if match is None:
            raise TarFormatError("a pax record has no valid length")
        end = position + int(match.group()[:-1])
        if end > len(data) or end <= match.end() or data[end - 1 : end] != b"\n":
            raise TarFormatError("a pax record's length does not match its content")
        key, equals, value = data[match.end() : end - 1].partition(b"=")
        if not key or not equals:
            raise TarFormatError("a pax record is not key=value")
        name = key.decode("utf-8", "surrogateescape")
        text = value.decode("utf-8", "surrogateescape")
        if b"\x00" in key or (name in ("path", "linkpath", "uname", "gname") and "\x00" in text):
            raise TarFormatError(f"the pax record {name[:100]!r} holds a NUL byte")
        records[name] = text
        position = end
    return records


def _pax_integer(records: Mapping[str, str], key: str, default: int) -> int:
    value = records.get(key)
    if value is None:
        return default
    if not _PAX_INTEGER.fullmatch(value) or int(value) >= 2**63:
        raise TarFormatError(f"the pax record {key!r} is not a number (of 64 bits)")
    return int(value)


def _pax_time(records: Mapping[str, str], default: int | float) -> int | float:
    value = records.get("mtime")
    if value is None:
        return default
    if not _PAX_TIME.fullmatch(value) or abs(float(value)) >= 2**63:
        raise TarFormatError("the pax record 'mtime' is not a time (of 64 bits)")
    return float(value) if "." in value else int(value)


@dataclass(slots=True)
class _Header:
    """One 512-byte header, decoded."""

    name: str
    typeflag: str
    size: int
    mode: int
    uid: int
    gid: int
    mtime: int
    linkname: str
    uname: str
    gname: str

    @classmethod
    def parse(cls, block: bytes, offset: int) -> _Header:
        try:
            recorded = _number(block[_CHECKSUM], "checksum")
        except TarFormatError:
            recorded = -1
        if not _checksum_matches(block, recorded):
            raise TarFormatError(
                f"the header at offset {offset} has a wrong checksum (a corrupt archive?)"
            )
        magic = block[257:265]
        name = _text(block[0:100])
        uname = gname = ""
        if magic in (_USTAR_MAGIC, _GNU_MAGIC):
            uname, gname = _text(block[265:297]), _text(block[297:329])
        if magic == _USTAR_MAGIC:
            prefix = _text(block[345:500])
            if prefix:
                name = f"{prefix}/{name}"
        size = _number(block[124:136], "size")
        uid, gid = _number(block[108:116], "uid"), _number(block[116:124], "gid")
        if size < 0 or uid < 0 or gid < 0:
            raise TarFormatError(f"the header at offset {offset} has a negative size or owner")
        return cls(
            name=name,
            typeflag=chr(block[156]),
            size=size,
            mode=_number(block[100:108], "mode"),
            uid=uid,
            gid=gid,
            mtime=_number(block[136:148], "mtime"),
            linkname=_text(block[157:257]),
            uname=uname,
            gname=gname,
        )


class TarReader:
    """Members one at a time (`next`), each regular file's data read with `read`
    before the next member; nothing but one extended header is ever held in memory."""

    def __init__(
        self, source: Readable, *, max_extended_bytes: int, max_extended_in_a_row: int
    ) -> None:
        self._source = source
        self._max_extended_bytes = max_extended_bytes
        self._max_extended_in_a_row = max_extended_in_a_row
        self._offset = 0
        self._global: dict[str, str] = {}
        self._global_xattrs: dict[str, str] = {}
        self._remaining = 0  # unread data of the current member
        self._padding = 0  # zeros after it, up to the next block
        self._name = ""
        self._ended = False

    def _read(self, size: int) -> bytes:
        """Exactly `size` bytes, or fewer only at the end of the stream."""
        parts: list[bytes | memoryview] = []
        wanted = size
        while wanted > 0:
            chunk = self._source.read(wanted)
            if not chunk:
                break
            parts.append(chunk)
            wanted -= len(chunk)
        data = b"".join(parts)
        self._offset += len(data)
        return data

    def _read_block(self) -> bytes | None:
        """The next block; None at the end of the stream; an error for part of one."""
        block = self._read(BLOCK)
        if not block:
            return None
        if len(block) < BLOCK:
            raise TarFormatError(f"the archive ends inside a header (offset {self._offset})")
        return block

    def _skip_rest(self) -> None:
        while self._remaining > 0:
            self.read(min(_CHUNK, self._remaining))
        if self._padding:
            if len(self._read(self._padding)) < self._padding:
                raise TarFormatError(f"member {self._name[:200]!r} ends early")
            self._padding = 0

    def read(self, size: int) -> bytes | memoryview:
        """Up to `size` bytes of the current member's data, as the source hands them out
        (a view, not a copy, where it gives one); b"" once it is all read."""
        wanted = min(size, self._remaining)
        if wanted <= 0:
            return b""
        data = self._source.read(wanted)
        if not data:
            raise TarFormatError(f"member {self._name[:200]!r} ends early")
        self._offset += len(data)
        self._remaining -= len(data)
        return data

    def _extended_data(self, header: _Header) -> bytes:
        if header.size > self._max_extended_bytes:
            raise ExtendedHeaderTooLargeError(header.name, header.size, self._max_extended_bytes)
        data = self._read(header.size + -header.size % BLOCK)
        if len(data) < header.size + -header.size % BLOCK:
            raise TarFormatError("the archive ends inside an extended header")
        return data[: header.size]

    def next(self) -> TarMember | None:
        """The next member, or None at the end of the archive."""
        if self._ended:
            return None
        self._skip_rest()
        local: dict[str, str] = {}
        long_name: str | None = None
        long_link: str | None = None
        in_a_row = 0
        describes_a_member = False  # an x, X, L or K header was read
        while True:
            start = self._offset
            block = self._read_block()
            if block is None or block == _ZERO_BLOCK:
                self._end(block, start, pending=describes_a_member)
                return None
            header = _Header.parse(block, start)
            if header.typeflag not in _EXTENDED_TYPES:
                break
            in_a_row += 1
            if in_a_row > self._max_extended_in_a_row:
                raise TarFormatError("too many extended headers in a row")
            data = self._extended_data(header)
            describes_a_member |= header.typeflag != "g"
            if header.typeflag == "g":
                self._add_global(parse_pax_records(data))
            elif header.typeflag in _PAX_TYPES:
                local = parse_pax_records(data)
            elif header.typeflag == "L":
                long_name = _text(data)
            else:
                long_link = _text(data)
        return self._member(header, local, long_name, long_link)

    def _add_global(self, records: Mapping[str, str]) -> None:
        """Global records apply to every later member (POSIX). Together they are held to
        the limit of one extended header, and judged once here, not at every member: a
        stream of small members must not each pay for a large global header."""
        if any(key.startswith(_SPARSE) for key in records):
            raise TarFormatError("a global pax header declares GNU sparse files (not supported)")
        merged = {**self._global, **records}
        if sum(len(key) + len(value) + 3 for key, value in merged.items()) > (
            self._max_extended_bytes
        ):
            raise TarFormatError(
                f"the global pax records add up to more than {self._max_extended_bytes} bytes"
            )
        self._global = merged
        self._global_xattrs = {k: v for k, v in merged.items() if k.startswith(_XATTR)}

    def _end(self, block: bytes | None, start: int, *, pending: bool) -> None:
        if block is None and start == 0:
            raise TarFormatError("the archive is empty")
        if pending:
            raise TarFormatError(
                "the archive ends after an extended header that describes no member"
            )
        if block is not None:
            following = self._read_block()
            if following is not None and following != _ZERO_BLOCK:
                raise TarFormatError(
                    f"a block of zeros at offset {start} is followed by a header"
                    " (the end of the archive is two blocks of zeros)"
                )
        self._ended = True

    def _member(
        self,
        header: _Header,
        local: Mapping[str, str],
        long_name: str | None,
        long_link: str | None,
    ) -> TarMember:
        pax = ChainMap(dict(local), self._global)
        name = long_name if long_name is not None else pax.get("path", header.name)
        linkname = long_link if long_link is not None else pax.get("linkpath", header.linkname)
        if header.typeflag == "S" or any(key.startswith(_SPARSE) for key in local):
            raise UnsupportedMemberError(name, "is a GNU sparse file, which is not supported")
        kind = _KINDS.get(header.typeflag, Kind.OTHER)
        if header.typeflag == "\x00" and name.endswith("/"):
            kind = Kind.DIRECTORY  # pre-POSIX archives mark directories with a slash
        size = _pax_integer(pax, "size", header.size)
        if header.typeflag in _HEADER_ONLY_TYPES:
            size = 0  # links, devices, directories and FIFOs have no data, as for Go
        member = TarMember(
            name=name,
            kind=kind,
            typeflag=header.typeflag,
            size=size,
            mode=header.mode,
            uid=_pax_integer(pax, "uid", header.uid),
            gid=_pax_integer(pax, "gid", header.gid),
            uname=pax.get("uname", header.uname),
            gname=pax.get("gname", header.gname),
            mtime=_pax_time(pax, header.mtime),
            linkname=linkname,
            xattrs={
                **self._global_xattrs,
                **{key: value for key, value in local.items() if key.startswith(_XATTR)},
            },
        )
        self._name = name
        self._remaining = size
        self._padding = -size % BLOCK
        return member
