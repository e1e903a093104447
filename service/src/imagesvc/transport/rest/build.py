"""The request side of the client streams over REST (`body: "*"`): BuildImage, and
ImportImages, whose raw body is the image archive (no options) and whose JSON form is a
sequence of `{"archiveChunk": "<base64>"}` objects.

Two request forms, chosen by Content-Type:

- a raw build context: the body is the tar archive itself (application/x-tar, or gzip:
  application/gzip, application/x-gzip, application/octet-stream), streamed into the
  servicer chunk by chunk as it arrives, never held whole. The BuildOptions come from
  the query string (`tags=a:1&tags=a:latest&dockerfile=Dockerfile&buildArgs[V]=1&
  labels[team]=x&target=t&noCache=true&pull=true&platform=linux/amd64&networkMode=none`,
  proto or JSON names, an optional `options.` prefix), registry credentials from the
  X-Registry-Config header as Docker's API takes them (base64url of a JSON object
  mapping each registry to {"username", "password"} or {"identitytoken"}), never from
  the URL, which proxies and access logs keep;
- anything else: what a grpc-gateway client sends for a client stream, a sequence of
  BuildImageRequest JSON objects (newline-delimited), the options first, then
  `{"contextChunk": "<base64>"}` objects.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator
from typing import TypeVar

from google.protobuf.message import Message

from imagesvc.core.errors import InvalidArgumentError, Reason
from imagesvc.transport.grpc.chunk_requests import RequestChunk
from imagesvc.transport.rest.json import from_value
from imagesvc.transport.rest.query import QueryItems, populate
from imagesvc.v1 import image_pb2
from imagesvc.v1 import image_service_pb2 as pb

RAW_CONTEXT_TYPES = frozenset(
    {"application/x-tar", "application/gzip", "application/x-gzip", "application/octet-stream"}
)
REGISTRY_CONFIG_HEADER = "x-registry-config"
_CREDENTIAL_KEYS = frozenset({"registry_auths", "registryAuths"})
_DECODER = json.JSONDecoder()
M = TypeVar("M", bound=Message)


def is_raw_context(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() in RAW_CONTEXT_TYPES


def options_from_query(items: QueryItems, registry_config: str | None) -> pb.BuildOptions:
    """BuildOptions from the query string and the X-Registry-Config header."""
    options = pb.BuildOptions()
    named = [(key.removeprefix("options."), values) for key, values in items]
    for key, _ in named:
        if key.split("[", 1)[0].split(".", 1)[0] in _CREDENTIAL_KEYS:
            raise InvalidArgumentError(
                "registry credentials are not accepted in the URL; send them in the"
                " X-Registry-Config header",
                reason=Reason.INVALID_BUILD_OPTIONS,
                metadata={"field": "registry_auths"},
            )
    populate(options, named)
    if registry_config:
        options.registry_auths.extend(registry_auths(registry_config))
    return options


def registry_auths(header: str) -> list[image_pb2.RegistryAuth]:
    """Docker's X-Registry-Config: base64url JSON {registry: AuthConfig}. The header's
    content is never quoted in an error: it holds passwords."""
    problem = InvalidArgumentError(
        "X-Registry-Config must be base64url-encoded JSON mapping each registry to"
        ' {"username", "password"} or {"identitytoken"}',
        reason=Reason.INVALID_BUILD_OPTIONS,
        metadata={"field": "X-Registry-Config"},
    )
    text = header.strip()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        document = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        raise problem from None
    if not isinstance(document, dict):
        raise problem
    auths: list[image_pb2.RegistryAuth] = []
    for registry, config in document.items():
        if not isinstance(config, dict) or not all(
            isinstance(value, str) for value in config.values()
        ):
            raise problem
        username, password = config.get("username", ""), config.get("password", "")
        if not (username or password) and config.get("auth"):
            try:
                decoded = base64.b64decode(config["auth"], validate=True).decode()
            except (binascii.Error, ValueError):
                raise problem from None
            username, _, password = decoded.partition(":")
        auths.append(
            image_pb2.RegistryAuth(
                username=username,
                password=password,
                server_address=config.get("serveraddress") or registry,
                identity_token=config.get("identitytoken", ""),
                registry_token=config.get("registrytoken", ""),
            )
        )
    return auths


async def raw_requests(
    options: pb.BuildOptions, body: AsyncIterator[bytes]
) -> AsyncIterator[pb.BuildImageRequest | RequestChunk]:
    """The options, then each received piece of the body as a context chunk (as the gRPC
    transport reads chunk messages: without protobuf's copies)."""
    yield pb.BuildImageRequest(options=options)
    async for chunk in body:
        yield RequestChunk(chunk)


class JsonValues:
    """Splits a byte stream into JSON values (objects separated by whitespace, normally
    one per line), as Go's json.Decoder reads a grpc-gateway client stream. A value may
    span lines; at most `max_bytes` are held while waiting for one to complete."""

    def __init__(self, max_bytes: int) -> None:
        self._buffer = bytearray()
        self._complete = 0  # bytes up to the last newline seen
        self._max_bytes = max_bytes

    def feed(self, data: bytes) -> list[object]:
        self._buffer += data
        newline = self._buffer.rfind(b"\n", self._complete)
        values: list[object] = []
        if newline >= 0:
            self._complete = newline + 1
            values = self._take(final=False)
        if len(self._buffer) > self._max_bytes:
            raise InvalidArgumentError(
                f"Failed to decode request: a message is over {self._max_bytes} bytes"
            )
        return values

    def finish(self) -> list[object]:
        self._complete = len(self._buffer)
        return self._take(final=True)

    def _take(self, *, final: bool) -> list[object]:
        try:
            text = bytes(self._buffer[: self._complete]).decode()
        except UnicodeDecodeError:
            raise InvalidArgumentError("Failed to decode request: not UTF-8") from None
        values: list[object] = []
        position = 0
        while True:
            start = len(text) - len(text[position:].lstrip(" \t\r\n"))
            if start == len(text):
                position = start
                break
            try:
                value, position = _DECODER.raw_decode(text, start)
            except json.JSONDecodeError as error:
                if final:
                    raise InvalidArgumentError(f"Failed to decode request: {error}") from None
                position = start
                break  # maybe a value spanning lines: wait for more
            except RecursionError:
                raise InvalidArgumentError("Failed to decode request: nested too deeply") from None
            values.append(value)
        consumed = len(text[:position].encode())
        del self._buffer[:consumed]
        self._complete -= consumed
        return values


async def raw_archive_requests(body: AsyncIterator[bytes]) -> AsyncIterator[RequestChunk]:
    """Each received piece of the body as an archive chunk."""
    async for chunk in body:
        yield RequestChunk(chunk)


async def json_requests(
    body: AsyncIterator[bytes], *, max_message_bytes: int
) -> AsyncIterator[pb.BuildImageRequest]:
    """BuildImageRequest messages decoded from the body as they complete."""
    async for message in json_messages(body, pb.BuildImageRequest, max_message_bytes):
        yield message


async def json_messages(
    body: AsyncIterator[bytes], message_type: type[M], max_message_bytes: int
) -> AsyncIterator[M]:
    """Request messages of `message_type` decoded from the body as they complete."""
    values = JsonValues(max_message_bytes)
    async for chunk in body:
        for value in values.feed(chunk):
            yield _request(value, message_type)
    for value in values.finish():
        yield _request(value, message_type)


def _request(value: object, message_type: type[M]) -> M:
    try:
        return from_value(value, message_type())
    except InvalidArgumentError as error:
        raise InvalidArgumentError(f"Failed to decode request: {error.message}") from None
