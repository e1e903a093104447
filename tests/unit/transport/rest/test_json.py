"""grpc-gateway's default JSON mapping: every field written (unset messages as null),
unknown fields ignored, the first JSON value of a body read."""

from __future__ import annotations

import json

import pytest
from google.protobuf import timestamp_pb2

from imagesvc.core.errors import InvalidArgumentError
from imagesvc.transport.rest.json import message_bytes, parse_body, to_value
from imagesvc.v1 import image_pb2
from imagesvc.v1 import image_service_pb2 as pb


def test_unpopulated_fields_are_written() -> None:
    assert to_value(pb.ListImagesRequest()) == {
        "filter": None,
        "all": False,
        "pageSize": 0,
        "pageToken": "",
    }
    image = to_value(image_pb2.Image(id="sha256:1", size=5, labels={"a": "b"}))
    assert image["created"] is None
    assert image["config"] is None
    assert image["size"] == "5"  # int64 as a string
    assert image["repoTags"] == []
    assert image["labels"] == {"a": "b"}
    assert list(image) == [f.json_name for f in image_pb2.Image.DESCRIPTOR.fields]


def test_nested_and_oneof_fields() -> None:
    created = timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=5_000_000)
    value = to_value(
        pb.ListImagesResponse(
            images=[image_pb2.Image(created=created, config=image_pb2.ImageConfig(user="u"))]
        )
    )
    image = value["images"][0]
    assert image["created"] == "2023-11-14T22:13:20.005Z"
    assert image["config"]["healthcheck"] is None
    assert image["config"]["env"] == []
    # A oneof writes only the member that is set.
    progress = to_value(pb.PullImageResponse(progress=image_pb2.TransferProgress(bytes_done=1)))
    assert list(progress) == ["progress"]
    assert progress["progress"]["bytesDone"] == "1"
    # Proto3 optional fields are written only when set.
    assert "dangling" not in to_value(pb.ImageFilter())
    assert to_value(pb.ImageFilter(dangling=False))["dangling"] is False


def test_message_bytes_are_compact_utf8() -> None:
    text = message_bytes(pb.TagImageResponse(id="é", target="x:1")).decode()
    assert text == '{"id":"é","target":"x:1"}'
    assert json.loads(text) == {"id": "é", "target": "x:1"}


def test_line_separators_cannot_split_an_ndjson_line() -> None:
    text = message_bytes(pb.TagImageResponse(id="a\u2028b\u2029c\u0085d\ne")).decode()
    assert "\u2028" not in text
    assert "\u2029" not in text
    assert "\n" not in text
    assert json.loads(text)["id"] == "a\u2028b\u2029c\u0085d\ne"


def test_parse_body() -> None:
    request = parse_body(
        b' {"reference": "a:1", "auth": {"server_address": "r", "password": "p"}, "x": 1} trailing',
        pb.PullImageRequest(),
    )
    assert request.reference == "a:1"
    assert request.auth.server_address == "r"
    assert request.auth.password == "p"
    assert parse_body(b"", pb.PullImageRequest()) == pb.PullImageRequest()
    assert parse_body(b" \n", pb.PullImageRequest()) == pb.PullImageRequest()
    prune = parse_body(
        b'{"until": "2024-01-01T00:00:00Z", "excludeLabels": ["a"]}', pb.PruneImagesRequest()
    )
    assert prune.until.seconds == 1704067200
    assert list(prune.exclude_labels) == ["a"]


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"[1]",
        b'"x"',
        b"null",
        b'{"reference": 5}',
        b'{"auth": "x"}',
        b"\xff",
        b"[" * 5000,
    ],
)
def test_bad_bodies_are_invalid_arguments(body: bytes) -> None:
    with pytest.raises(InvalidArgumentError):
        parse_body(body, pb.PullImageRequest())
