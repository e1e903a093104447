"""Which listen addresses count as loopback (everything else needs authentication), and
the start-up warning about a tokens file everyone can read."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from imagesvc.config import Settings
from imagesvc.core.credential_files import hash_token
from imagesvc.server_security import ServerSecurity, is_loopback_address


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1:50051", "127.1.2.3:0", "[::1]:8080", "localhost:50051", "unix:/run/x.sock"],
)
def test_loopback(address: str) -> None:
    assert is_loopback_address(address)


@pytest.mark.parametrize(
    "address",
    [
        "0.0.0.0:50051",
        "[::]:50051",
        ":50051",
        "10.0.0.5:50051",
        "example.com:50051",
        "localhost.example.com:1",
        "127.0.0.1",
        "[::ffff:127.0.0.1]:1",
        "[::127.0.0.1]:1",
    ],
)
def test_not_loopback(address: str) -> None:
    assert not is_loopback_address(address)


def _tokens_file(tmp_path: Path, entry: dict[str, object], mode: int) -> str:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"tokens": [{"identity": "ci", "roles": ["viewer"], **entry}]}))
    path.chmod(mode)
    return str(path)


PLAIN = {"token": "a-plain-token-of-enough-length"}
HASHED = {"sha256": hash_token("a-plain-token-of-enough-length")}


@pytest.mark.parametrize(
    ("entry", "mode", "warned"),
    [(PLAIN, 0o644, True), (PLAIN, 0o640, False), (PLAIN, 0o600, False), (HASHED, 0o644, False)],
)
def test_a_tokens_file_of_plain_tokens_readable_by_everyone_is_warned_about(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    entry: dict[str, object],
    mode: int,
    warned: bool,
) -> None:
    settings = Settings(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        tokens_file=_tokens_file(tmp_path, entry, mode),
    )
    caplog.set_level(logging.INFO, logger="imagesvc.server_security")
    ServerSecurity(settings).log_startup()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("plain tokens" in w for w in warnings) is warned, warnings
    assert "a-plain-token-of-enough-length" not in caplog.text
