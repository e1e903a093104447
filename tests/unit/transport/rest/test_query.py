"""Query parameters into request messages, as grpc-gateway v2's DefaultQueryParser does
(runtime/query.go) on a query string split like Go's url.ParseQuery."""

from __future__ import annotations

import pytest

from imagesvc.core.errors import InvalidArgumentError
from imagesvc.transport.rest.query import (
    parse_bool,
    parse_duration,
    parse_int,
    parse_query,
    parse_timestamp,
    populate,
)
from imagesvc.v1 import image_service_pb2 as pb


def _list(query: str) -> pb.ListImagesRequest:
    request = pb.ListImagesRequest()
    populate(request, parse_query(query.encode()))
    return request


def _invalid(query: str, message: pb.ListImagesRequest | pb.BuildOptions | None = None) -> str:
    with pytest.raises(InvalidArgumentError) as caught:
        populate(message or pb.ListImagesRequest(), parse_query(query.encode()))
    return caught.value.message


def test_parse_query_like_go() -> None:
    assert parse_query(b"a=1&b=x+y&a=2&c&=skipped&&d=%2F%3A") == [
        ("a", ["1", "2"]),
        ("b", ["x y"]),
        ("c", [""]),
        ("d", ["/:"]),
    ]
    assert parse_query(b"") == []


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (b"a=1;b=2", "invalid semicolon separator in query"),
        (b"a=%zz", 'invalid URL escape "%zz"'),
        (b"a=%2", 'invalid URL escape "%2"'),
        (b"a=%ff", "query parameters must be UTF-8"),
    ],
)
def test_parse_query_errors(query: bytes, message: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        parse_query(query)
    assert caught.value.message == message


def test_proto_and_json_names_nested_and_repeated() -> None:
    request = _list(
        "filter.references=a*&filter.references=team%2F*&filter.labels=x%3D1"
        "&filter.dangling=true&filter.before=b&filter.since=s&all=1&page_size=5&pageToken=t"
    )
    assert list(request.filter.references) == ["a*", "team/*"]
    assert list(request.filter.labels) == ["x=1"]
    assert request.filter.HasField("dangling")
    assert request.filter.dangling
    assert (request.filter.before, request.filter.since) == ("b", "s")
    assert request.all
    assert request.page_size == 5
    assert request.page_token == "t"
    assert _list("pageSize=7&filter.dangling=F").page_size == 7
    assert _list("filter.dangling=F").filter.HasField("dangling")


def test_unknown_keys_are_ignored() -> None:
    assert _list("nope=1&filter.nope=2&nope.x=3") == pb.ListImagesRequest()


def test_a_scalar_given_twice_is_an_error() -> None:
    assert _invalid("page_size=1&page_size=2") == 'too many values for field "page_size": 1, 2'


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("page_size=x", 'parsing field "page_size": strconv.ParseInt: parsing "x": invalid syntax'),
        (
            "page_size=2147483648",
            'parsing field "page_size": strconv.ParseInt: parsing "2147483648": value out of range',
        ),
        (
            "page_size=1.5",
            'parsing field "page_size": strconv.ParseInt: parsing "1.5": invalid syntax',
        ),
        ("all=yes", 'parsing field "all": strconv.ParseBool: parsing "yes": invalid syntax'),
        ("filter.page_size=1", ""),  # unknown nested key: ignored
        ("all.x=1", 'invalid path: "all" is not a message'),
        ("filter=x", 'parsing field "filter": unsupported message type: "imagesvc.v1.ImageFilter"'),
    ],
)
def test_scalar_errors(query: str, message: str) -> None:
    if not message:
        assert _list(query) == pb.ListImagesRequest()
        return
    assert _invalid(query) == message


def test_go_number_and_bool_syntax() -> None:
    assert parse_int("+5", 32, signed=True) == 5
    assert parse_int("-2147483648", 32, signed=True) == -(2**31)
    for bad in (" 5", "5_000", "0x10", "", "1e3"):
        with pytest.raises(InvalidArgumentError):
            parse_int(bad, 64, signed=True)
    with pytest.raises(InvalidArgumentError):
        parse_int("-1", 64, signed=False)
    assert [parse_bool(v) for v in ("1", "t", "T", "TRUE", "true", "True")] == [True] * 6
    assert [parse_bool(v) for v in ("0", "f", "F", "FALSE", "false", "False")] == [False] * 6
    with pytest.raises(InvalidArgumentError):
        parse_bool("tRUE")


def test_maps_repeated_and_skipped_fields() -> None:
    options = pb.BuildOptions()
    populate(
        options,
        parse_query(
            b"tags=a:1&tags=a:2&buildArgs[HTTP_PROXY]=x&build_args[V]=1&labels[team]=t+1"
            b"&noCache=true&network_mode=none&dockerfile=sub/Dockerfile"
        ),
    )
    assert list(options.tags) == ["a:1", "a:2"]
    assert dict(options.build_args) == {"HTTP_PROXY": "x", "V": "1"}
    assert dict(options.labels) == {"team": "t 1"}
    assert options.no_cache
    assert options.network_mode == "none"
    assert options.dockerfile == "sub/Dockerfile"
    message = _invalid("labels[a]=1&labels[a]=2", pb.BuildOptions())
    assert (
        message
        == 'more than one value provided for key "a" in map "imagesvc.v1.BuildOptions.labels"'
    )

    request = pb.GetImageRequest(image="from-path")
    populate(request, parse_query(b"image=from-query&image.x=1"), skip=[("image",)])
    assert request.image == "from-path"


def test_timestamps_and_durations() -> None:
    request = pb.PruneImagesRequest()
    populate(request, parse_query(b"until=2024-01-02T03:04:05.5%2B01:00"))
    assert (request.until.seconds, request.until.nanos) == (1704161045, 500_000_000)
    assert parse_timestamp("1970-01-01T00:00:00Z").seconds == 0
    assert parse_timestamp("2024-02-29T23:59:59.123456789Z").nanos == 123456789
    for bad in ("2024-01-02", "2024-01-02 03:04:05Z", "2024-13-01T00:00:00Z", "yesterday"):
        with pytest.raises(InvalidArgumentError):
            parse_timestamp(bad)
    assert parse_duration("1h2m3.5s").seconds == 3723
    assert parse_duration("1h2m3.5s").nanos == 500_000_000
    assert parse_duration("-1.5us").nanos == -1500
    assert parse_duration("0").seconds == 0
    for bad in ("1", "h", "1d", "", "-", "1.5.5s"):
        with pytest.raises(InvalidArgumentError):
            parse_duration(bad)


def test_oneof_members_exclude_each_other() -> None:
    request = pb.BuildImageRequest()
    populate(request, parse_query(b"context_chunk=YWJj"))
    assert request.context_chunk == b"abc"
    with pytest.raises(InvalidArgumentError) as caught:
        populate(request, parse_query(b"options.dockerfile=x"))
    assert caught.value.message == 'field already set for oneof "payload"'
