"""Logs: one JSON access line per RPC and per REST request, with the request id taken
from (or set on) x-request-id and returned to the caller; and no password or token in
any log line or on /metrics during an authenticated push and a failed login, over gRPC
and over REST."""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import grpc
import httpx
import pytest

from devtools.sandbox import BuiltImage, Engine, Registry, build_busybox_image
from imagesvc.core.models import RegistryAuth
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_pb2, image_service_pb2_grpc
from imagesvc.v1 import image_service_pb2 as pb
from tests.integration.conftest import server_settings
from tests.integration.log_capture import CapturedLogs, capture_logs
from tests.integration.transfers import basic_auth, read_push, remove_local, unique
from tests.scrape import scrape

Stub = image_service_pb2_grpc.ImageServiceStub
GENERATED_ID = re.compile(r"[0-9a-f]{32}")
# Every JSON line has these; an access line adds its method and code and these.
_LINE_FIELDS = ("time", "level", "logger", "message")
_ACCESS_FIELDS = ("duration_ms", "request_id", "peer")


@pytest.fixture(scope="module")
def secret_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    registry = Registry(
        tmp_path_factory.mktemp("logs-registry"),
        username="imagesvc-logs",
        password=f"Pw{secrets.token_hex(12)}Leak{secrets.token_hex(12)}",
    )
    registry.start()
    yield registry
    registry.stop()


def _forbidden(registry: Registry, *passwords: str) -> list[str]:
    """Each password and the encodings a leak would take (auth headers and documents)."""
    assert registry.username is not None
    forbidden: list[str] = []
    for password in passwords:
        document = json.dumps(
            RegistryAuth(
                username=registry.username, password=password, server_address=registry.address
            ).engine_document()
        ).encode()
        forbidden += [
            password,
            base64.urlsafe_b64encode(document).decode(),
            base64.b64encode(document).decode(),
            basic_auth(registry.username, password).removeprefix("Basic "),
        ]
    return forbidden


def _assert_clean(forbidden: list[str], where: str, text: str) -> None:
    for secret in forbidden:
        assert secret not in text, f"a secret leaked into {where}"


def _auth_json(registry: Registry, password: str) -> dict[str, str]:
    return {
        "username": str(registry.username),
        "password": password,
        "serverAddress": registry.address,
    }


def test_no_secret_in_logs_or_metrics_during_push_and_failed_login(
    server: ThreadedServer, stub: Stub, engine: Engine, secret_registry: Registry
) -> None:
    assert secret_registry.password is not None
    right = secret_registry.password
    wrong = f"Wr{secrets.token_hex(12)}Ong{secrets.token_hex(12)}"
    forbidden = _forbidden(secret_registry, right, wrong)
    grpc_reference = f"{secret_registry.address}/{unique('team/logs-grpc-')}:1"
    rest_reference = f"{secret_registry.address}/{unique('team/logs-rest-')}:1"
    for reference in (grpc_reference, rest_reference):
        build_busybox_image(engine, reference, extra_lines=[f"RUN echo {unique('')} > /id"])
    base = f"http://127.0.0.1:{server.http_port}"
    try:
        with capture_logs() as logs:
            # gRPC: an authenticated push, and a login with the wrong password.
            auth = image_pb2.RegistryAuth(
                username=str(secret_registry.username),
                password=right,
                server_address=secret_registry.address,
            )
            _, pushed = read_push(
                stub.PushImage(pb.PushImageRequest(reference=grpc_reference, auth=auth), timeout=60)
            )
            assert pushed.digest.startswith("sha256:")
            with pytest.raises(grpc.RpcError) as refused:
                stub.CheckRegistryAuth(
                    pb.CheckRegistryAuthRequest(
                        auth=image_pb2.RegistryAuth(
                            username=str(secret_registry.username),
                            password=wrong,
                            server_address=secret_registry.address,
                        )
                    ),
                    timeout=30,
                )
            assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED

            # REST: the same two.
            with httpx.stream(
                "POST",
                f"{base}/v1/images:push",
                json={"reference": rest_reference, "auth": _auth_json(secret_registry, right)},
                timeout=60,
            ) as response:
                assert response.status_code == 200
                lines = [json.loads(line) for line in response.iter_lines() if line]
            assert "result" in lines[-1]
            assert lines[-1]["result"]["result"]["digest"].startswith("sha256:")
            login = httpx.post(
                f"{base}/v1/registries:checkAuth",
                json={"auth": _auth_json(secret_registry, wrong)},
                timeout=30,
            )
            assert login.status_code == 401
            _assert_clean(forbidden, "the REST login's answer", login.text)
            _assert_clean(forbidden, "the REST login's headers", str(login.headers))

            metrics = scrape(server.http_port).text
            _access_lines(logs, "http", wait_for=3)  # push, login, scrape

        access = logs.named("imagesvc.access")
        routes = {(line.get("route"), line.get("status")) for line in access}
        assert ("/v1/images:push", 200) in routes
        assert ("/v1/registries:checkAuth", 401) in routes
        codes = {(line.get("grpc_method"), line.get("grpc_code")) for line in access}
        assert ("/imagesvc.v1.ImageService/PushImage", "OK") in codes
        assert ("/imagesvc.v1.ImageService/CheckRegistryAuth", "UNAUTHENTICATED") in codes
        for line in logs.lines:
            _assert_clean(forbidden, "the server's logs", line)
        _assert_clean(forbidden, "/metrics", metrics)
        assert secret_registry.address not in metrics  # no registry, image or user labels
        assert str(secret_registry.username) not in metrics
    finally:
        for reference in (grpc_reference, rest_reference):
            remove_local(engine, reference)


