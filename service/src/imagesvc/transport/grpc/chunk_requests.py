"""BuildImage's and ImportImages' request messages that carry only a chunk, read by hand
as a view of the received bytes.

Each such message carries 1 MiB of a build context or an image archive. Parsing it with
protobuf copies the chunk into the message, and reading the bytes field copies it again.
A message that is exactly the chunk field (what every client sends after the first
message) becomes a `RequestChunk` holding a view of the message instead; anything else
(the options, other or unknown fields, a field given twice) is parsed by protobuf as
before. `WireEncodingInterceptor` (wire_coding.py) sets these as the methods' request
deserializers; the servicer takes either form.
"""

from __future__ import annotations

from dataclasses import dataclass

from imagesvc.core.tar_check import UploadChunk
from imagesvc.v1 import image_service_pb2 as pb

# The chunk fields' keys: field number << 3 | 2 (length-delimited).
_CONTEXT_CHUNK_KEY = 2 << 3 | 2  # BuildImageRequest.context_chunk
_ARCHIVE_CHUNK_KEY = 1 << 3 | 2  # ImportImagesRequest.archive_chunk
# A varint of a length under 2**63 has at most 10 bytes.
_MAX_VARINT_BYTES = 10


@dataclass(frozen=True, slots=True)
class RequestChunk:
    """A request message that set only its chunk field: the chunk, uncopied."""

    data: UploadChunk


def _chunk_only(message: bytes, key: int) -> memoryview | None:
    """A view of the chunk when `message` is exactly one length-delimited field `key`
    that fills it to its end; None otherwise."""
    if not message or message[0] != key:
        return None
    length, shift, position = 0, 0, 1
    while True:
        if position >= len(message) or position > _MAX_VARINT_BYTES:
            return None
        byte = message[position]
        position += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            break
    if position + length != len(message):
        return None
    return memoryview(message)[position:]


def build_request(message: bytes) -> pb.BuildImageRequest | RequestChunk:
    chunk = _chunk_only(message, _CONTEXT_CHUNK_KEY)
    return RequestChunk(chunk) if chunk is not None else pb.BuildImageRequest.FromString(message)


def import_request(message: bytes) -> pb.ImportImagesRequest | RequestChunk:
    chunk = _chunk_only(message, _ARCHIVE_CHUNK_KEY)
    return RequestChunk(chunk) if chunk is not None else pb.ImportImagesRequest.FromString(message)
