"""Pull, push and registry credentials over REST, against the sandboxed engine and the
loopback registries: NDJSON lines arrive while the transfer runs, failures end the
stream with an {"error": ...} line (or set the HTTP status when nothing was sent yet),
and a client that disconnects stops the pull on the daemon.

Slow pulls go through tests/integration/throttle_proxy.py in front of the open
registry, which also shows when the daemon drops its registry connections."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from devtools.sandbox import BuiltImage, Engine, Registry, build_busybox_image
from tests.integration.rest.conftest import error_reason, expect_status, ndjson, split_stream
from tests.integration.throttle_proxy import ThrottleProxy
from tests.integration.transfers import (
    local_id,
    local_image,
    registry_manifest,
    remove_local,
    unique,
)

LAYER_MIB = 4
RATE = 1024 * 1024  # bytes a second through the proxy: the layer takes about 4 s


@dataclass(frozen=True)
class Served:
    """An image in the open registry, not on the engine."""

    repository: str
    image_id: str
    digest: str


def _served(engine: Engine, registry: Registry, mib: int) -> Served:
    repository = unique("team/rest-")
    direct = f"{registry.address}/{repository}:1"
    image_id = build_busybox_image(
        engine, direct, extra_lines=[f"RUN dd if=/dev/urandom of=/blob bs=1M count={mib}"]
    )
    engine.docker("push", direct)
    digest = registry_manifest(registry, repository, "1").digest
    remove_local(engine, direct)
    return Served(repository, image_id, digest)


@pytest.fixture(scope="module")
def served(engine: Engine, open_registry: Registry, busybox_image: BuiltImage) -> Iterator[Served]:
    image = _served(engine, open_registry, LAYER_MIB)
    yield image
    remove_local(engine, f"{open_registry.address}/{image.repository}:1")


@pytest.fixture
def proxy(open_registry: Registry) -> Iterator[ThrottleProxy]:
    with ThrottleProxy(open_registry.address, rate=RATE) as running:
        yield running


def _layer_states(results: list[dict[str, Any]]) -> set[str]:
    return {
        layer["state"]
        for result in results
        if "progress" in result
        for layer in result["progress"]["layers"]
    }


def test_pull_lines_arrive_while_it_runs(
    rest: httpx.Client, engine: Engine, proxy: ThrottleProxy, served: Served
) -> None:
    reference = f"{proxy.address}/{served.repository}:1"
    assert local_image(engine, reference) is None
    arrivals: list[tuple[float, dict[str, Any]]] = []
    try:
        started = time.monotonic()
        with rest.stream("POST", "/v1/images:pull", json={"reference": reference}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/json"
            assert response.headers.get("transfer-encoding") == "chunked"
            for line in response.iter_lines():
                arrivals.append((time.monotonic() - started, json.loads(line)))
        ended = time.monotonic() - started
        results, error = split_stream([line for _, line in arrivals])
        assert error is None, error
        assert list(results[-1]) == ["result"]
        assert results[-1]["result"]["imageId"] == served.image_id == local_id(engine, reference)
        assert results[-1]["result"]["digest"] == served.digest
        assert results[-1]["result"]["reference"] == reference
        assert {"Downloading", "Pull complete"} <= _layer_states(results)
        # Streamed, not buffered: progress lines came out over the seconds the throttled
        # layer took, each as it happened.
        assert ended > 2.0, f"the throttled pull took only {ended:.1f}s"
        early = [t for t, line in arrivals if t < ended - 1.0]
        assert len(early) >= 3, f"only {len(early)} lines before the last second: {arrivals[:5]}"
        done = [
            int(line["result"]["progress"]["bytesDone"])
            for _, line in arrivals
            if "progress" in line["result"]
        ]
        assert done == sorted(done)
        assert done[-1] >= LAYER_MIB * 1024 * 1024
        print(
            f"\nREST pull: {len(arrivals)} lines over {ended:.2f}s, first at {arrivals[0][0]:.2f}s"
        )
    finally:
        remove_local(engine, reference)


def test_push_streams_then_reports_the_digest_the_registry_serves(
    rest: httpx.Client, engine: Engine, open_registry: Registry, busybox_image: BuiltImage
) -> None:
    repository = unique("team/rest-push-")
    reference = f"{open_registry.address}/{repository}:1"
    build_busybox_image(engine, reference, extra_lines=[f"RUN echo {unique('')} > /id"])
    try:
        response = rest.post("/v1/images:push", json={"reference": reference})
        assert response.status_code == 200, response.text
        results, error = split_stream(ndjson(response))
        assert error is None, error
        result = results[-1]["result"]
        served = registry_manifest(open_registry, repository, "1")
        assert result["digest"] == served.digest
        assert result["size"] == str(served.size)
        assert (result["tag"], result["reference"]) == ("1", reference)
        assert "Pushed" in _layer_states(results)
    finally:
        remove_local(engine, reference)


def test_stream_failures_before_the_first_line_set_the_http_status(
    rest: httpx.Client, engine: Engine, open_registry: Registry, served: Served
) -> None:
    cases = [
        (f"{open_registry.address}/{served.repository}:no-such-tag", 404, 5, "IMAGE_NOT_FOUND"),
        ("127.0.0.1:1/team/x:1", 503, 14, "REGISTRY_UNAVAILABLE"),
        ("team//x:1", 400, 3, "INVALID_REFERENCE"),
        ("", 400, 3, "INVALID_ARGUMENT"),
    ]
    for reference, http, code, reason in cases:
        response = rest.post("/v1/images:pull", json={"reference": reference})
        assert response.status_code == http, (reference, response.text)
        [line] = ndjson(response)
        assert line["error"]["code"] == code, line
        assert error_reason(line["error"]) == reason
    # A body that does not decode is answered before the stream starts: a plain Status.
    expect_status(rest.post("/v1/images:pull", content=b"[]"), 400, 3, "INVALID_ARGUMENT")


def _auth(registry: Registry, password: str | None = None) -> dict[str, str]:
    assert registry.username is not None
    assert registry.password is not None
    return {
        "username": registry.username,
        "password": registry.password if password is None else password,
        "serverAddress": registry.address,
    }


def test_registry_credentials(
    rest: httpx.Client, engine: Engine, auth_registry: Registry, busybox_image: BuiltImage
) -> None:
    wrong = f"wrong-{unique('')}"
    refused = rest.post("/v1/registries:checkAuth", json={"auth": _auth(auth_registry, wrong)})
    expect_status(refused, 401, 16, "REGISTRY_UNAUTHENTICATED")
    assert refused.headers["www-authenticate"]
    assert wrong not in refused.text

    accepted = rest.post("/v1/registries:checkAuth", json={"auth": _auth(auth_registry)})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "Login Succeeded"

    repository = unique("team/rest-auth-")
    reference = f"{auth_registry.address}/{repository}:1"
    build_busybox_image(engine, reference, extra_lines=[f"RUN echo {unique('')} > /id"])
    try:
        # The Engine refuses a push only once its layers are prepared: a stream that
        # fails midway, after progress lines (so the HTTP status is already 200).
        anonymous = rest.post("/v1/images:push", json={"reference": reference})
        assert anonymous.status_code == 200, anonymous.text
        results, error = split_stream(ndjson(anonymous))
        assert results
        assert error is not None
        assert error["code"] == 16
        assert error_reason(error) == "REGISTRY_UNAUTHENTICATED"

        pushed = rest.post(
            "/v1/images:push", json={"reference": reference, "auth": _auth(auth_registry)}
        )
        assert pushed.status_code == 200, pushed.text
        _, error = split_stream(ndjson(pushed))
        assert error is None, error
        remove_local(engine, reference)

        bad_password = rest.post(
            "/v1/images:pull", json={"reference": reference, "auth": _auth(auth_registry, wrong)}
        )
        assert bad_password.status_code == 401, bad_password.text
        assert error_reason(ndjson(bad_password)[-1]["error"]) == "REGISTRY_UNAUTHENTICATED"
        assert wrong not in bad_password.text
        assert local_image(engine, reference) is None

        pulled = rest.post(
            "/v1/images:pull", json={"reference": reference, "auth": _auth(auth_registry)}
        )
        assert pulled.status_code == 200, pulled.text
        results, error = split_stream(ndjson(pulled))
        assert error is None, error
        assert results[-1]["result"]["imageId"] == local_id(engine, reference)
        assert auth_registry.password is not None
        assert auth_registry.password not in pulled.text
    finally:
        remove_local(engine, reference)


# Abandoned and overdue pulls stop on the daemon ------------------------------------------

BIG_MIB = 16
SLOW = 200 * 1024  # the big layer would take ~80 s
STOP_WITHIN = 5.0
AFTER_STOP_WAIT = 3.0


@pytest.fixture(scope="module")
def big(engine: Engine, open_registry: Registry, busybox_image: BuiltImage) -> Iterator[Served]:
    image = _served(engine, open_registry, BIG_MIB)
    yield image
    remove_local(engine, f"{open_registry.address}/{image.repository}:1")


def _downloading(line: dict[str, Any]) -> bool:
    progress = line.get("result", {}).get("progress", {})
    return any(layer["state"] == "Downloading" for layer in progress.get("layers", []))


def _assert_daemon_stopped(
    engine: Engine, proxy: ThrottleProxy, reference: str, since: float
) -> float:
    """The daemon dropped its registry connections, took no more bytes, and does not
    come back for the image once the registry is fast again; returns how long after
    `since` the connections closed."""
    assert proxy.wait_for(lambda: proxy.open_connections == 0, timeout=STOP_WITHIN), (
        f"{proxy.open_connections} registry connection(s) still open {STOP_WITHIN}s after"
        " the client went away"
    )
    closed = proxy.last_close()
    assert closed is not None
    forwarded = proxy.bytes_to_client
    assert forwarded < BIG_MIB * 1024 * 1024 // 2
    opened = proxy.connections_opened
    proxy.set_rate(None)
    time.sleep(AFTER_STOP_WAIT)
    assert proxy.connections_opened == opened, "the daemon came back to the registry"
    assert proxy.bytes_to_client == forwarded
    assert local_image(engine, reference) is None
    return max(0.0, closed - since)


def _assert_still_serves(rest: httpx.Client, engine: Engine, reference: str, big: Served) -> None:
    """A whole pull through the (now fast) proxy works, in less than the wait above."""
    started = time.monotonic()
    response = rest.post("/v1/images:pull", json={"reference": reference})
    took = time.monotonic() - started
    results, error = split_stream(ndjson(response))
    assert error is None, error
    assert results[-1]["result"]["imageId"] == big.image_id == local_id(engine, reference)
    assert took < AFTER_STOP_WAIT, f"an unthrottled pull took {took:.1f}s"


def test_a_client_that_disconnects_stops_the_pull_on_the_daemon(
    rest: httpx.Client, engine: Engine, open_registry: Registry, big: Served
) -> None:
    with ThrottleProxy(open_registry.address, rate=SLOW) as proxy:
        reference = f"{proxy.address}/{big.repository}:1"
        assert local_image(engine, reference) is None
        try:
            with rest.stream("POST", "/v1/images:pull", json={"reference": reference}) as response:
                assert response.status_code == 200
                for text in response.iter_lines():
                    line = json.loads(text)
                    assert "error" not in line, line
                    if _downloading(line):
                        break
                else:
                    raise AssertionError("the stream ended before a layer was downloading")
                assert proxy.open_connections >= 1
            # Leaving the block closed the connection mid-stream.
            stopped = _assert_daemon_stopped(engine, proxy, reference, time.monotonic())
            print(f"\nREST disconnect: registry connections closed {stopped:.3f}s after it")
            _assert_still_serves(rest, engine, reference, big)
        finally:
            remove_local(engine, reference)


def test_grpc_timeout_ends_a_pull_with_an_error_line_and_stops_it(
    rest: httpx.Client, engine: Engine, open_registry: Registry, big: Served
) -> None:
    with ThrottleProxy(open_registry.address, rate=SLOW) as proxy:
        reference = f"{proxy.address}/{big.repository}:1"
        try:
            started = time.monotonic()
            response = rest.post(
                "/v1/images:pull", json={"reference": reference}, headers={"Grpc-Timeout": "3S"}
            )
            took = time.monotonic() - started
            # Lines went out before the deadline: the status is 200, the error comes last.
            assert response.status_code == 200
            results, error = split_stream(ndjson(response))
            assert results
            assert any(_downloading({"result": r}) for r in results)
            assert error == {"code": 4, "message": "context deadline exceeded", "details": []}
            assert 2.9 <= took < 10, took
            _assert_daemon_stopped(engine, proxy, reference, time.monotonic())
        finally:
            remove_local(engine, reference)
