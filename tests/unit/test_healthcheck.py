"""`imagesvc healthcheck` (the image's HEALTHCHECK) against a real in-process server on
a fake daemon: exit codes, the one line it prints, readiness vs liveness, the address
and TLS settings it shares with `imagesvc serve`, and that it never prints a token."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devtools.sandbox import free_port
from imagesvc.cli import main
from imagesvc.config import Settings
from imagesvc.healthcheck import probe_address
from imagesvc.server import ThreadedServer
from tests.integration.certificates import CertificateAuthority, KeyPair, new_ca
from tests.unit.fakes import FakeDockerPort

TOKEN = "healthcheck-test-token-0123456789"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets: the probe reads IMAGESVC_* like `serve` does."""
    for name in list(os.environ):
        if name.startswith("IMAGESVC_"):
            monkeypatch.delenv(name)


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.json"
    path.write_text(
        json.dumps({"tokens": [{"identity": "ci", "roles": ["admin"], "token": TOKEN}]})
    )
    path.chmod(0o600)
    return path


def _server(port: FakeDockerPort, **overrides: object) -> ThreadedServer:
    values: dict[str, object] = {
        "grpc_address": "127.0.0.1:0",
        "http_address": "127.0.0.1:0",
        "health_interval_seconds": 0.05,
        **overrides,
    }
    return ThreadedServer(Settings(**values), port)  # type: ignore[arg-type]


@pytest.fixture
def daemon() -> FakeDockerPort:
    return FakeDockerPort()


@pytest.fixture
def server(daemon: FakeDockerPort) -> Iterator[ThreadedServer]:
    running = _server(daemon)
    yield running
    running.stop()


def _probe(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["healthcheck", *args])
    out, err = capsys.readouterr()
    lines = (out + err).splitlines()
    assert len(lines) == 1, lines  # one line for Docker's health log
    return code, lines[0]


def _eventually(probe: Callable[[], tuple[int, str]], code: int) -> str:
    deadline = time.monotonic() + 10
    while True:
        got, line = probe()
        if got == code:
            return line
        assert time.monotonic() < deadline, line
        time.sleep(0.05)


