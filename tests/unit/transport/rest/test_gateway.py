"""The REST gateway as an ASGI app in front of the real servicer and core, with the
Engine faked (tests/unit/fakes.py): wire format, errors, streams, build bodies,
deadlines and client disconnects."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagesvc.config import Settings
from imagesvc.core.build_context import ContextLimits
from imagesvc.core.errors import NotFoundError, UnauthenticatedError, UnavailableError
from imagesvc.core.image_core import CoreSettings, ImageCore
from imagesvc.transport.grpc.servicer import ImageServiceServicer
from imagesvc.transport.http.app import create_http_app
from imagesvc.transport.http.metrics import HttpMetrics
from imagesvc.transport.http.observability import HttpObservability
from imagesvc.transport.rest.gateway import (
    ROUTE_SCOPE_KEY,
    BodyCutShort,
    openapi_document,
    rest_routes,
)
from tests.unit.fakes import (
    FakeDockerPort,
    FakeEngineBytes,
    FakeEngineStream,
    engine_image,
    image_id,
)
from tests.unit.tarballs import context_tar, regular_files

REFERENCE = "127.0.0.1:5000/team/app:1.0"
ENCODED = "127.0.0.1%3A5000%2Fteam%2Fapp%3A1.0"
DIGEST = "sha256:" + "d1" * 32
BUILD_ID = "sha256:" + "b0" * 32
# What the server passes: its gRPC message limit.
MAX_BODY_BYTES = Settings().max_message_bytes


def pull_script() -> list[Any]:
    return [
        {"status": "Pulling from team/app", "id": "1.0"},
        {
            "status": "Downloading",
            "id": "aaaaaaaaaaaa",
            "progressDetail": {"current": 5, "total": 10},
        },
        {"status": "Pull complete", "id": "aaaaaaaaaaaa", "progressDetail": {}},
        {"status": f"Digest: {DIGEST}"},
        {"status": f"Status: Downloaded newer image for {REFERENCE}"},
    ]


def build_log() -> list[Any]:
    return [
        {"stream": "Step 1/2 : FROM busybox:1.36\n"},
        {"stream": "Step 2/2 : RUN true\n"},
        {"aux": {"ID": BUILD_ID}},
        {"stream": "Successfully built b0b0b0b0b0b0\n"},
    ]


class RouteRecorder:
    """Records the route template the gateway put in the scope."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.routes: list[str | None] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
        self.routes.append(scope.get(ROUTE_SCOPE_KEY))


@pytest.fixture
def settings() -> CoreSettings:
    return CoreSettings(
        build_context=ContextLimits(max_bytes=64 * 1024, memory_bytes=4096),
        progress_interval_seconds=0.0,
    )


@pytest.fixture
def app(core: ImageCore) -> Starlette:
    return create_http_app(rest_routes(ImageServiceServicer(core), max_body_bytes=MAX_BODY_BYTES))


@pytest.fixture
def recorder(app: Starlette) -> RouteRecorder:
    return RouteRecorder(app)


