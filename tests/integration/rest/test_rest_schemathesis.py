"""schemathesis against /openapi.json: generated valid and invalid requests for every
operation never get a 5xx other than the documented 503, invalid ones are refused
(negative_data_rejection), status codes and content types are the documented ones, and
every answer is JSON in the documented shape.

Random input must not reach the outside world or the shared session images:

- the server under test has an engine of its own (a second sandboxed dockerd, in a
  directory of its own), so random DELETE and prune calls destroy nothing shared;
- every request that makes the engine contact a registry is confined to 127.0.0.1:1
  (closed): the pull/push/inspectRegistry `reference` and each checkUpdates reference
  are prefixed with it, which makes it the registry host whatever the generated rest
  is, and checkAuth's `auth.serverAddress` is set to it
  (an empty one would mean Docker Hub). A reference without a registry host would
  mean Docker Hub too, so nothing is sent unconfined;
- WatchImages runs until its client ends it: each fuzzed one gets a short Grpc-Timeout;
- BuildImage is not fuzzed: a build context is an archive the engine unpacks and whose
  FROM lines it pulls, which cannot be confined by rewriting fields (the integration
  tests in test_rest_build.py cover it with real contexts).

Checks left out, and why: `response_schema_conformance` (grpc-gateway writes null for
an unset message field, which protoc-gen-openapiv2 does not declare nullable, and a
stream's body is NDJSON, not one document: the shape is checked here instead),
`positive_data_acceptance` (a well-formed request for an image that does not exist is
rightly 404), `unsupported_method` (grpc-gateway answers 501 UNIMPLEMENTED "Method Not
Allowed", not 405; test_rest_paths.py pins that).

Bounded: a fixed number of examples per operation, no shrinking, about half a minute in
all; then the same with the engine stopped, where only 503 may be a 5xx, and is seen.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    status_code_conformance,
)
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode

from devtools.sandbox import Engine
from imagesvc.server import ThreadedServer
from tests.integration.conftest import server_settings

CLOSED_REGISTRY = "127.0.0.1:1"
EXAMPLES = 25
UNFUZZED = {"ImageService_BuildImage"}
WATCH_DEADLINE = "200m"  # Grpc-Timeout of a fuzzed WatchImages
FuzzCase = Case[Any]
CHECKS = [status_code_conformance, content_type_conformance, negative_data_rejection]


@pytest.fixture(scope="module")
def fuzzed(own_engine: Engine) -> Iterator[ThreadedServer]:
    # An empty stand-in for the live image index, so that WatchImages streams (until the
    # index is wired into the server, issue 14; then drop image_snapshot).
    server = ThreadedServer(server_settings(own_engine.host), image_snapshot=list)
    try:
        yield server
    finally:
        server.stop()


def confine(case: FuzzCase) -> None:
    """Points every registry the request names at the closed loopback port."""
    body = case.body
    if not isinstance(body, dict):
        return
    operation = case.operation.definition.raw.get("operationId")
    if operation in (
        "ImageService_PullImage",
        "ImageService_PushImage",
        "ImageService_InspectRegistryImage",
    ):
        reference = body.get("reference")
        if isinstance(reference, str):
            body["reference"] = f"{CLOSED_REGISTRY}/{reference}"
    elif operation == "ImageService_CheckImageUpdates":
        references = body.get("references")
        if isinstance(references, list):
            body["references"] = [
                f"{CLOSED_REGISTRY}/{r}" if isinstance(r, str) else r for r in references
            ]
    elif operation == "ImageService_CheckRegistryAuth":
        auth = body.get("auth")
        body["auth"] = {
            **(auth if isinstance(auth, dict) else {}),
            "serverAddress": CLOSED_REGISTRY,
        }


def bound_watch(case: FuzzCase) -> None:
    """A watch never ends by itself: a short deadline ends it (the stream then ends with
    a DEADLINE_EXCEEDED error line, after the 200 of its first line)."""
    if case.operation.definition.raw.get("operationId") == "ImageService_WatchImages":
        case.headers["Grpc-Timeout"] = WATCH_DEADLINE


def check_shape(case: FuzzCase, response: schemathesis.Response) -> None:
    """JSON everywhere: a message (200), a google.rpc.Status (errors), NDJSON lines of
    {"result"} / {"error"} (streams)."""
    assert response.headers["content-type"] == ["application/json"], response.headers
    streaming = "Stream result of" in json.dumps(
        case.operation.definition.raw["responses"]["200"]["schema"]
    )
    if streaming and response.text.endswith("\n"):
        # NDJSON: lines end at "\n" only (a string may hold U+0085 and the like).
        lines = [json.loads(line) for line in response.text.split("\n")[:-1]]
        assert lines
        assert all(list(line) in (["result"], ["error"]) for line in lines), lines
        assert all("error" not in line for line in lines[:-1]), lines
        if response.status_code != 200:
            assert [list(line) for line in lines] == [["error"]], lines
        return
    document = response.json()
    if response.status_code == 200:
        assert isinstance(document, dict)
    else:
        assert set(document) == {"code", "message", "details"}, document


def fuzz(server: ThreadedServer, *, examples: int) -> dict[int, int]:
    """Runs every fuzzed operation; returns how often each status code came back."""
    base_url = f"http://127.0.0.1:{server.http_port}"
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    session = requests.Session()
    session.trust_env = False  # loopback only, never a proxy from the environment
    seen: dict[int, int] = {}
    server_errors: list[str] = []
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    for operation in operations:
        if operation.definition.raw["operationId"] in UNFUZZED:
            continue
        strategy = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @given(case=strategy)
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: FuzzCase) -> None:
            confine(case)
            bound_watch(case)
            response = case.call(base_url=base_url, session=session, timeout=30)
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            if response.status_code >= 500 and response.status_code != 503:
                server_errors.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}"
                    f" {response.text[:300]}"
                )
            case.validate_response(response, checks=CHECKS)
            check_shape(case, response)

        run()
    assert not server_errors, "\n".join(server_errors)
    return seen


def test_fuzzing_finds_no_server_error(fuzzed: ThreadedServer) -> None:
    started = time.monotonic()
    seen = fuzz(fuzzed, examples=EXAMPLES)
    took = time.monotonic() - started
    print(f"\nschemathesis, engine up: {sum(seen.values())} requests in {took:.1f}s: {seen}")
    assert sum(seen.values()) >= EXAMPLES * 5
    assert any(200 <= code < 300 for code in seen)
    assert any(400 <= code < 500 for code in seen)


def test_with_the_engine_stopped_only_503(fuzzed: ThreadedServer, own_engine: Engine) -> None:
    own_engine.stop()
    try:
        deadline = time.monotonic() + 10
        while fuzzed.server.daemon_up and time.monotonic() < deadline:
            time.sleep(0.05)
        seen = fuzz(fuzzed, examples=EXAMPLES // 2)
        print(f"\nschemathesis, engine down: {seen}")
        assert seen.get(503, 0) > 0, seen
        assert not any(code >= 500 and code != 503 for code in seen), seen
    finally:
        own_engine.start()