# Access lines and request ids -------------------------------------------------------------


def _access_lines(logs: CapturedLogs, kind: str, wait_for: int = 0) -> list[dict[str, Any]]:
    """The "rpc" or "http" access lines; waits (a little) for `wait_for` of them, since a
    line is written as its call ends on the server, just after the client got its answer."""
    deadline = time.monotonic() + 5
    while True:
        lines = [line for line in logs.named("imagesvc.access") if line["message"] == kind]
        if len(lines) >= wait_for or time.monotonic() > deadline:
            return lines
        time.sleep(0.01)


def test_one_access_line_per_rest_request_with_its_request_id(
    server: ThreadedServer, busybox_image: BuiltImage
) -> None:
    base = f"http://127.0.0.1:{server.http_port}"
    missing = f"imagesvc-test/{unique('missing-')}:1"
    with capture_logs() as logs:
        found = httpx.get(
            f"{base}/v1/images/{quote(busybox_image.tag, safe='')}",
            headers={"x-request-id": "rest-trace-1"},
            timeout=10,
        )
        absent = httpx.get(f"{base}/v1/images/{quote(missing, safe='')}", timeout=10)
        bad_id = httpx.get(f"{base}/healthz", headers={"x-request-id": "no spaces"}, timeout=10)
        http_lines = _access_lines(logs, "http", wait_for=3)
    assert found.status_code == 200
    assert found.headers["x-request-id"] == "rest-trace-1"
    assert absent.status_code == 404
    assert GENERATED_ID.fullmatch(absent.headers["x-request-id"])
    assert GENERATED_ID.fullmatch(bad_id.headers["x-request-id"])

    assert [(line["route"], line["status"], line["request_id"]) for line in http_lines] == [
        ("/v1/images/{image}", 200, "rest-trace-1"),
        ("/v1/images/{image}", 404, absent.headers["x-request-id"]),
        ("/healthz", 200, bad_id.headers["x-request-id"]),
    ]
    for line in http_lines:
        # Exactly these fields: nothing that could carry a raw path, a query or a header.
        assert set(line) == {
            *_LINE_FIELDS,
            *("http_method", "route", "status", "identity"),
            *_ACCESS_FIELDS,
        }
        assert line["identity"] == "anonymous"  # the session server has no tokens
        assert line["http_method"] == "GET"
        assert line["level"] == "info"
        assert isinstance(line["duration_ms"], float)
        assert re.fullmatch(r"127\.0\.0\.1:\d+", line["peer"])
    # The access line names the route template, not the image.
    assert not any(missing in json.dumps(line) for line in logs.named("imagesvc.access"))


