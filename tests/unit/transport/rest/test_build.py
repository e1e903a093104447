"""BuildImage's REST request forms: the raw tar body with options from the query and
credentials from X-Registry-Config, and the grpc-gateway JSON client stream."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import pytest

from imagesvc.core.errors import InvalidArgumentError, Reason
from imagesvc.transport.grpc.chunk_requests import RequestChunk
from imagesvc.transport.rest.build import (
    JsonValues,
    is_raw_context,
    json_requests,
    options_from_query,
    raw_requests,
    registry_auths,
)
from imagesvc.transport.rest.query import parse_query
from imagesvc.v1 import image_service_pb2 as pb
from tests.unit.aio import run, run_collect


def _header(document: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode()


def test_raw_content_types() -> None:
    for kind in (
        "application/x-tar",
        "application/gzip",
        "application/x-gzip",
        "application/octet-stream",
        "Application/X-Tar; charset=binary",
    ):
        assert is_raw_context(kind)
    for kind in ("application/json", "", "text/plain", "application/x-ndjson"):
        assert not is_raw_context(kind)


def test_options_from_the_query_and_the_header() -> None:
    secret = "s3cr3t-pw"
    header = _header(
        {
            "127.0.0.1:5000": {"username": "ci", "password": secret},
            "127.0.0.1:6000": {"auth": base64.b64encode(b"u2:p2").decode()},
            "127.0.0.1:7000": {"identitytoken": "tok"},
        }
    ).rstrip("=")  # padding is optional
    options = options_from_query(
        parse_query(b"tags=a:1&options.tags=a:2&buildArgs[V]=1&labels[l]=x&target=t&pull=true"),
        header,
    )
    assert list(options.tags) == ["a:1", "a:2"]
    assert dict(options.build_args) == {"V": "1"}
    assert dict(options.labels) == {"l": "x"}
    assert options.target == "t"
    assert options.pull
    auths = {a.server_address: a for a in options.registry_auths}
    assert (auths["127.0.0.1:5000"].username, auths["127.0.0.1:5000"].password) == ("ci", secret)
    assert (auths["127.0.0.1:6000"].username, auths["127.0.0.1:6000"].password) == ("u2", "p2")
    assert auths["127.0.0.1:7000"].identity_token == "tok"


@pytest.mark.parametrize(
    "query",
    [b"registryAuths.password=x", b"registry_auths=x", b"options.registryAuths.username=u"],
)
def test_credentials_in_the_url_are_refused(query: bytes) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        options_from_query(parse_query(query), None)
    assert caught.value.reason is Reason.INVALID_BUILD_OPTIONS
    assert "X-Registry-Config" in caught.value.message


@pytest.mark.parametrize(
    "header",
    [
        "not base64 !!",
        base64.urlsafe_b64encode(b"not json pw=hunter2").decode(),
        _header(["hunter2"]),
        _header({"r": "hunter2"}),
        _header({"r": {"password": 5}}),
        _header({"r": {"auth": "hunter2!!"}}),
    ],
)
def test_a_bad_registry_config_is_invalid_and_never_quoted(header: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        registry_auths(header)
    assert "hunter2" not in caught.value.message
    assert header not in caught.value.message
    assert caught.value.reason is Reason.INVALID_BUILD_OPTIONS


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def test_raw_requests_are_options_then_chunks() -> None:
    options = pb.BuildOptions(tags=["x:1"])
    first, *chunks = run_collect(raw_requests(options, _chunks(b"ab", b"cd")))
    assert isinstance(first, pb.BuildImageRequest)
    assert first.WhichOneof("payload") == "options"
    assert first.options == options
    assert all(isinstance(chunk, RequestChunk) for chunk in chunks)
    assert [bytes(chunk.data) for chunk in chunks if isinstance(chunk, RequestChunk)] == [
        b"ab",
        b"cd",
    ]


def test_json_values_across_chunks_and_lines() -> None:
    values = JsonValues(max_bytes=1024)
    assert values.feed(b'{"a": 1}\n{"b"') == [{"a": 1}]
    assert values.feed(b": 2}") == []
    assert values.feed(b'\n{"c":\n 3}\n') == [{"b": 2}, {"c": 3}]  # a value over two lines
    assert values.feed(b'{"d": 4} {"e": 5}') == []
    assert values.finish() == [{"d": 4}, {"e": 5}]
    # Multi-byte characters split between chunks.
    split = JsonValues(max_bytes=1024)
    encoded = '{"x": "é"}\n'.encode()
    assert split.feed(encoded[:8]) == []
    assert split.feed(encoded[8:]) == [{"x": "é"}]


def test_json_values_errors() -> None:
    with pytest.raises(InvalidArgumentError, match="Failed to decode request"):
        _finish(b"{nope}\n")
    with pytest.raises(InvalidArgumentError, match="over 16 bytes"):
        JsonValues(max_bytes=16).feed(b'{"a": "' + b"x" * 32)


def _finish(data: bytes) -> list[object]:
    values = JsonValues(max_bytes=1024)
    values.feed(data)
    return values.finish()


def test_json_requests() -> None:
    chunk = base64.b64encode(b"tar bytes").decode()
    body = (
        json.dumps({"options": {"tags": ["x:1"], "noCache": True}})
        + "\n"
        + json.dumps({"contextChunk": chunk})
        + "\n"
        + json.dumps({"context_chunk": chunk, "unknown": 1})
    ).encode()
    requests = run_collect(json_requests(_chunks(body[:10], body[10:]), max_message_bytes=1 << 20))
    assert requests[0].options.tags == ["x:1"]
    assert requests[0].options.no_cache
    assert [r.context_chunk for r in requests[1:]] == [b"tar bytes", b"tar bytes"]

    async def bad() -> list[pb.BuildImageRequest]:
        return [r async for r in json_requests(_chunks(b'{"options": 5}\n'), max_message_bytes=99)]

    with pytest.raises(InvalidArgumentError, match="Failed to decode request"):
        run(bad())
