"""What a REST stream does when its client goes away or falls behind, against the
sandboxed engine: a hang-up mid-build removes the build container (as a gRPC cancel
does), a hang-up while the context is still uploading ends the call cleanly, and a
client that stops reading holds the build back on the daemon instead of the server
buffering its output."""

from __future__ import annotations

import json
import logging
import re
import socket
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from devtools.sandbox import BuiltImage, Engine
from imagesvc.server import ThreadedServer
from tests.integration.builds import dockerfile, make_tar, unique_repo
from tests.integration.rest.conftest import ndjson, split_stream

TAR = {"Content-Type": "application/x-tar"}
_RUNNING_IN = re.compile(r"Running in ([0-9a-f]{12})")
# The build container must be gone this soon after the hang-up (its RUN sleeps 30 s).
_GONE_WITHIN = 5.0
# Build output a client leaves unread: far more than the socket buffers between the
# daemon, the server and the client hold (a few MiB), and quick to print.
_UNREAD_MIB = 32


@pytest.fixture
def tag(engine: Engine) -> Iterator[str]:
    name = f"{unique_repo('rest-flow')}:1"
    yield name
    engine.docker("image", "rm", "--force", name, check=False)


def _containers(engine: Engine) -> list[str]:
    """`ID COMMAND` of every container on the engine, running or not."""
    listed = engine.docker("ps", "--all", "--no-trunc", "--format", "{{.ID}} {{.Command}}")
    return [line for line in listed.stdout.splitlines() if line.strip()]


def _image_exists(engine: Engine, tag: str) -> bool:
    return engine.docker("image", "inspect", tag, check=False).returncode == 0


def _unexpected_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("imagesvc") and r.levelno >= logging.ERROR
    ]


def _assert_builds(rest: httpx.Client, engine: Engine, busybox_image: BuiltImage) -> None:
    """The server still builds (the hang-up left nothing wedged)."""
    tag = f"{unique_repo('rest-after')}:1"
    context = make_tar({"Dockerfile": dockerfile(f"FROM {busybox_image.tag}", "RUN true")})
    try:
        response = rest.post(f"/v1/images:build?tags={tag}", content=context, headers=TAR)
        results, error = split_stream(ndjson(response))
        assert error is None, error
        assert results[-1]["result"]["tags"] == [tag]
        assert _image_exists(engine, tag)
    finally:
        engine.docker("image", "rm", "--force", tag, check=False)


def test_a_client_that_hangs_up_mid_build_removes_the_build_container(
    rest: httpx.Client, engine: Engine, busybox_image: BuiltImage, tag: str
) -> None:
    marker = f"hang-up-{uuid.uuid4().hex}"
    context = make_tar(
        {
            "Dockerfile": dockerfile(
                f"FROM {busybox_image.tag}",
                f"RUN echo {marker} && sleep 30",
                "RUN echo after-the-sleep",
            )
        }
    )
    container = ""
    with rest.stream(
        "POST", f"/v1/images:build?tags={tag}&noCache=true", content=context, headers=TAR
    ) as response:
        assert response.status_code == 200
        text = ""
        for line in response.iter_lines():
            parsed = json.loads(line)
            assert "error" not in parsed, parsed
            text += parsed["result"].get("log", "")
            running = _RUNNING_IN.search(text)
            # The RUN step's own output: its container is in the sleep now.
            if running and re.search(rf"^{marker}$", text, re.MULTILINE):
                container = running.group(1)
                break
        assert container, text
        assert any(c.startswith(container) for c in _containers(engine))
    # Leaving the block closed the connection mid-stream.
    hung_up = time.monotonic()
    while any(c.startswith(container) or marker in c for c in _containers(engine)):
        waited = time.monotonic() - hung_up
        assert waited < _GONE_WITHIN, f"build container still there after {waited:.1f}s"
        time.sleep(0.05)
    print(f"\nREST hang-up: build container gone {time.monotonic() - hung_up:.2f}s after it")
    time.sleep(1.0)
    assert not _image_exists(engine, tag)
    assert not any("after-the-sleep" in c for c in _containers(engine))
    _assert_builds(rest, engine, busybox_image)


def test_a_hang_up_while_the_context_uploads_ends_the_call_cleanly(
    server: ThreadedServer,
    rest: httpx.Client,
    engine: Engine,
    busybox_image: BuiltImage,
    tag: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    context = make_tar(
        {"Dockerfile": dockerfile(f"FROM {busybox_image.tag}"), "pad": b"\0" * 256 * 1024}
    )
    with socket.create_connection(("127.0.0.1", server.http_port)) as client:
        client.sendall(
            f"POST /v1/images:build?tags={tag} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/x-tar\r\nContent-Length: {len(context)}\r\n\r\n".encode()
            + context[: len(context) // 2]
        )
        time.sleep(1.0)
    time.sleep(1.0)
    assert _unexpected_errors(caplog) == []
    assert not _image_exists(engine, tag)
    _assert_builds(rest, engine, busybox_image)


def test_a_client_that_stops_reading_holds_the_build_back(
    server: ThreadedServer, engine: Engine, busybox_image: BuiltImage, tag: str
) -> None:
    # Back-pressure from the client's socket to the daemon: while the client reads
    # nothing, the server reads no more of the build's output, so the daemon cannot
    # finish printing and the image does not appear. A server that buffered the output
    # (in memory, without bound) would let the build finish in about a second.
    printed = _UNREAD_MIB * 1024 * 1024
    context = make_tar(
        {
            "Dockerfile": dockerfile(
                f"FROM {busybox_image.tag}",
                f"RUN yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c {printed}",
            )
        }
    )
    with socket.socket() as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        client.connect(("127.0.0.1", server.http_port))
        client.sendall(
            f"POST /v1/images:build?tags={tag}&noCache=true HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/x-tar\r\nContent-Length: {len(context)}\r\n\r\n".encode()
            + context
        )
        time.sleep(5.0)
        assert not _image_exists(engine, tag), "the build finished while nobody read it"
        client.settimeout(60)
        received = bytearray()
        resumed = time.monotonic()
        while not received.endswith(b"\r\n0\r\n\r\n"):
            data = client.recv(1 << 20)
            assert data, "the server closed the stream before its end"
            received += data
        took = time.monotonic() - resumed
    # Once read, the whole output arrives, then the result.
    assert len(received) > printed
    assert b'"imageId"' in received[-1024:]
    assert _image_exists(engine, tag)
    print(f"\nREST back-pressure: {len(received) >> 20} MiB read {took:.1f}s after resuming")
