"""ExportImages on each engine kind: the archive round-trips through the Engine's own
`docker load` (same id, tags and history), an unknown image is NOT_FOUND before any
byte, REST serves the raw tar, and a cancelled export closes the Engine's connection
(the daemon stops writing) and leaves no thread reading it."""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import grpc
import httpx
import pytest
from google.api import httpbody_pb2

from devtools.sandbox import BuiltImage, SandboxEngine
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc
from tests.integration.conftest import server_settings
from tests.integration.engine_proxy import EngineRequestCounter
from tests.integration.exports import threads_reading_exports, wait_for
from tests.integration.local_images import (
    Stub,
    Throwaway,
    exists,
    expect_error,
    inspect,
    tags_of,
    unique_repo,
)
from tests.integration.rpc_errors import error_info

# The API contract: runs once per engine kind (tests/integration/conftest.py).
pytestmark = pytest.mark.contract

CHUNK_LIMIT = 1024 * 1024
BIG_LAYER_MIB = 64


@pytest.fixture
def throwaway(engine: SandboxEngine, stub: Stub) -> Iterator[Throwaway]:
    made = Throwaway(engine, stub)
    try:
        yield made
    finally:
        made.cleanup()


def export(stub: Stub, *images: str) -> bytes:
    archive = bytearray()
    for index, message in enumerate(
        stub.ExportImages(pb.ExportImagesRequest(images=list(images)), timeout=120)
    ):
        assert message.content_type == ("application/x-tar" if index == 0 else "")
        assert 0 < len(message.data) <= CHUNK_LIMIT
        archive += message.data
    return bytes(archive)


def history(engine: SandboxEngine, image_id: str) -> list[tuple[Any, ...]]:
    entries = engine.api_get(f"/images/{quote(image_id, safe='')}/history")
    assert isinstance(entries, list)
    return [(e["CreatedBy"], e["Size"], e["Created"]) for e in entries]


def test_an_exported_archive_loads_back_with_the_same_id_tags_and_history(
    stub: Stub, engine: SandboxEngine, throwaway: Throwaway, tmp_path: Path
) -> None:
    repo = unique_repo("export")
    image = throwaway.build(f"{repo}:1.0", extra_lines=["RUN echo exported > /exported"])
    engine.docker("tag", image.tag, f"{repo}:2.0")
    tags_before = sorted(tags_of(engine, image.id))
    assert len(tags_before) == 2
    history_before = history(engine, image.id)
    archive = tmp_path / "export.tar"
    archive.write_bytes(export(stub, f"{repo}:1.0", f"{repo}:2.0"))
    with tarfile.open(archive) as tar:
        manifest_file = tar.extractfile("manifest.json")
        assert manifest_file is not None
        [entry] = json.load(manifest_file)
    assert len(entry["RepoTags"]) == 2

    engine.docker("image", "rm", "--force", image.id)
    assert not exists(engine, image.id)
    engine.docker("load", "--input", str(archive))

    assert inspect(engine, f"{repo}:1.0")["Id"] == image.id
    assert sorted(tags_of(engine, image.id)) == tags_before
    assert history(engine, image.id) == history_before


def test_an_unknown_image_is_not_found_before_any_byte(
    stub: Stub, busybox_image: BuiltImage
) -> None:
    call = stub.ExportImages(
        pb.ExportImagesRequest(images=[busybox_image.tag, "imagesvc-test/absent-export:1"]),
        timeout=30,
    )
    received: list[httpbody_pb2.HttpBody] = []
    with pytest.raises(grpc.RpcError) as caught:
        received.extend(call)
    assert received == []
    error = caught.value
    assert isinstance(error, grpc.Call)
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert error_info(error).reason == "IMAGE_NOT_FOUND"
    assert "imagesvc-test/absent-export:1" in (error.details() or "")


def test_an_export_naming_no_image_is_invalid(stub: Stub) -> None:
    expect_error(
        lambda request, timeout: list(stub.ExportImages(request, timeout=timeout)),
        pb.ExportImagesRequest(),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )


def test_rest_serves_the_raw_archive_and_not_found_as_a_status(
    server: ThreadedServer, busybox_image: BuiltImage
) -> None:
    base = f"http://127.0.0.1:{server.http_port}"
    with httpx.Client(base_url=base, timeout=120, trust_env=False) as http:
        path = f"/v1/images:export?images={quote(busybox_image.tag, safe='')}"
        with http.stream("GET", path) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/x-tar"
            body = b"".join(response.iter_bytes())
        missing = http.get("/v1/images:export?images=imagesvc-test%2Fabsent-export%3A1")
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        manifest_file = tar.extractfile("manifest.json")
        assert manifest_file is not None
        [entry] = json.load(manifest_file)
        names = tar.getnames()
    # The image's id names its config (classic store) or its manifest blob (containerd
    # store, where the id is the manifest's digest).
    hex_id = busybox_image.id.removeprefix("sha256:")
    assert hex_id in entry["Config"] or f"blobs/sha256/{hex_id}" in names
    assert any(t.endswith(busybox_image.tag) for t in entry["RepoTags"])
    assert missing.status_code == 404
    status = missing.json()
    assert status["code"] == grpc.StatusCode.NOT_FOUND.value[0]
    [info] = [d for d in status["details"] if d["@type"].endswith("ErrorInfo")]
    assert info["reason"] == "IMAGE_NOT_FOUND"


def test_a_cancelled_export_closes_the_engine_connection_and_frees_its_thread(
    engine: SandboxEngine, throwaway: Throwaway
) -> None:
    repo = unique_repo("export-big")
    big = throwaway.build(
        f"{repo}:1",
        extra_lines=[f"RUN head -c {BIG_LAYER_MIB * 1024 * 1024} /dev/urandom > /big"],
    )
    with EngineRequestCounter(engine.host, request="GET /images/get") as counter:
        server = ThreadedServer(server_settings(counter.host))
        try:
            with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stub = image_service_pb2_grpc.ImageServiceStub(channel)
                call = stub.ExportImages(pb.ExportImagesRequest(images=[big.tag]), timeout=120)
                first = next(call)
                assert first.content_type == "application/x-tar"
                assert counter.count == 1
                assert counter.open_connections == 1
                # The client reads no more: flow control holds the service, which holds
                # the Engine (nothing piles up); then it cancels.
                time.sleep(0.5)
                assert counter.open_connections == 1
                call.cancel()
                assert wait_for(lambda: counter.open_connections == 0, 5), (
                    "the Engine's export connection is still open after the cancel"
                )
                assert wait_for(lambda: not threads_reading_exports(), 5), (
                    "a thread still reads the cancelled export"
                )
                # The same server exports the whole image afterwards.
                total = sum(
                    len(m.data)
                    for m in stub.ExportImages(
                        pb.ExportImagesRequest(images=[big.tag]), timeout=120
                    )
                )
                assert total > BIG_LAYER_MIB * 1024 * 1024
                assert counter.open_connections == 0
        finally:
            server.stop()
