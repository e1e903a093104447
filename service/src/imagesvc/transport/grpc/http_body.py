"""ExportImages' google.api.HttpBody messages, kept as the chunks the core hands over and
written to the wire by hand.

Each message carries 1 MiB of archive. Building an HttpBody copies the chunk into the
message, serializing it copied it twice more, and every read of `.data` (the access
guard's byte count, the REST gateway) once again: a third of the server's CPU in an
export went to memmove (perf, bench.save). An `HttpBodyChunk` holds the chunk itself;
`encode_http_body`, the method's response serializer, writes the two fields with one
copy. `WireEncodingInterceptor` (wire_coding.py) sets that serializer.
"""

from __future__ import annotations

from dataclasses import dataclass

# google.api.HttpBody: content_type = 1 (string), data = 2 (bytes); both length-delimited.
_CONTENT_TYPE_KEY = b"\x0a"
_DATA_KEY = b"\x12"


@dataclass(frozen=True, slots=True)
class HttpBodyChunk:
    """One google.api.HttpBody of a stream: the same two fields, without the copy."""

    data: bytes
    content_type: str = ""


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_http_body(body: HttpBodyChunk) -> bytes:
    """The serialized google.api.HttpBody of `body`, as protobuf writes it (fields in
    number order, empty ones left out)."""
    parts: list[bytes] = []
    if body.content_type:
        content_type = body.content_type.encode()
        parts += (_CONTENT_TYPE_KEY, _varint(len(content_type)), content_type)
    if body.data:
        parts += (_DATA_KEY, _varint(len(body.data)), body.data)
    return b"".join(parts)
