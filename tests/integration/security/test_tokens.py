"""Bearer tokens over gRPC: missing, malformed, unknown and revoked ones are refused with
UNAUTHENTICATED; the tokens file is followed without a restart (revoke, add, a broken
version keeps the last good one)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from devtools.sandbox import Engine
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc
from tests.integration.conftest import server_settings
from tests.integration.log_capture import CapturedLogs
from tests.integration.rpc_errors import error_info
from tests.integration.security.conftest import Tokens, token_entry, write_json
from tests.integration.security.probes import Stub, code_and_reason


def _list(stub: Stub, metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
    code, reason = code_and_reason(
        lambda: stub.ListImages(pb.ListImagesRequest(page_size=1), metadata=metadata, timeout=30)
    )
    if code is grpc.StatusCode.UNAUTHENTICATED:
        assert reason == "CALLER_UNAUTHENTICATED"
    return code


def _refused(stub: Stub, metadata: tuple[tuple[str, str], ...]) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListImages(pb.ListImagesRequest(page_size=1), metadata=metadata, timeout=30)
    error = caught.value
    assert isinstance(error, grpc.Call)
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert error_info(error).reason == "CALLER_UNAUTHENTICATED"
    return error.details() or ""


def test_a_valid_token_is_accepted(token_stub: Stub, tokens: Tokens) -> None:
    assert _list(token_stub, tokens.metadata("viewer")) is grpc.StatusCode.OK


def test_no_token_is_refused(token_stub: Stub) -> None:
    assert "needs credentials" in _refused(token_stub, ())


@pytest.mark.parametrize(
    ("header", "payload"),
    [
        ("Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
        ("Bearer", ""),
        ("Bearer ", ""),
        ("Bearer two words-0123456789", "words-0123456789"),
        ("Bearer " + "a" * 5000, "a" * 5000),
        ("token-without-scheme-0123456789", "token-without-scheme-0123456789"),
    ],
)
def test_a_malformed_authorization_is_refused(token_stub: Stub, header: str, payload: str) -> None:
    details = _refused(token_stub, (("authorization", header),))
    assert "Bearer <token>" in details
    assert not payload or payload not in details


def test_the_scheme_is_case_insensitive(token_stub: Stub, tokens: Tokens) -> None:
    metadata = (("authorization", f"bearer {tokens.by_role['viewer']}"),)
    assert _list(token_stub, metadata) is grpc.StatusCode.OK


def test_two_authorization_values_are_refused(token_stub: Stub, tokens: Tokens) -> None:
    valid = f"Bearer {tokens.by_role['admin']}"
    _refused(token_stub, (("authorization", valid), ("authorization", valid)))


def test_an_unknown_token_is_refused_without_echoing_it(token_stub: Stub) -> None:
    unknown = secrets.token_urlsafe(32)
    details = _refused(token_stub, (("authorization", f"Bearer {unknown}"),))
    assert "unknown or revoked" in details
    assert unknown not in details


def test_a_token_differing_in_one_character_is_refused(token_stub: Stub, tokens: Tokens) -> None:
    token = tokens.by_role["admin"]
    altered = token[:-1] + ("A" if token[-1] != "A" else "B")
    _refused(token_stub, (("authorization", f"Bearer {altered}"),))


# Reload ----------------------------------------------------------------------------


@pytest.fixture
def reloading(
    engine: Engine, tmp_path: Path, package_secrets: list[str]
) -> Iterator[tuple[Stub, Path]]:
    path = tmp_path / "tokens.json"
    write_json(path, {"tokens": []})
    running = ThreadedServer(server_settings(engine.host, tokens_file=str(path)))
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        yield image_service_pb2_grpc.ImageServiceStub(channel), path
    running.stop()


def _eventually(stub: Stub, metadata: tuple[tuple[str, str], ...], code: grpc.StatusCode) -> None:
    """The file is looked at no more than once a second: wait up to 5 s for the change."""
    deadline = time.monotonic() + 5
    while _list(stub, metadata) is not code:
        assert time.monotonic() < deadline, f"still not {code.name} after 5 s"
        time.sleep(0.1)


def test_revoking_and_adding_tokens_takes_effect_without_a_restart(
    reloading: tuple[Stub, Path], package_secrets: list[str], logs: CapturedLogs
) -> None:
    stub, path = reloading
    old, new = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    package_secrets.extend([old, new])
    as_old = (("authorization", f"Bearer {old}"),)
    as_new = (("authorization", f"Bearer {new}"),)
    assert _list(stub, as_old) is grpc.StatusCode.UNAUTHENTICATED

    write_json(path, {"tokens": [token_entry("rotating", "viewer", old)]})
    _eventually(stub, as_old, grpc.StatusCode.OK)

    write_json(path, {"tokens": [token_entry("rotating", "viewer", new)]})
    _eventually(stub, as_old, grpc.StatusCode.UNAUTHENTICATED)
    assert _list(stub, as_new) is grpc.StatusCode.OK
    assert _refused(stub, as_old).endswith("(unknown or revoked)")

    # A broken version keeps the last good one and says so, without quoting the file.
    mark = logs.mark()
    broken = '{"tokens": [{"identity": "x", "roles": ["viewer"], "token": "' + old
    path.write_text(broken)
    deadline = time.monotonic() + 5
    while not [r for r in logs.since(mark) if r["level"] == "error"]:
        # The file is looked at when a call needs it, at most once a second.
        assert _list(stub, as_new) is grpc.StatusCode.OK
        assert time.monotonic() < deadline, "no error logged for the broken tokens file"
        time.sleep(0.1)
    errors = [r for r in logs.since(mark) if r["level"] == "error"]
    assert errors[0]["path"] == str(path)
    assert "not valid JSON" in errors[0]["problem"]
    assert old not in str(errors)
    assert _list(stub, as_new) is grpc.StatusCode.OK
    assert _list(stub, as_old) is grpc.StatusCode.UNAUTHENTICATED

    # Deleting the file is a broken version too: the last good tokens stay.
    path.unlink()
    time.sleep(1.2)
    assert _list(stub, as_new) is grpc.StatusCode.OK
