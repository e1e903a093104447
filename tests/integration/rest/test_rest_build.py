"""BuildImage over REST against the sandboxed engine: a raw tar body (plain, gzip,
uploaded in chunks) with the options in the query, the grpc-gateway JSON client stream,
credentials for a base image in X-Registry-Config, and a build that fails midway."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx

from devtools.sandbox import BuiltImage, Engine, Registry
from tests.integration.builds import dockerfile, make_tar, unique_repo
from tests.integration.local_images import inspect
from tests.integration.rest.conftest import error_reason, expect_status, ndjson, split_stream
from tests.integration.transfers import remove_local

TAR = {"Content-Type": "application/x-tar"}


def _build(rest: httpx.Client, query: str, body: Any, headers: dict[str, str]) -> httpx.Response:
    return rest.post(f"/v1/images:build?{query}", content=body, headers=headers)


def test_build_from_a_tar_body_with_options_in_the_query(
    rest: httpx.Client, engine: Engine, busybox_image: BuiltImage, cleanup: list[str]
) -> None:
    repo = unique_repo("rest-build")
    cleanup.extend([f"{repo}:1", f"{repo}:latest"])
    context = make_tar(
        {
            "Dockerfile": dockerfile(
                f"FROM {busybox_image.tag}",
                "ARG GREETING=unset",
                "ENV FROM_ARG=$GREETING",
                "COPY payload.txt /payload.txt",
                "RUN cat /payload.txt",
            ),
            "payload.txt": "payload-from-the-tar\n",
        }
    )
    response = _build(
        rest,
        f"tags={repo}:1&tags={repo}:latest&buildArgs[GREETING]=hi%20there"
        "&labels[org.example.team]=images&networkMode=none",
        context,
        TAR,
    )
    assert response.status_code == 200, response.text
    results, error = split_stream(ndjson(response))
    assert error is None, error
    logs = "".join(r["log"] for r in results[:-1])
    assert "payload-from-the-tar" in logs
    result = results[-1]["result"]
    assert result["tags"] == [f"{repo}:1", f"{repo}:latest"]
    document = inspect(engine, f"{repo}:1")
    assert result["imageId"] == document["Id"]
    assert "FROM_ARG=hi there" in document["Config"]["Env"]
    assert document["Config"]["Labels"]["org.example.team"] == "images"
    assert inspect(engine, f"{repo}:latest")["Id"] == document["Id"]


def test_build_from_a_gzip_body_uploaded_in_chunks(
    rest: httpx.Client, engine: Engine, busybox_image: BuiltImage, cleanup: list[str]
) -> None:
    repo = unique_repo("rest-gzip")
    cleanup.append(f"{repo}:1")
    context = make_tar(
        {
            "build/Containerfile": dockerfile(f"FROM {busybox_image.tag}", "RUN echo gz > /gz"),
            "padding.bin": bytes(range(256)) * 2048,  # 512 KiB: many chunks on the wire
        },
        compress=True,
    )

    def upload() -> Iterator[bytes]:  # chunked transfer encoding, no Content-Length
        for offset in range(0, len(context), 8192):
            yield context[offset : offset + 8192]

    response = _build(
        rest,
        f"options.tags={repo}:1&dockerfile=build/Containerfile",
        upload(),
        {"Content-Type": "application/gzip"},
    )
    assert response.status_code == 200, response.text
    results, error = split_stream(ndjson(response))
    assert error is None, error
    assert results[-1]["result"]["imageId"] == inspect(engine, f"{repo}:1")["Id"]


def test_build_from_a_json_client_stream(
    rest: httpx.Client, engine: Engine, busybox_image: BuiltImage, cleanup: list[str]
) -> None:
    repo = unique_repo("rest-json")
    cleanup.append(f"{repo}:1")
    context = make_tar({"Dockerfile": dockerfile(f"FROM {busybox_image.tag}", "RUN echo j > /j")})
    pieces = [context[i : i + 1000] for i in range(0, len(context), 1000)]
    messages = [{"options": {"tags": [f"{repo}:1"], "labels": {"via": "json"}}}] + [
        {"contextChunk": base64.b64encode(piece).decode()} for piece in pieces
    ]
    body = "".join(json.dumps(m) + "\n" for m in messages).encode()
    response = rest.post(
        "/v1/images:build", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    results, error = split_stream(ndjson(response))
    assert error is None, error
    document = inspect(engine, f"{repo}:1")
    assert results[-1]["result"] == {"imageId": document["Id"], "tags": [f"{repo}:1"]}
    assert document["Config"]["Labels"]["via"] == "json"


def test_a_build_failing_midway_ends_with_an_error_line(
    rest: httpx.Client, engine: Engine, busybox_image: BuiltImage
) -> None:
    repo = unique_repo("rest-fail")
    context = make_tar(
        {
            "Dockerfile": dockerfile(
                f"FROM {busybox_image.tag}", "RUN echo step-one-ran", "RUN exit 3"
            )
        }
    )
    response = _build(rest, f"tags={repo}:1", context, TAR)
    # Log lines went out first: the status is 200 and the failure is the last line.
    assert response.status_code == 200, response.text
    results, error = split_stream(ndjson(response))
    assert "step-one-ran" in "".join(r.get("log", "") for r in results)
    assert error is not None
    assert error["code"] == 9  # FAILED_PRECONDITION
    assert error_reason(error) == "BUILD_FAILED"
    assert "RUN exit 3" in error["message"]
    assert engine.docker("image", "inspect", f"{repo}:1", check=False).returncode != 0


def test_build_request_errors(rest: httpx.Client, busybox_image: BuiltImage) -> None:
    context = make_tar({"Dockerfile": dockerfile(f"FROM {busybox_image.tag}")})
    # Credentials never in the URL.
    expect_status(
        _build(rest, "registryAuths.password=x", context, TAR), 400, 3, "INVALID_BUILD_OPTIONS"
    )
    expect_status(_build(rest, "noCache=maybe", context, TAR), 400, 3, "INVALID_ARGUMENT")
    # Failures found once the stream started: the status, then one error line.
    for body, reason in [
        (b"definitely not a tar", "INVALID_BUILD_CONTEXT"),
        (make_tar({"other": "x"}), "INVALID_BUILD_OPTIONS"),  # no Dockerfile
        (b"", "INVALID_BUILD_CONTEXT"),
    ]:
        response = _build(rest, "tags=x:1", body, TAR)
        assert response.status_code == 400, response.text
        [line] = ndjson(response)
        assert error_reason(line["error"]) == reason, line["error"]["message"]
    first_not_options = rest.post(
        "/v1/images:build", content=json.dumps({"contextChunk": "AAAA"}).encode()
    )
    assert first_not_options.status_code == 400
    assert error_reason(ndjson(first_not_options)[0]["error"]) == "INVALID_BUILD_OPTIONS"


def test_base_image_credentials_in_x_registry_config(
    rest: httpx.Client,
    engine: Engine,
    auth_registry: Registry,
    busybox_image: BuiltImage,
    cleanup: list[str],
) -> None:
    assert auth_registry.username is not None
    assert auth_registry.password is not None
    base = f"{auth_registry.address}/{unique_repo('rest-base')}:1"
    engine.docker("tag", busybox_image.tag, base)
    login = {"auth": {**_credentials(auth_registry), "serverAddress": auth_registry.address}}
    pushed = rest.post("/v1/images:push", json={"reference": base, **login})
    assert split_stream(ndjson(pushed))[1] is None, pushed.text
    remove_local(engine, base)

    repo = unique_repo("rest-privbase")
    cleanup.append(f"{repo}:1")
    context = make_tar({"Dockerfile": dockerfile(f"FROM {base}", "RUN echo private > /p")})
    try:
        without = _build(rest, f"tags={repo}:1", context, TAR)
        failed = ndjson(without)[-1]
        assert "error" in failed
        assert error_reason(failed["error"]) == "REGISTRY_UNAUTHENTICATED"

        header = base64.urlsafe_b64encode(
            json.dumps({auth_registry.address: _credentials(auth_registry)}).encode()
        ).decode()
        response = _build(rest, f"tags={repo}:1", context, {**TAR, "X-Registry-Config": header})
        assert response.status_code == 200, response.text
        results, error = split_stream(ndjson(response))
        assert error is None, error
        assert results[-1]["result"]["imageId"] == inspect(engine, f"{repo}:1")["Id"]
        assert auth_registry.password not in response.text
    finally:
        remove_local(engine, base)


def _credentials(registry: Registry) -> dict[str, str]:
    assert registry.username is not None
    assert registry.password is not None
    return {"username": registry.username, "password": registry.password}
