"""ImportImages against the sandboxed engine: `docker save` archives (plain and gzip)
load through the service with the Engine's own id and tags, visible at once; hostile
archives, names outside the tag allowlist and archives over the size cap are refused
before anything is loaded (the Engine gains no image)."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from devtools.sandbox import BuiltImage, SandboxEngine
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc
from imagesvc_client import ImageClient
from tests.integration.conftest import server_settings
from tests.integration.local_images import (
    Stub,
    Throwaway,
    exists,
    familiar_name,
    inspect,
    unique_repo,
)

pytestmark = pytest.mark.contract

_CHUNK = 256 * 1024
_CAP = 16 * 1024 * 1024


@pytest.fixture
def throwaway(engine: SandboxEngine, busybox_image: BuiltImage) -> Iterator[Throwaway]:
    made = Throwaway(engine)
    try:
        yield made
    finally:
        made.cleanup()
    assert inspect(engine, busybox_image.tag)["Id"] == busybox_image.id


def saved(engine: SandboxEngine, *references: str) -> bytes:
    """`docker save` of these images, as the Engine writes it."""
    with tempfile.TemporaryDirectory(prefix="isv-import-") as folder:
        archive = Path(folder, "images.tar")
        engine.docker("save", "--output", str(archive), *references)
        return archive.read_bytes()


def saved_and_removed(engine: SandboxEngine, throwaway: Throwaway, tag: str) -> tuple[bytes, str]:
    """A fresh image saved, then removed from the Engine: (archive, image id)."""
    image = throwaway.build(tag)
    archive = saved(engine, tag)
    engine.docker("image", "rm", "--force", tag)
    assert not exists(engine, image.id)
    return archive, image.id


def requests(data: bytes) -> Iterator[pb.ImportImagesRequest]:
    for i in range(0, len(data), _CHUNK):
        yield pb.ImportImagesRequest(archive_chunk=data[i : i + _CHUNK])


def import_archive(stub: Stub, data: bytes) -> tuple[list[str], pb.ImportImagesResult]:
    logs: list[str] = []
    result: pb.ImportImagesResult | None = None
    for response in stub.ImportImages(requests(data), timeout=120):
        if response.HasField("result"):
            result = response.result
        else:
            logs.append(response.log)
    assert result is not None, logs
    return logs, result


def refusal(stub: Stub, data: bytes) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        import_archive(stub, data)
    return caught.value


def reason(error: grpc.RpcError) -> str:

    assert isinstance(error, grpc.Call)
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    raise AssertionError("no ErrorInfo")


def with_members(data: bytes, *extra: tarfile.TarInfo, payload: bytes = b"x") -> bytes:
    """The archive with `extra` members appended (before its end)."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(data)) as source,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as target,
    ):
        for member in source.getmembers():
            target.addfile(member, source.extractfile(member) if member.isfile() else None)
        for member in extra:
            target.addfile(member, io.BytesIO(payload) if member.isfile() else None)
    return out.getvalue()


