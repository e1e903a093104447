"""A raw REST body stream (ExportImages) that fails after its first byte, through the
real HTTP server: the client sees a body cut short, the log has the cause once, and
uvicorn does not add an "Exception in ASGI application" traceback that reads like a bug."""

from __future__ import annotations

import logging

import httpx
import pytest

from imagesvc.config import Settings
from imagesvc.core.errors import UnavailableError
from imagesvc.server import ThreadedServer
from imagesvc.transport.http.server import UVICORN_ERROR_LOGGER, CutShortFilter
from imagesvc.transport.rest.gateway import BodyCutShort
from tests.unit.fakes import FakeDockerPort, FakeEngineBytes, engine_image

REFERENCE = "127.0.0.1:5000/team/app:1.0"


def test_a_body_failing_midway_is_cut_short_without_uvicorn_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = FakeDockerPort()
    port.add(engine_image(1, tags=[REFERENCE]))
    archive = FakeEngineBytes([b"tar-part-1", UnavailableError("daemon went away")])
    port.export_archives.append(archive)
    server = ThreadedServer(Settings(grpc_address="127.0.0.1:0", http_address="127.0.0.1:0"), port)
    caplog.set_level(logging.INFO)
    try:
        url = f"http://127.0.0.1:{server.http_port}/v1/images:export"
        received = bytearray()

        def read_export() -> int:
            with httpx.stream("GET", url, params={"images": REFERENCE}, timeout=30) as response:
                for chunk in response.iter_bytes():
                    received.extend(chunk)
                return response.status_code

        with pytest.raises(httpx.RemoteProtocolError):
            read_export()
        assert bytes(received) == b"tar-part-1"
        # The server keeps serving.
        health = httpx.get(f"http://127.0.0.1:{server.http_port}/healthz", timeout=30)
        assert health.status_code == 200
    finally:
        server.stop()
    messages = [record.getMessage() for record in caplog.records]
    assert not any("Exception in ASGI application" in message for message in messages)
    causes = [r for r in caplog.records if "daemon went away" in str(r.exc_info or r.__dict__)]
    assert causes, f"the cause was not logged: {messages}"
    assert archive.closed


def test_the_filter_keeps_every_other_uvicorn_error() -> None:
    keep = CutShortFilter()

    def record(raised: BaseException | None) -> logging.LogRecord:
        info = (type(raised), raised, None) if raised is not None else None
        return logging.LogRecord(UVICORN_ERROR_LOGGER, logging.ERROR, "", 0, "x", (), info)

    assert not keep.filter(record(BodyCutShort("daemon went away")))
    assert keep.filter(record(RuntimeError("a real bug")))
    assert keep.filter(record(None))
