"""The audit trail over gRPC: one `imagesvc.audit` record per write, whatever its
outcome (done, failed, refused), with who, how authenticated, the RPC, the transport,
the request id and the references; none for reads; never a secret."""

from __future__ import annotations

import json
import uuid
from typing import Any

import grpc
import httpx
import pytest

from devtools.sandbox import BuiltImage, Engine, Registry
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_pb2
from imagesvc.v1 import image_service_pb2 as pb
from tests.integration.log_capture import CapturedLogs
from tests.integration.security.conftest import Tokens
from tests.integration.security.probes import ABSENT_IMAGE, Stub, failure


def _metadata(tokens: Tokens | None, role: str, request_id: str) -> tuple[tuple[str, str], ...]:
    auth = tokens.metadata(role) if tokens is not None else ()
    return (*auth, ("x-request-id", request_id))


def _audit_of(logs: CapturedLogs, request_id: str) -> list[dict[str, Any]]:
    return logs.wait_for(
        lambda r: r["logger"] == "imagesvc.audit" and r.get("request_id") == request_id
    )


def test_a_successful_tag_and_remove_are_audited_with_their_results(
    token_stub: Stub, tokens: Tokens, logs: CapturedLogs, busybox_image: BuiltImage
) -> None:
    target = f"imagesvc-test/audit-{uuid.uuid4().hex[:8]}:1"
    tag_id, remove_id = uuid.uuid4().hex, uuid.uuid4().hex
    token_stub.TagImage(
        pb.TagImageRequest(source=busybox_image.tag, target=target),
        metadata=_metadata(tokens, "builder", tag_id),
        timeout=30,
    )
    token_stub.RemoveImage(
        pb.RemoveImageRequest(image=target),
        metadata=_metadata(tokens, "admin", remove_id),
        timeout=30,
    )

    [tagged] = _audit_of(logs, tag_id)
    assert tagged["message"] == "audit"
    assert tagged["rpc"] == "TagImage"
    assert (tagged["identity"], tagged["via"], tagged["transport"]) == (
        "builder-bot",
        "token",
        "grpc",
    )
    assert tagged["subject"] == {"source": busybox_image.tag, "target": target}
    assert tagged["outcome"] == "ok"
    assert tagged["result"] == {"image_id": busybox_image.id}
    assert tagged["peer"].startswith("ipv4:127.0.0.1:")

    [removed] = _audit_of(logs, remove_id)
    assert (removed["rpc"], removed["identity"], removed["outcome"]) == (
        "RemoveImage",
        "admin-bot",
        "ok",
    )
    assert removed["subject"] == {"image": target}
    assert removed["result"]["untagged"] == [target]


def test_a_refused_write_is_audited(token_stub: Stub, tokens: Tokens, logs: CapturedLogs) -> None:
    denied_id, anonymous_id = uuid.uuid4().hex, uuid.uuid4().hex
    reference = "127.0.0.1:1/imagesvc-test/audit:1"
    push = pb.PushImageRequest(reference=reference)
    assert failure(
        lambda: list(
            token_stub.PushImage(push, metadata=_metadata(tokens, "builder", denied_id), timeout=30)
        )
    )
    pull = pb.PullImageRequest(reference=reference)
    assert failure(
        lambda: list(
            token_stub.PullImage(pull, metadata=_metadata(None, "", anonymous_id), timeout=30)
        )
    )

    [denied] = _audit_of(logs, denied_id)
    assert denied["rpc"] == "PushImage"
    assert denied["identity"] == "builder-bot"
    assert denied["subject"] == {"reference": reference}
    assert (denied["outcome"], denied["code"], denied["reason"]) == (
        "denied",
        "PERMISSION_DENIED",
        "CALLER_PERMISSION_DENIED",
    )
    [anonymous] = _audit_of(logs, anonymous_id)
    assert (anonymous["identity"], anonymous["via"]) == (None, None)
    assert (anonymous["outcome"], anonymous["code"], anonymous["reason"]) == (
        "denied",
        "UNAUTHENTICATED",
        "CALLER_UNAUTHENTICATED",
    )


def test_a_failed_write_is_audited_with_its_code(
    token_stub: Stub, tokens: Tokens, logs: CapturedLogs
) -> None:
    request_id = uuid.uuid4().hex
    request = pb.RemoveImageRequest(image=ABSENT_IMAGE)
    assert failure(
        lambda: token_stub.RemoveImage(
            request, metadata=_metadata(tokens, "admin", request_id), timeout=30
        )
    )
    [record] = _audit_of(logs, request_id)
    assert (record["outcome"], record["code"], record["reason"]) == (
        "failed",
        "NOT_FOUND",
        "IMAGE_NOT_FOUND",
    )


def test_check_registry_auth_is_audited_without_credentials(
    token_stub: Stub, tokens: Tokens, logs: CapturedLogs, auth_registry: Registry
) -> None:
    assert auth_registry.password is not None
    request_id = uuid.uuid4().hex
    auth = image_pb2.RegistryAuth(
        username=auth_registry.username or "",
        password=auth_registry.password,
        server_address=auth_registry.address,
    )
    token_stub.CheckRegistryAuth(
        pb.CheckRegistryAuthRequest(auth=auth),
        metadata=_metadata(tokens, "puller", request_id),
        timeout=60,
    )
    [record] = _audit_of(logs, request_id)
    assert record["subject"] == {"registry": auth_registry.address}
    assert record["outcome"] == "ok"
    assert auth_registry.password not in json.dumps(record)