def renamed(data: bytes, name: str) -> bytes:
    """The archive with its manifest.json (and index.json) naming the image `name`."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(data)) as source,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as target,
    ):
        for member in source.getmembers():
            file = source.extractfile(member) if member.isfile() else None
            if member.name in ("manifest.json", "index.json", "repositories") and file:
                content = _renamed_document(member.name, json.load(file), name)
                member.size = len(content)
                file = io.BytesIO(content)
            target.addfile(member, file)
    return out.getvalue()


def _renamed_document(file: str, document: object, name: str) -> bytes:
    if file == "manifest.json":
        assert isinstance(document, list)
        for entry in document:
            entry["RepoTags"] = [name]
    elif file == "index.json":
        assert isinstance(document, dict)
        for manifest in document.get("manifests", []):
            annotations = manifest.get("annotations")
            if annotations and "io.containerd.image.name" in annotations:
                annotations["io.containerd.image.name"] = f"docker.io/{name}"
    else:
        repository, _, tag = name.partition(":")
        document = {repository: {tag: "0" * 64}}
    return json.dumps(document).encode()


def test_a_saved_image_loads_with_the_engine_s_id_and_tags_visible_at_once(
    engine: SandboxEngine, stub: Stub, throwaway: Throwaway
) -> None:
    tag = f"{unique_repo('import')}:1"
    archive, image_id = saved_and_removed(engine, throwaway, tag)
    logs, result = import_archive(stub, archive)
    assert [(image.id, list(image.tags)) for image in result.images] == [(image_id, [tag])]
    assert inspect(engine, tag)["Id"] == image_id
    assert any(line.startswith("Loaded image") for line in logs), logs
    # Read-your-writes: the service shows it as soon as the call returned.
    got = stub.GetImage(pb.GetImageRequest(image=tag), timeout=10).image
    assert got.id == image_id
    assert familiar_name(tag) in got.repo_tags


def test_a_gzip_archive_loads_like_the_plain_one(
    engine: SandboxEngine, stub: Stub, throwaway: Throwaway
) -> None:
    tag = f"{unique_repo('import-gz')}:2"
    archive, image_id = saved_and_removed(engine, throwaway, tag)
    _, result = import_archive(stub, gzip.compress(archive, compresslevel=1))
    assert [(image.id, list(image.tags)) for image in result.images] == [(image_id, [tag])]
    assert inspect(engine, tag)["Id"] == image_id


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = 1 if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize(
    ("member", "words"),
    [
        (_member("../escape"), "path traversal"),
        (_member("/etc/cron.d/x"), "absolute path"),
        (_member("blobs/evil", tarfile.SYMTYPE, "../../../etc/passwd"), "outside the archive"),
        (_member("blobs/device", tarfile.CHRTYPE), "character device"),
    ],
    ids=["traversal", "absolute", "symlink-out", "device"],
)
def test_hostile_archives_are_refused_and_nothing_loads(
    engine: SandboxEngine,
    stub: Stub,
    throwaway: Throwaway,
    member: tarfile.TarInfo,
    words: str,
) -> None:
    tag = f"{unique_repo('import-hostile')}:1"
    archive, image_id = saved_and_removed(engine, throwaway, tag)
    error = refusal(stub, with_members(archive, member))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert reason(error) == "INVALID_IMAGE_ARCHIVE"
    assert words in (error.details() or "")
    assert not exists(engine, image_id)
    assert not exists(engine, tag)


def test_a_corrupt_archive_is_refused(stub: Stub) -> None:
    error = refusal(stub, b"not a tar archive at all" * 100)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(error) == "INVALID_IMAGE_ARCHIVE"


@pytest.fixture(scope="module")
def limited(engine: SandboxEngine) -> Iterator[Stub]:
    """A server whose tag allowlist admits only imagesvc-test/import-allowed-*, and
    which takes image archives of up to 16 MiB (a saved test image is about 5 MiB)."""
    server = ThreadedServer(
        server_settings(
            engine.host,
            push_allowlist="imagesvc-test/import-allowed-*",
            import_max_bytes=_CAP,
        )
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield image_service_pb2_grpc.ImageServiceStub(channel)
    finally:
        server.stop()


def test_a_name_outside_the_tag_allowlist_is_refused_before_anything_loads(
    engine: SandboxEngine, limited: Stub, throwaway: Throwaway
) -> None:
    tag = f"{unique_repo('import-denied')}:1"
    archive, image_id = saved_and_removed(engine, throwaway, tag)
    assert len(archive) < _CAP
    error = refusal(limited, archive)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error.details()
    assert reason(error) == "REGISTRY_NOT_ALLOWED"
    assert tag.split(":")[0] in (error.details() or "")
    assert not exists(engine, image_id)
    assert not exists(engine, tag)


def test_an_allowed_name_loads_through_the_allowlist(
    engine: SandboxEngine, limited: Stub, throwaway: Throwaway
) -> None:
    tag = f"imagesvc-test/import-allowed-{unique_repo('x').rsplit('-', 1)[1]}:1"
    archive, image_id = saved_and_removed(engine, throwaway, tag)
    assert len(archive) < _CAP
    _, result = import_archive(limited, archive)
    assert [image.id for image in result.images] == [image_id]
    # Another name smuggled into the same archive's manifest is refused.
    engine.docker("image", "rm", "--force", tag)
    error = refusal(limited, renamed(archive, "imagesvc-test/elsewhere:1"))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "imagesvc-test/elsewhere" in (error.details() or "")
    assert not exists(engine, image_id)


def test_an_archive_over_the_cap_is_resource_exhausted(limited: Stub) -> None:
    big = io.BytesIO()
    with tarfile.open(fileobj=big, mode="w") as archive:
        info = tarfile.TarInfo("blobs/big")
        info.size = _CAP
        archive.addfile(info, io.BytesIO(bytes(info.size)))
    error = refusal(limited, big.getvalue())
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason(error) == "IMAGE_ARCHIVE_TOO_LARGE"
    assert f"{_CAP} bytes" in (error.details() or "")


def test_rest_and_the_python_client_load_an_archive(
    engine: SandboxEngine, server: ThreadedServer, throwaway: Throwaway, tmp_path: Path
) -> None:
    tag = f"{unique_repo('import-rest')}:1"
    archive, image_id = saved_and_removed(engine, throwaway, tag)
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.http_port}/v1/images:import",
        data=io.BytesIO(archive),
        headers={"Content-Type": "application/x-tar", "Content-Length": str(len(archive))},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 (loopback)
        lines = [json.loads(line) for line in response.read().splitlines() if line.strip()]
    assert lines[-1]["result"]["result"]["images"] == [{"id": image_id, "tags": [tag]}]

    engine.docker("image", "rm", "--force", tag)
    path = tmp_path / "image.tar"
    path.write_bytes(archive)
    with ImageClient(f"127.0.0.1:{server.port}") as client:
        operation = client.import_images(path, chunk_size=100_000)
        list(operation)
        result = operation.result
    assert [(image.id, list(image.tags)) for image in result.images] == [(image_id, [tag])]