def test_a_serving_server_is_healthy(
    server: ThreadedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _eventually(lambda: _probe(capsys, "--grpc-address", f"127.0.0.1:{server.port}"), 0)
    assert line == f"imagesvc healthcheck: SERVING (127.0.0.1:{server.port}, service '')"


def test_the_default_is_readiness_and_liveness_survives_a_daemon_outage(
    server: ThreadedServer, daemon: FakeDockerPort, capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"127.0.0.1:{server.port}"
    _eventually(lambda: _probe(capsys, "--grpc-address", address), 0)
    daemon.alive = False
    line = _eventually(lambda: _probe(capsys, "--grpc-address", address), 1)
    assert line == f"imagesvc healthcheck: NOT_SERVING ({address}, service '')"
    code, line = _probe(capsys, "--grpc-address", address, "--service", "liveness")
    assert (code, line) == (0, f"imagesvc healthcheck: SERVING ({address}, service 'liveness')")
    daemon.alive = True
    _eventually(lambda: _probe(capsys, "--grpc-address", address), 0)


def test_address_and_service_come_from_the_environment_of_serve(
    server: ThreadedServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The container's server listens on 0.0.0.0; the probe beside it uses loopback.
    monkeypatch.setenv("IMAGESVC_GRPC_ADDRESS", f"0.0.0.0:{server.port}")
    monkeypatch.setenv("IMAGESVC_HEALTHCHECK_SERVICE", "liveness")
    code, line = _probe(capsys)
    assert (code, line) == (
        0,
        f"imagesvc healthcheck: SERVING (127.0.0.1:{server.port}, service 'liveness')",
    )


@pytest.mark.parametrize(
    ("listen", "probed"),
    [
        ("0.0.0.0:50051", "127.0.0.1:50051"),
        (":50051", "127.0.0.1:50051"),
        ("[::]:50051", "[::1]:50051"),
        ("127.0.0.1:50051", "127.0.0.1:50051"),
        ("[::1]:7", "[::1]:7"),
        ("10.1.2.3:50051", "10.1.2.3:50051"),
        ("imagesvc.internal:443", "imagesvc.internal:443"),
        ("unix:/run/imagesvc.sock", "unix:/run/imagesvc.sock"),
    ],
)
def test_wildcard_listen_addresses_are_probed_on_loopback(listen: str, probed: str) -> None:
    assert probe_address(listen) == probed


def test_an_unknown_service_is_unhealthy(
    server: ThreadedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, line = _probe(capsys, "--grpc-address", f"127.0.0.1:{server.port}", "--service", "x")
    assert code == 1
    assert line == (
        f"imagesvc healthcheck: NOT_FOUND from 127.0.0.1:{server.port}, service 'x':"
        " the server has no such health service"
    )


def test_nothing_listening_is_unhealthy(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    code, line = _probe(capsys, "--grpc-address", f"127.0.0.1:{port}")
    assert code == 1
    assert line.startswith(f"imagesvc healthcheck: UNAVAILABLE from 127.0.0.1:{port}, service ''")


def test_a_server_that_does_not_answer_is_unhealthy_within_the_timeout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never speaks HTTP/2
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        started = time.monotonic()
        code, line = _probe(capsys, "--grpc-address", f"127.0.0.1:{port}", "--timeout", "0.5")
        took = time.monotonic() - started
    assert code == 1
    assert line.startswith("imagesvc healthcheck: DEADLINE_EXCEEDED from"), line
    assert took < 3


def test_a_bad_setting_is_one_line_and_unhealthy(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IMAGESVC_HEALTHCHECK_TIMEOUT_SECONDS", "soon")
    code, line = _probe(capsys, "--grpc-address", "127.0.0.1:1")
    assert code == 1  # not 2, which Docker reserves
    assert "soon" in line


@pytest.fixture
def pki(tmp_path: Path) -> tuple[CertificateAuthority, KeyPair]:
    ca = new_ca(tmp_path / "pki", "test-ca")
    pair = ca.issue(
        tmp_path / "pki", "server", common_name="imagesvc", dns=("imagesvc.internal",), server=True
    )
    return ca, pair


def test_tls_with_authentication_on(
    pki: tuple[CertificateAuthority, KeyPair],
    tokens_file: Path,
    daemon: FakeDockerPort,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ca, pair = pki
    server = _server(
        daemon,
        tls_cert_file=str(pair.cert),
        tls_key_file=str(pair.key),
        tokens_file=str(tokens_file),
    )
    try:
        # The container's environment, as for `imagesvc serve`.
        for name, value in {
            "IMAGESVC_GRPC_ADDRESS": f"0.0.0.0:{server.port}",
            "IMAGESVC_TLS_CERT_FILE": str(pair.cert),
            "IMAGESVC_TLS_KEY_FILE": str(pair.key),
            "IMAGESVC_TOKENS_FILE": str(tokens_file),
        }.items():
            monkeypatch.setenv(name, value)
        where = f"127.0.0.1:{server.port} (TLS), service ''"
        # Without the CA the server's certificate is not trusted.
        code, line = _probe(capsys)
        assert code == 1
        assert line.startswith(f"imagesvc healthcheck: UNAVAILABLE from {where}"), line
        seen = [line]
        monkeypatch.setenv("IMAGESVC_HEALTHCHECK_TLS_CA_FILE", str(ca.cert))
        # The certificate names imagesvc.internal, not the loopback address probed.
        code, line = _probe(capsys)
        assert code == 1
        seen.append(line)
        monkeypatch.setenv("IMAGESVC_HEALTHCHECK_TLS_SERVER_NAME", "imagesvc.internal")
        seen.append(_eventually(lambda: _probe(capsys), 0))
        assert seen[-1] == f"imagesvc healthcheck: SERVING ({where})"
        assert not any(TOKEN in text for text in seen)
    finally:
        server.stop()


def test_mutual_tls_needs_a_client_certificate(
    pki: tuple[CertificateAuthority, KeyPair],
    tmp_path: Path,
    daemon: FakeDockerPort,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ca, pair = pki
    client = ca.issue(tmp_path / "pki", "probe", common_name="healthcheck")
    server = _server(
        daemon,
        tls_cert_file=str(pair.cert),
        tls_key_file=str(pair.key),
        tls_client_ca_file=str(ca.cert),
    )
    try:
        tls = [
            "--grpc-address",
            f"127.0.0.1:{server.port}",
            "--tls-ca-file",
            str(ca.cert),
            "--tls-server-name",
            "imagesvc.internal",
        ]
        server_side = {
            "IMAGESVC_TLS_CERT_FILE": str(pair.cert),
            "IMAGESVC_TLS_CLIENT_CA_FILE": str(ca.cert),
        }
        with pytest.MonkeyPatch.context() as env:
            for name, value in server_side.items():
                env.setenv(name, value)
            code, line = _probe(capsys, *tls)
            assert code == 1
            assert line == (
                "imagesvc healthcheck: the server demands client certificates"
                " (IMAGESVC_TLS_CLIENT_CA_FILE): set --tls-client-cert-file and"
                " --tls-client-key-file (IMAGESVC_HEALTHCHECK_TLS_CLIENT_CERT_FILE,"
                " IMAGESVC_HEALTHCHECK_TLS_CLIENT_KEY_FILE)"
            )
            with_client = [
                *tls,
                "--tls-client-cert-file",
                str(client.cert),
                "--tls-client-key-file",
                str(client.key),
            ]
            line = _eventually(lambda: _probe(capsys, *with_client), 0)
        assert line == f"imagesvc healthcheck: SERVING (127.0.0.1:{server.port} (TLS), service '')"
    finally:
        server.stop()


def test_a_probe_from_elsewhere_speaks_tls_without_the_servers_settings(
    pki: tuple[CertificateAuthority, KeyPair],
    daemon: FakeDockerPort,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A helm test pod has the CA, not the server's certificate or IMAGESVC_TLS_* settings.
    ca, pair = pki
    server = _server(daemon, tls_cert_file=str(pair.cert), tls_key_file=str(pair.key))
    try:
        address = f"127.0.0.1:{server.port}"
        where = f"{address} (TLS), service ''"
        name = ["--tls-server-name", "imagesvc.internal"]
        # Plaintext to a TLS port fails; --tls alone does not trust the private CA.
        code, line = _probe(capsys, "--grpc-address", address)
        assert code == 1
        assert "(TLS)" not in line
        code, line = _probe(capsys, "--grpc-address", address, "--tls", *name)
        assert code == 1
        assert line.startswith(f"imagesvc healthcheck: UNAVAILABLE from {where}"), line
        # A CA file is enough to say TLS.
        line = _eventually(
            lambda: _probe(capsys, "--grpc-address", address, "--tls-ca-file", str(ca.cert), *name),
            0,
        )
        assert line == f"imagesvc healthcheck: SERVING ({where})"
        monkeypatch.setenv("IMAGESVC_HEALTHCHECK_TLS", "maybe")
        code, line = _probe(capsys, "--grpc-address", address)
        assert (code, line) == (
            1,
            "imagesvc healthcheck: IMAGESVC_HEALTHCHECK_TLS must be true or false, not 'maybe'",
        )
        monkeypatch.setenv("IMAGESVC_HEALTHCHECK_TLS", "true")
        monkeypatch.setenv("IMAGESVC_HEALTHCHECK_TLS_CA_FILE", str(ca.cert))
        monkeypatch.setenv("IMAGESVC_HEALTHCHECK_TLS_SERVER_NAME", "imagesvc.internal")
        assert _probe(capsys, "--grpc-address", address) == (
            0,
            f"imagesvc healthcheck: SERVING ({where})",
        )
    finally:
        server.stop()