@pytest.mark.parametrize("rpc", ["ListImages", "GetImage"])
def test_reads_are_not_audited(
    token_stub: Stub, tokens: Tokens, logs: CapturedLogs, rpc: str
) -> None:
    request_id = uuid.uuid4().hex
    metadata = _metadata(tokens, "viewer", request_id)
    if rpc == "ListImages":
        token_stub.ListImages(pb.ListImagesRequest(page_size=1), metadata=metadata, timeout=30)
    else:
        assert failure(
            lambda: token_stub.GetImage(
                pb.GetImageRequest(image=ABSENT_IMAGE), metadata=metadata, timeout=30
            )
        )
    # The access line names the caller; it comes after any audit line of the call.
    [access] = logs.wait_for(
        lambda r: (
            r["logger"] == "imagesvc.access"
            and r.get("request_id") == request_id
            and r["message"] == "rpc"
        )
    )
    assert [r for r in logs.named("imagesvc.audit") if r.get("request_id") == request_id] == []
    assert access["identity"] == "viewer-bot"


def test_an_unauthenticated_pull_is_refused_before_the_engine_is_asked(
    token_stub: Stub, logs: CapturedLogs
) -> None:
    """Authorization comes first: a refused call leaves no Engine call behind it."""
    request_id = uuid.uuid4().hex
    mark = logs.mark()
    error = failure(
        lambda: list(
            token_stub.PullImage(
                pb.PullImageRequest(reference="127.0.0.1:1/imagesvc-test/never:1"),
                metadata=(("x-request-id", request_id),),
                timeout=30,
            )
        )
    )
    assert isinstance(error, grpc.Call)
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    engine_calls = [
        r
        for r in logs.since(mark)
        if r["logger"].startswith("urllib3") and "/images/create" in r["message"]
    ]
    assert engine_calls == []


def test_a_rest_write_is_audited_as_rest(
    token_server: ThreadedServer, tokens: Tokens, logs: CapturedLogs
) -> None:
    request_id = uuid.uuid4().hex
    response = httpx.post(
        f"http://127.0.0.1:{token_server.http_port}/v1/images:tag",
        json={"source": ABSENT_IMAGE, "target": "imagesvc-test/audit-rest:1"},
        headers={
            "authorization": f"Bearer {tokens.by_role['builder']}",
            "x-request-id": request_id,
        },
        timeout=30,
        trust_env=False,
    )
    assert response.status_code == 404
    [record] = _audit_of(logs, request_id)
    assert (record["rpc"], record["transport"], record["identity"], record["via"]) == (
        "TagImage",
        "rest",
        "builder-bot",
        "token",
    )
    assert record["peer"].startswith("ipv4:127.0.0.1:")
    assert (record["outcome"], record["code"]) == ("failed", "NOT_FOUND")


def test_rest_refuses_an_unknown_token_with_401_and_a_challenge(
    token_server: ThreadedServer,
) -> None:
    unknown = "unknown-rest-token-0123456789"
    response = httpx.get(
        f"http://127.0.0.1:{token_server.http_port}/v1/images",
        headers={"authorization": f"Bearer {unknown}"},
        timeout=30,
        trust_env=False,
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"]
    assert unknown not in response.text
    assert response.json()["message"] == "the bearer token is not valid (unknown or revoked)"


def test_the_open_http_endpoints_need_no_token(token_server: ThreadedServer) -> None:
    base = f"http://127.0.0.1:{token_server.http_port}"
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert httpx.get(base + path, timeout=30, trust_env=False).status_code == 200, path


def test_a_forwarded_for_header_does_not_change_the_audited_peer(
    token_server: ThreadedServer, tokens: Tokens, logs: CapturedLogs
) -> None:
    """The audit names the TCP peer on both ports: a header any client can send (and
    that uvicorn would trust from loopback, where a sidecar or any local user connects
    from) must not put another address in the record, or in the rate limit's key."""
    request_id = uuid.uuid4().hex
    response = httpx.post(
        f"http://127.0.0.1:{token_server.http_port}/v1/images:tag",
        json={"source": ABSENT_IMAGE, "target": "imagesvc-test/audit-rest:1"},
        headers={
            "authorization": f"Bearer {tokens.by_role['builder']}",
            "x-request-id": request_id,
            "x-forwarded-for": "203.0.113.9",
            "x-forwarded-proto": "https",
        },
        timeout=30,
        trust_env=False,
    )
    assert response.status_code == 404
    [record] = _audit_of(logs, request_id)
    assert record["peer"].startswith("ipv4:127.0.0.1:"), record["peer"]


def test_inspect_registry_image_is_audited_without_credentials(
    token_stub: Stub,
    tokens: Tokens,
    logs: CapturedLogs,
    auth_registry: Registry,
    default_engine: Engine,
    default_busybox_image: BuiltImage,
) -> None:
    assert auth_registry.password is not None
    reference = f"{auth_registry.address}/team/audit-inspect-{uuid.uuid4().hex[:8]}:1"
    auth = image_pb2.RegistryAuth(
        username=auth_registry.username or "",
        password=auth_registry.password,
        server_address=auth_registry.address,
    )
    default_engine.docker("tag", default_busybox_image.tag, reference)
    try:
        for _ in token_stub.PushImage(
            pb.PushImageRequest(reference=reference, auth=auth),
            metadata=_metadata(tokens, "admin", uuid.uuid4().hex),
            timeout=60,
        ):
            pass
        request_id = uuid.uuid4().hex
        found = token_stub.InspectRegistryImage(
            pb.InspectRegistryImageRequest(reference=reference, auth=auth),
            metadata=_metadata(tokens, "puller", request_id),
            timeout=60,
        )
    finally:
        default_engine.docker("image", "rm", reference)
    [record] = _audit_of(logs, request_id)
    assert record["subject"] == {"reference": reference}
    assert record["result"] == {"digest": found.digest}
    assert record["outcome"] == "ok"
    assert auth_registry.password not in json.dumps(record)
