"""devtools.engine_26: a bad download or unpack fails loudly and leaves no tree behind."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools import engine_26
from devtools.engine_26 import DebPackage, Engine26Error


class _Served(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def archive(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Served]]:
    """A loopback HTTP server standing in for Debian's archive; set ``.body``."""
    handler = type("Handler", (_Served,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(engine_26, "ARCHIVE", f"http://127.0.0.1:{server.server_port}/")
    for variable in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    try:
        yield handler
    finally:
        server.shutdown()
        server.server_close()


def _assert_nothing_left(target: Path) -> None:
    assert not target.exists()
    assert list(target.parent.iterdir()) == []
    assert not engine_26.is_fetched(target)


def test_a_checksum_mismatch_unpacks_nothing(
    archive: type[_Served], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    archive.body = b"not the package"
    monkeypatch.setattr(engine_26, "PACKAGES", (DebPackage("pool/x/x_1_amd64.deb", "0" * 64),))
    target = tmp_path / "tools" / "engine-26"
    with pytest.raises(Engine26Error, match=r"SHA-256 .* expected 0{64}"):
        engine_26.fetch(target)
    _assert_nothing_left(target)


def test_a_failed_unpack_leaves_no_tree(
    archive: type[_Served], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    archive.body = b"!<arch>\ncorrupt"
    digest = hashlib.sha256(archive.body).hexdigest()
    monkeypatch.setattr(engine_26, "PACKAGES", (DebPackage("pool/x/x_1_amd64.deb", digest),))
    target = tmp_path / "tools" / "engine-26"
    with pytest.raises(Engine26Error, match=r"dpkg-deb -x x_1_amd64\.deb failed"):
        engine_26.fetch(target)
    _assert_nothing_left(target)


def test_the_pins_are_debian_13s_engine_26() -> None:
    names = [package.file_name for package in engine_26.PACKAGES]
    assert names == [
        "docker.io_26.1.5+dfsg1-9+deb13u1+b1_amd64.deb",
        "containerd_1.7.24~ds1-6+deb13u1_amd64.deb",
    ]
    assert all(len(package.sha256) == 64 for package in engine_26.PACKAGES)
