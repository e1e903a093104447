"""Safe by default: without authentication the server listens on loopback only, unless
explicitly told otherwise, and says so at start-up. (A test may bind 0.0.0.0:0: nothing
connects to it but this test, over 127.0.0.1.)"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest

from devtools.sandbox import Engine
from imagesvc.server import ThreadedServer
from imagesvc.server_security import SecuritySettingsError
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc
from tests.integration.conftest import server_settings
from tests.integration.log_capture import CapturedLogs
from tests.integration.security.conftest import Pki, Tokens


def _warnings(logs: CapturedLogs, mark: int) -> list[dict[str, Any]]:
    return [
        r
        for r in logs.since(mark)
        if r["logger"] == "imagesvc.server_security" and r["level"] == "warning"
    ]


@pytest.mark.parametrize(
    ("grpc_address", "http_address", "named"),
    [
        ("0.0.0.0:0", "127.0.0.1:0", "0.0.0.0:0 (gRPC)"),
        ("127.0.0.1:0", "0.0.0.0:0", "0.0.0.0:0 (HTTP)"),
        ("127.0.0.1:0", ":0", ":0 (HTTP)"),
        ("[::]:0", "127.0.0.1:0", "[::]:0 (gRPC)"),
        ("localhost.example:0", "127.0.0.1:0", "localhost.example:0 (gRPC)"),
    ],
)
def test_an_unauthenticated_server_refuses_non_loopback_addresses(
    engine: Engine, grpc_address: str, http_address: str, named: str
) -> None:
    settings = server_settings(engine.host, grpc_address=grpc_address, http_address=http_address)
    with pytest.raises(SecuritySettingsError) as refused:
        ThreadedServer(settings)
    message = str(refused.value)
    assert f"refusing to listen on {named} without authentication" in message
    for remedy in ("--tokens-file", "--tls-client-ca-file", "127.0.0.1", "--insecure-allow"):
        assert remedy in message


def test_the_override_listens_everywhere_and_warns(engine: Engine, logs: CapturedLogs) -> None:
    mark = logs.mark()
    settings = server_settings(
        engine.host,
        grpc_address="0.0.0.0:0",
        http_address="0.0.0.0:0",
        insecure_allow_unauthenticated=True,
    )
    running = ThreadedServer(settings)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = image_service_pb2_grpc.ImageServiceStub(channel)
            stub.ListImages(pb.ListImagesRequest(page_size=1), timeout=30)
    finally:
        running.stop()
    [warning] = _warnings(logs, mark)
    assert "authentication is OFF" in warning["message"]
    assert "--insecure-allow-unauthenticated" in warning["message"]
    assert warning["exposed"] == ["0.0.0.0:0 (gRPC)", "0.0.0.0:0 (HTTP)"]


def test_an_unauthenticated_loopback_server_warns_that_authentication_is_off(
    engine: Engine, logs: CapturedLogs
) -> None:
    mark = logs.mark()
    ThreadedServer(server_settings(engine.host)).stop()
    [warning] = _warnings(logs, mark)
    assert warning["message"].startswith("authentication is OFF: every caller has every role")


def test_with_tokens_any_address_is_allowed_and_clear_text_tokens_are_flagged(
    engine: Engine, tokens: Tokens, logs: CapturedLogs
) -> None:
    mark = logs.mark()
    settings = server_settings(engine.host, grpc_address="0.0.0.0:0", tokens_file=str(tokens.path))
    running = ThreadedServer(settings)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = image_service_pb2_grpc.ImageServiceStub(channel)
            stub.ListImages(
                pb.ListImagesRequest(page_size=1), metadata=tokens.metadata("viewer"), timeout=30
            )
    finally:
        running.stop()
    messages = [warning["message"] for warning in _warnings(logs, mark)]
    assert len([m for m in messages if "bearer tokens travel in clear text" in m]) == 1
    # The only other one: this tokens file has plain tokens and everyone may read it.
    assert all("clear text" in m or "holds plain tokens" in m for m in messages), messages


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"tls_cert_file": "/nonexistent/cert.pem"}, "both --tls-cert-file and --tls-key-file"),
        (
            {"tls_cert_file": "/nonexistent/c.pem", "tls_key_file": "/nonexistent/k.pem"},
            "--tls-cert-file /nonexistent/c.pem: No such file or directory",
        ),
        ({"tls_client_ca_file": "/nonexistent/ca.pem"}, "needs server TLS too"),
        ({"client_cert_roles_file": "/nonexistent/r.json"}, "which need --tls-client-ca-file"),
        ({"tokens_file": "/nonexistent/tokens.json"}, "tokens file /nonexistent/tokens.json"),
    ],
)
def test_unusable_security_settings_stop_the_start(
    engine: Engine, overrides: dict[str, str], complaint: str
) -> None:
    with pytest.raises(SecuritySettingsError) as refused:
        ThreadedServer(server_settings(engine.host, **overrides))
    assert complaint in str(refused.value)


def test_a_broken_tokens_file_stops_the_start_without_quoting_it(
    engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "tokens.json"
    path.write_text('{"tokens": [{"identity": "a", "roles": ["root"], "token": "s3cr3t-t0ken"}]}')
    with pytest.raises(SecuritySettingsError) as refused:
        ThreadedServer(server_settings(engine.host, tokens_file=str(path)))
    assert "tokens[0]: unknown role 'root'" in str(refused.value)
    assert "s3cr3t" not in str(refused.value)


# The command ------------------------------------------------------------------------


def _imagesvc(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("IMAGESVC_")}
    command = [sys.executable, "-m", "imagesvc.cli", *args]
    return subprocess.run(command, input=stdin, capture_output=True, text=True, env=env, timeout=60)


def test_serve_with_default_addresses_and_no_authentication_exits_with_advice() -> None:
    finished = _imagesvc("serve")
    assert finished.returncode == 2
    assert "refusing to listen on 0.0.0.0:50051 (gRPC) and 0.0.0.0:8080 (HTTP)" in (finished.stderr)
    assert "--insecure-allow-unauthenticated" in finished.stderr


def test_hash_token_prints_the_tokens_file_form() -> None:
    token = "Zm9vYmFyLXRva2VuLTAxMjM0NTY3ODk"
    finished = _imagesvc("hash-token", stdin=token + "\n")
    assert finished.returncode == 0
    assert finished.stdout.strip() == hashlib.sha256(token.encode()).hexdigest()
    assert _imagesvc("hash-token", stdin="short").returncode == 2


def test_a_key_not_matching_the_certificate_stops_the_start(engine: Engine, pki: Pki) -> None:
    settings = server_settings(
        engine.host, tls_cert_file=str(pki.server.cert), tls_key_file=str(pki.viewer.key)
    )
    with pytest.raises(SecuritySettingsError) as refused:
        ThreadedServer(settings)
    assert "do not work together" in str(refused.value)
    assert pki.viewer.key_pem.decode().splitlines()[1] not in str(refused.value)