def call(app: ASGIApp, method: str, url: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rest") as client:
            return await client.request(method, url, **kwargs)

    return asyncio.run(go())


def lines(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.text.endswith("\n")
    return [json.loads(line) for line in response.text.split("\n")[:-1]]


# Unary -------------------------------------------------------------------------------------


def test_get_image_by_encoded_reference(port: FakeDockerPort, recorder: RouteRecorder) -> None:
    port.add(engine_image(1, tags=[REFERENCE], labels={"a": "b"}))
    response = call(recorder, "GET", f"/v1/images/{ENCODED}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    image = response.json()["image"]
    assert image["id"] == image_id(1)
    assert image["repoTags"] == [REFERENCE]
    assert image["labels"] == {"a": "b"}
    assert image["size"] == "1000"
    assert port.calls_to("inspect_image")[0].args == (REFERENCE,)
    assert recorder.routes == ["/v1/images/{image}"]


def test_list_images_from_the_query(port: FakeDockerPort, recorder: RouteRecorder) -> None:
    for n in range(3):
        port.add(engine_image(n + 1, tags=[f"team/app:{n}"], created=1_700_000_000 + n))
    response = call(recorder, "GET", "/v1/images?pageSize=2&all=true")
    assert response.status_code == 200
    body = response.json()
    assert [i["repoTags"] for i in body["images"]] == [["team/app:2"], ["team/app:1"]]
    assert body["totalSize"] == 3
    assert body["nextPageToken"]
    assert port.calls_to("list_images")[0].kwargs["all"] is True
    following = call(
        recorder,
        "GET",
        "/v1/images",
        params={"pageToken": body["nextPageToken"], "pageSize": "2", "all": "true"},
    )
    assert [i["repoTags"] for i in following.json()["images"]] == [["team/app:0"]]
    assert recorder.routes == ["/v1/images", "/v1/images"]


def test_post_with_a_json_body(port: FakeDockerPort, app: Starlette) -> None:
    port.add(engine_image(1, tags=[REFERENCE]))
    response = call(app, "POST", "/v1/images:tag", json={"source": REFERENCE, "target": "x:2"})
    assert response.status_code == 200
    assert response.json() == {"id": image_id(1), "target": "x:2"}


def test_form_content_type_as_curl_d_sends_it(port: FakeDockerPort, app: Starlette) -> None:
    port.add(engine_image(1, tags=[REFERENCE]))
    port.add(engine_image(2, tags=["team/b:1"], created=1_700_000_001))
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    # A JSON body sent as curl -d sends it: the body route still reads JSON.
    body = json.dumps({"source": REFERENCE, "target": "x:2"})
    tagged = call(app, "POST", "/v1/images:tag", content=body, headers=form)
    assert tagged.status_code == 200, tagged.text
    # A form POST to a GET route is that GET with the form's parameters (grpc-gateway's
    # path length fallback), URL parameters after the form's.
    listed = call(app, "POST", "/v1/images?all=true", content=b"pageSize=1", headers=form)
    assert listed.status_code == 200, listed.text
    assert len(listed.json()["images"]) == 1
    assert listed.json()["totalSize"] == 2


def test_errors_are_status_json_with_the_mapped_http_status(app: Starlette) -> None:
    missing = call(app, "GET", "/v1/images/nope")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/json"
    body = missing.json()
    assert body["code"] == 5
    assert body["details"][0]["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert body["details"][0]["reason"] == "IMAGE_NOT_FOUND"
    assert body["details"][0]["domain"] == "imagesvc"

    bad = call(app, "GET", "/v1/images/a%20b")
    assert (bad.status_code, bad.json()["details"][0]["reason"]) == (400, "INVALID_REFERENCE")

    required = call(app, "POST", "/v1/images:tag", json={"target": "x:1"})
    assert required.status_code == 400
    assert required.json()["message"] == "source is required"

    for body_text in (b"{nope", b"[]", b'{"source": 1}'):
        assert call(app, "POST", "/v1/images:tag", content=body_text).status_code == 400

    query = call(app, "GET", "/v1/images?pageSize=lots")
    assert query.status_code == 400
    assert "strconv.ParseInt" in query.json()["message"]


def test_routing_errors_are_grpc_gateways(app: Starlette, recorder: RouteRecorder) -> None:
    assert call(recorder, "GET", "/v1/nothing").json() == {
        "code": 5,
        "message": "Not Found",
        "details": [],
    }
    wrong = call(recorder, "PUT", "/v1/images")
    assert wrong.status_code == 501
    assert wrong.json() == {"code": 12, "message": "Method Not Allowed", "details": []}
    # grpc-gateway has no HEAD or OPTIONS (CORS preflight) handling of its own either.
    assert call(recorder, "OPTIONS", "/v1/images:pull").json()["code"] == 12
    assert call(recorder, "HEAD", "/v1/images/x").status_code == 501
    malformed = call(recorder, "GET", "/v1/images/%zz")
    assert malformed.status_code == 400
    assert malformed.json()["message"] == 'malformed path escape "%zz"'
    # Unmatched requests carry no route template (metrics label them otherwise).
    assert recorder.routes == [None] * 5
    # Outside the API's prefix the gateway is not involved.
    assert call(app, "GET", "/elsewhere").status_code == 404
    assert call(app, "GET", "/elsewhere").headers["content-type"].startswith("text/plain")


def test_unauthenticated_sets_www_authenticate(port: FakeDockerPort, app: Starlette) -> None:
    port.failures["check_auth"] = UnauthenticatedError("the registry refused the credentials")
    response = call(
        app,
        "POST",
        "/v1/registries:checkAuth",
        json={"auth": {"serverAddress": "127.0.0.1:1", "username": "u", "password": "p"}},
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "the registry refused the credentials"
    assert response.json()["details"][0]["reason"] == "REGISTRY_UNAUTHENTICATED"


def test_a_bug_is_500_without_its_text(
    port: FakeDockerPort, app: Starlette, caplog: pytest.LogCaptureFixture
) -> None:
    port.failures["inspect_image"] = ZeroDivisionError("secret detail")  # type: ignore[assignment]
    with caplog.at_level(logging.ERROR, logger="imagesvc.failures"):
        response = call(app, "GET", "/v1/images/x", headers={"x-request-id": "bug-1"})
    assert response.status_code == 500
    body = response.json()
    assert body["code"] == 13
    assert "secret detail" not in response.text
    assert body["message"].startswith("internal error in imagesvc")
    [record] = [r for r in caplog.records if r.name == "imagesvc.failures"]
    assert record.levelno == logging.ERROR
    assert record.__dict__["rpc"] == "GetImage"
    assert record.__dict__["request_id"] == "bug-1"
    assert record.__dict__["error_type"] == "ZeroDivisionError"
    assert record.__dict__["error_message"] == "secret detail"  # the log holds the cause
    assert "ZeroDivisionError: secret detail" in record.__dict__["traceback"]


def test_unavailable_logs_its_redacted_cause_once(
    port: FakeDockerPort, app: Starlette, caplog: pytest.LogCaptureFixture
) -> None:
    password = "Pw-unit-Leak-1234"
    try:
        raise ConnectionError(f"connection refused while sending password={password}")
    except ConnectionError as refused:
        failure = UnavailableError("cannot reach the Docker daemon")
        failure.__cause__ = refused
    port.failures["check_auth"] = failure
    with caplog.at_level(logging.WARNING, logger="imagesvc.failures"):
        response = call(
            app,
            "POST",
            "/v1/registries:checkAuth",
            json={"auth": {"serverAddress": "127.0.0.1:1", "username": "u", "password": password}},
            headers={"x-request-id": "cause-1"},
        )
    assert response.status_code == 503
    [record] = [r for r in caplog.records if r.name == "imagesvc.failures"]
    assert record.levelno == logging.WARNING
    assert record.__dict__["request_id"] == "cause-1"
    assert record.__dict__["grpc_code"] == "UNAVAILABLE"
    assert record.__dict__["cause_chain"] == [
        "imagesvc.core.errors.UnavailableError: cannot reach the Docker daemon",
        "ConnectionError: connection refused while sending password=[REDACTED]",
    ]
    assert password not in record.getMessage()
    assert password not in repr(vars(record))


def test_not_found_logs_no_cause(
    port: FakeDockerPort, app: Starlette, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="imagesvc.failures"):
        response = call(app, "GET", "/v1/images/absent:1")
    assert response.status_code == 404
    assert not [r for r in caplog.records if r.name == "imagesvc.failures"]


def test_openapi_is_served(app: Starlette) -> None:
    response = call(app, "GET", "/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == openapi_document()
    assert response.json()["swagger"] == "2.0"


def test_request_id_as_grpc_gateway_forwards_metadata(
    port: FakeDockerPort, core: ImageCore
) -> None:
    """Behind grpc-gateway the request id is gRPC metadata: a client sends it as
    Grpc-Metadata-X-Request-Id and reads the id the gRPC port returns (its x-request-id
    header metadata) from Grpc-Metadata-X-Request-Id, on answers and failures alike."""
    observed = create_http_app(
        rest_routes(ImageServiceServicer(core), max_body_bytes=MAX_BODY_BYTES),
        [Middleware(HttpObservability, metrics=HttpMetrics(CollectorRegistry()))],
    )
    port.add(engine_image(1, tags=[REFERENCE]))
    port.pull_streams.append(FakeEngineStream(pull_script()))
    sent = {"Grpc-Metadata-X-Request-Id": "trace-42"}
    answers = [
        call(observed, "GET", f"/v1/images/{ENCODED}", headers=sent),
        call(observed, "GET", "/v1/images/nope", headers=sent),
        call(observed, "POST", "/v1/images:pull", json={"reference": REFERENCE}, headers=sent),
    ]
    assert [a.status_code for a in answers] == [200, 404, 200]
    for answer in answers:
        assert answer.headers["grpc-metadata-x-request-id"] == "trace-42"
        assert answer.headers["x-request-id"] == "trace-42"
    # The X-Request-Id header of our own port still wins, and a made-up id is returned
    # under both names.
    both = call(observed, "GET", "/v1/images", headers={**sent, "X-Request-Id": "own-1"})
    assert both.headers["grpc-metadata-x-request-id"] == "own-1"
    made_up = call(observed, "GET", "/v1/images")
    assert made_up.headers["grpc-metadata-x-request-id"] == made_up.headers["x-request-id"] != ""
    # A routing error never reached a call: grpc-gateway forwards no metadata then.
    assert "grpc-metadata-x-request-id" not in call(observed, "GET", "/v1/nothing").headers


# Streams -----------------------------------------------------------------------------------


def test_pull_streams_ndjson_results(port: FakeDockerPort, app: Starlette) -> None:
    port.add(engine_image(1, tags=[REFERENCE]))
    port.pull_streams.append(FakeEngineStream(pull_script()))
    response = call(app, "POST", "/v1/images:pull", json={"reference": REFERENCE})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    received = lines(response)
    assert all(list(line) == ["result"] for line in received)
    kinds = [next(iter(line["result"])) for line in received]
    assert kinds[-1] == "result"
    assert set(kinds[:-1]) == {"progress"}
    assert received[-1]["result"]["result"] == {
        "imageId": image_id(1),
        "digest": DIGEST,
        "reference": REFERENCE,
        "status": f"Downloaded newer image for {REFERENCE}",
    }
    layers = [layer for line in received[:-1] for layer in line["result"]["progress"]["layers"]]
    assert {
        "layerId": "aaaaaaaaaaaa",
        "state": "Downloading",
        "current": "5",
        "total": "10",
    } in layers


def test_a_stream_failing_before_its_first_message(port: FakeDockerPort, app: Starlette) -> None:
    port.failures["pull"] = NotFoundError("manifest unknown")
    response = call(app, "POST", "/v1/images:pull", json={"reference": REFERENCE})
    assert response.status_code == 404
    [line] = lines(response)
    assert list(line) == ["error"]
    assert line["error"]["code"] == 5
    assert line["error"]["details"][0]["reason"] == "IMAGE_NOT_FOUND"
    # A request that does not decode is a plain Status, as grpc-gateway answers it.
    bad = call(app, "POST", "/v1/images:pull", content=b"{")
    assert bad.status_code == 400
    assert bad.json()["code"] == 3


def test_a_stream_failing_midway_ends_with_an_error_line(
    port: FakeDockerPort, app: Starlette
) -> None:
    port.pull_streams.append(
        FakeEngineStream([*pull_script()[:2], UnavailableError("registry went away")])
    )
    response = call(app, "POST", "/v1/images:pull", json={"reference": REFERENCE})
    assert response.status_code == 200
    received = lines(response)
    assert [list(line) for line in received] == [["result"], ["result"], ["error"]]
    assert received[-1]["error"]["code"] == 14
    assert received[-1]["error"]["message"] == "registry went away"
    assert port.streams_opened[0].closed


def test_grpc_timeout_bounds_a_stream(port: FakeDockerPort, app: Starlette) -> None:
    stream = FakeEngineStream(pull_script(), block_at=1)
    port.pull_streams.append(stream)
    response = call(
        app,
        "POST",
        "/v1/images:pull",
        json={"reference": REFERENCE},
        headers={"Grpc-Timeout": "300m"},
    )
    assert response.status_code == 200
    received = lines(response)
    assert list(received[0]) == ["result"]
    assert received[-1] == {
        "error": {"code": 4, "message": "context deadline exceeded", "details": []}
    }
    assert stream.closed, "the deadline did not close the Engine stream"
    invalid = call(app, "GET", "/v1/images", headers={"Grpc-Timeout": "5x"})
    assert invalid.status_code == 400
    assert invalid.json()["message"] == "invalid grpc-timeout: 5x"


class Connection:
    """Drives the ASGI app by hand: the request body, then a disconnect when told."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.sent: list[Message] = []
        self.first_line = asyncio.Event()
        self.hang_up = asyncio.Event()
        self._delivered = False

    async def receive(self) -> Message:
        if not self._delivered:
            self._delivered = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self.hang_up.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            self.first_line.set()


def test_a_client_disconnect_cancels_the_stream(port: FakeDockerPort, app: Starlette) -> None:
    stream = FakeEngineStream(pull_script(), block_at=2)
    port.pull_streams.append(stream)

    async def go() -> Connection:
        connection = Connection(json.dumps({"reference": REFERENCE}).encode())
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/images:pull",
            "raw_path": b"/v1/images:pull",
            "query_string": b"",
            "headers": [(b"content-type", b"application/json")],
            "client": ("127.0.0.1", 5555),
            "server": ("127.0.0.1", 80),
        }
        handler = asyncio.create_task(app(scope, connection.receive, connection.send))
        await asyncio.wait_for(connection.first_line.wait(), 5)
        await asyncio.get_running_loop().run_in_executor(None, stream.blocked.wait, 5)
        connection.hang_up.set()
        await asyncio.wait_for(handler, 5)
        return connection

    connection = asyncio.run(go())
    assert stream.closed, "the disconnect did not close the Engine stream"
    bodies = [m.get("body", b"") for m in connection.sent if m["type"] == "http.response.body"]
    # Lines went out before the hang-up, nothing after it (no error line to a closed socket).
    assert all(b'"result"' in body for body in bodies if body)
    assert not any(b'"error"' in body for body in bodies)


# Build -------------------------------------------------------------------------------------


def test_build_from_a_raw_tar_body(port: FakeDockerPort, app: Starlette) -> None:
    port.build_streams.append(FakeEngineStream(build_log()))
    context = context_tar(compress=True)
    registry_config = base64.urlsafe_b64encode(
        json.dumps({"127.0.0.1:5000": {"username": "ci", "password": "pw"}}).encode()
    ).decode()
    response = call(
        app,
        "POST",
        "/v1/images:build?tags=team/app:1&tags=team/app:latest&buildArgs[V]=1&noCache=true"
        "&labels[team]=a+b&dockerfile=Dockerfile",
        content=context,
        headers={"Content-Type": "application/gzip", "X-Registry-Config": registry_config},
    )
    assert response.status_code == 200, response.text
    received = lines(response)
    assert received[0] == {"result": {"log": "Step 1/2 : FROM busybox:1.36\n"}}
    assert received[-1] == {
        "result": {"result": {"imageId": BUILD_ID, "tags": ["team/app:1", "team/app:latest"]}}
    }
    [build] = port.builds
    # The core unpacks and rewrites the context: the Engine gets the same files, plain.
    assert regular_files(build.context) == regular_files(context)
    assert not build.gzip
    assert build.build_args == {"V": "1"}
    assert build.labels == {"team": "a b"}
    assert build.no_cache
    [auth] = build.registry_auths
    assert (auth.server_address, auth.username, auth.password) == ("127.0.0.1:5000", "ci", "pw")


def test_build_from_a_json_client_stream(port: FakeDockerPort, app: Starlette) -> None:
    port.build_streams.append(FakeEngineStream(build_log()))
    context = context_tar()
    half = len(context) // 2
    body = "\n".join(
        json.dumps(message)
        for message in (
            {"options": {"tags": ["team/app:2"]}},
            {"contextChunk": base64.b64encode(context[:half]).decode()},
            {"contextChunk": base64.b64encode(context[half:]).decode()},
        )
    )
    response = call(app, "POST", "/v1/images:build", content=body.encode())
    assert response.status_code == 200, response.text
    assert lines(response)[-1]["result"]["result"]["imageId"] == BUILD_ID
    [build] = port.builds
    assert regular_files(build.context) == regular_files(context)
    assert build.tags == ("team/app:2",)


def test_build_errors(port: FakeDockerPort, app: Starlette) -> None:
    in_url = call(
        app,
        "POST",
        "/v1/images:build?registryAuths.password=x",
        content=context_tar(),
        headers={"Content-Type": "application/x-tar"},
    )
    assert in_url.status_code == 400
    assert in_url.json()["details"][0]["reason"] == "INVALID_BUILD_OPTIONS"

    too_big = call(
        app,
        "POST",
        "/v1/images:build",
        content=b"x" * (65 * 1024),
        headers={"Content-Type": "application/x-tar"},
    )
    assert too_big.status_code == 429
    assert lines(too_big)[0]["error"]["details"][0]["reason"] == "BUILD_CONTEXT_TOO_LARGE"

    not_json = call(app, "POST", "/v1/images:build", content=b'{"options": {}}\n{oops}\n')
    assert not_json.status_code == 400
    assert lines(not_json)[0]["error"]["message"].startswith("Failed to decode request")
    assert port.builds == []


@pytest.fixture
def core(port: FakeDockerPort, settings: CoreSettings) -> Iterator[ImageCore]:
    executor = ThreadPoolExecutor(max_workers=4)
    yield ImageCore(port, executor, settings, stream_executor=executor)
    executor.shutdown(wait=False, cancel_futures=True)


def test_json_bodies_are_bounded_by_the_message_limit(core: ImageCore) -> None:
    small = create_http_app(rest_routes(ImageServiceServicer(core), max_body_bytes=64))
    fits = call(small, "POST", "/v1/images:tag", json={"source": "a", "target": "b"})
    assert fits.status_code != 429
    too_big = call(small, "POST", "/v1/images:tag", json={"source": "a" * 100, "target": "b"})
    assert too_big.status_code == 429
    status = too_big.json()
    assert status["code"] == 8
    assert status["details"][0]["reason"] == "REQUEST_TOO_LARGE"
    assert "over 64 bytes" in status["message"]


# Raw bodies (google.api.HttpBody) ----------------------------------------------------------


def test_export_streams_the_raw_archive(port: FakeDockerPort, app: Starlette) -> None:
    port.add(engine_image(1, tags=[REFERENCE]))
    port.export_archives.append(FakeEngineBytes([b"tar-part-1|", b"tar-part-2"]))
    response = call(app, "GET", f"/v1/images:export?images={ENCODED}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-tar"
    assert response.content == b"tar-part-1|tar-part-2"


def test_an_export_failing_before_its_first_byte_is_a_status(app: Starlette) -> None:
    response = call(app, "GET", f"/v1/images:export?images={ENCODED}")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json()["details"][0]["reason"] == "IMAGE_NOT_FOUND"


def test_an_export_failing_midway_cuts_the_response_short(
    port: FakeDockerPort, app: Starlette
) -> None:
    port.add(engine_image(1, tags=[REFERENCE]))
    archive = FakeEngineBytes([b"tar-part-1", UnavailableError("daemon went away")])
    port.export_archives.append(archive)
    # No clean end of the body: the server drops the connection (here the ASGI
    # transport raises what the server would turn into a cut connection).
    with pytest.raises(BodyCutShort, match="daemon went away"):
        call(app, "GET", f"/v1/images:export?images={ENCODED}")
    assert archive.closed