def test_one_access_line_per_rpc_with_its_request_id(stub: Stub, busybox_image: BuiltImage) -> None:
    with capture_logs() as logs:
        _, given = stub.GetImage.with_call(
            pb.GetImageRequest(image=busybox_image.tag),
            metadata=(("x-request-id", "grpc-trace-7"),),
            timeout=10,
        )
        with pytest.raises(grpc.RpcError) as missing:
            stub.GetImage(
                pb.GetImageRequest(image="imagesvc-test/none:1"),
                metadata=(("x-request-id", "bad id with spaces"),),
                timeout=10,
            )
        rpc_lines = _access_lines(logs, "rpc", wait_for=2)
    # Unary calls: with the answer, in the trailing metadata (one write, no extra batch).
    assert dict(given.trailing_metadata())["x-request-id"] == "grpc-trace-7"
    assert "x-request-id" not in dict(given.initial_metadata())
    error = missing.value
    assert isinstance(error, grpc.Call)
    made = dict(error.trailing_metadata())["x-request-id"]
    assert GENERATED_ID.fullmatch(made)
    # Streams: in the response header, before the first message (here: before the error).
    with pytest.raises(grpc.RpcError) as refused:
        for _ in stub.PullImage(
            pb.PullImageRequest(reference="Not/A/Valid:Reference"),
            metadata=(("x-request-id", "grpc-stream-3"),),
            timeout=10,
        ):
            pass
    assert isinstance(refused.value, grpc.Call)
    assert dict(refused.value.initial_metadata())["x-request-id"] == "grpc-stream-3"

    assert [(line["grpc_code"], line["request_id"]) for line in rpc_lines] == [
        ("OK", "grpc-trace-7"),
        ("NOT_FOUND", made),
    ]
    assert rpc_lines[1]["reason"] == "IMAGE_NOT_FOUND"
    assert set(rpc_lines[0]) == {
        *_LINE_FIELDS,
        *("grpc_method", "grpc_code", "identity"),
        *_ACCESS_FIELDS,
    }
    assert set(rpc_lines[1]) == set(rpc_lines[0]) | {"reason"}
    for line in rpc_lines:
        assert line["grpc_method"] == "/imagesvc.v1.ImageService/GetImage"
        assert isinstance(line["duration_ms"], float)
        assert line["peer"]


# Causes of failures --------------------------------------------------------------------------


def test_unavailable_logs_its_cause_with_the_request_id_and_no_secret(own_engine: Engine) -> None:
    password = f"Pw{secrets.token_hex(12)}Cause{secrets.token_hex(12)}"
    registry = "127.0.0.1:5999"  # never contacted: the daemon is down
    server = ThreadedServer(server_settings(own_engine.host))
    try:
        own_engine.stop()
        with capture_logs() as logs, grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            with pytest.raises(grpc.RpcError) as refused:
                image_service_pb2_grpc.ImageServiceStub(channel).CheckRegistryAuth(
                    pb.CheckRegistryAuthRequest(
                        auth=image_pb2.RegistryAuth(
                            username="someone", password=password, server_address=registry
                        )
                    ),
                    metadata=(("x-request-id", "cause-grpc-1"),),
                    timeout=30,
                )
            assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
            pulled = httpx.post(
                f"http://127.0.0.1:{server.http_port}/v1/images:pull",
                json={
                    "reference": f"{registry}/app:1",
                    "auth": {
                        "username": "someone",
                        "password": password,
                        "serverAddress": registry,
                    },
                },
                headers={"x-request-id": "cause-rest-1"},
                timeout=30,
            )
            assert pulled.status_code == 503, pulled.text
            logs.wait_for(
                lambda r: r["logger"] == "imagesvc.failures" and r["request_id"] == "cause-rest-1"
            )
            causes = logs.named("imagesvc.failures")
        by_id = {line["request_id"]: line for line in causes}
        assert len(causes) == 2, causes  # once per call
        for request_id in ("cause-grpc-1", "cause-rest-1"):
            line = by_id[request_id]
            assert line["level"] == "warning"
            assert line["grpc_code"] == "UNAVAILABLE"
            assert line["reason"] == "DAEMON_UNAVAILABLE"
            assert line["error_type"] == "imagesvc.core.errors.UnavailableError"
            # The chain reaches what docker-py saw: the refused connection to the socket.
            assert len(line["cause_chain"]) >= 2, line
            assert any("Connection" in cause for cause in line["cause_chain"][1:]), line
            assert "UNAVAILABLE" in line["message"]
        for text in logs.lines:
            assert password not in text, "the registry password leaked into the log"
    finally:
        server.stop()
        own_engine.start()
