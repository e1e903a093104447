"""ImportImages in the core, against the fake port: the names an archive gives its
images (manifest.json, repositories, OCI index.json) pass the tag allowlist before the
Engine sees anything; the Engine's load output becomes the loaded ids and tags."""

from __future__ import annotations

import dataclasses
import io
import json
import tarfile
from concurrent.futures import ThreadPoolExecutor

import pytest

from imagesvc.core.errors import (
    InvalidArgumentError,
    PermissionDeniedError,
    Reason,
    ResourceExhaustedError,
)
from imagesvc.core.image_archive import archive_names, loaded_names
from imagesvc.core.image_core import CoreSettings, ImageCore
from imagesvc.core.models import ImportedImage, ImportResult
from imagesvc.core.registry_policy import RegistryPolicy
from imagesvc.core.tar_check import ArchiveLimits
from tests.unit.aio import run_collect
from tests.unit.fakes import FakeDockerPort, FakeEngineStream, engine_image, image_id
from tests.unit.tarballs import ChunkSource, regular_files, split


def archive(files: dict[str, bytes], *, extra: tarfile.TarInfo | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if extra is not None:
            tar.addfile(extra)
    return buffer.getvalue()


def manifest(*tags: str) -> bytes:
    return json.dumps([{"Config": "c.json", "RepoTags": list(tags), "Layers": []}]).encode()


def index(*annotations: dict[str, str]) -> bytes:
    return json.dumps(
        {"schemaVersion": 2, "manifests": [{"annotations": a} for a in annotations]}
    ).encode()


def names(**files: bytes) -> list[str]:
    kept = {name.replace("_", "."): [data] for name, data in files.items()}
    return [str(reference) for reference in archive_names(kept)]


def test_names_come_from_manifest_repositories_and_index() -> None:
    assert names(manifest_json=manifest("a/b:1", "c")) == ["a/b:1", "c:latest"]
    assert names(repositories=json.dumps({"x/y": {"2": "f" * 64}}).encode()) == ["x/y:2"]
    assert names(
        index_json=index(
            {
                "io.containerd.image.name": "docker.io/library/busybox:1",
                "org.opencontainers.image.ref.name": "1",
            },
            {"org.opencontainers.image.ref.name": "reg.example:5000/team/app:3"},
            {"org.opencontainers.image.ref.name": "lonely"},
        )
    ) == ["docker.io/library/busybox:1", "reg.example:5000/team/app:3", "lonely:latest"]


def test_every_occurrence_of_a_name_file_counts() -> None:
    kept = {"manifest.json": [manifest("first:1"), manifest("second:1")]}
    assert [str(r) for r in archive_names(kept)] == ["first:1", "second:1"]


@pytest.mark.parametrize(
    "files",
    [
        {"manifest.json": [b"{not json"]},
        {"manifest.json": [b'{"RepoTags": "a"}']},
        {"manifest.json": [json.dumps([{"RepoTags": [1]}]).encode()]},
        {"index.json": [b"[]"]},
        {"manifest.json": [manifest("UPPER/case:1")]},
        {"manifest.json": [None]},
    ],
)
def test_unreadable_name_files_and_bad_names_are_invalid_image_archive(
    files: dict[str, list[bytes | None]],
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        archive_names(files)
    assert caught.value.reason is Reason.INVALID_IMAGE_ARCHIVE


def test_loaded_names_read_docker_s_and_podman_s_lines() -> None:
    loaded = loaded_names(
        [
            "Loaded image: busybox:latest\n",
            "Loaded image ID: sha256:" + "a" * 64 + "\n",
            "Loaded image(s): docker.io/library/x:1,localhost/y:2",
            "Loaded image: " + "b" * 64,
            "Loading layer 0123",
        ]
    )
    assert loaded.names == ("busybox:latest", "docker.io/library/x:1", "localhost/y:2")
    assert loaded.ids == ("sha256:" + "a" * 64, "sha256:" + "b" * 64)


def core_with(port: FakeDockerPort, policy: RegistryPolicy, max_bytes: int = 10**6) -> ImageCore:
    settings = CoreSettings(
        build_context=ArchiveLimits(max_bytes=10**6),
        import_archive=ArchiveLimits(max_bytes=max_bytes, memory_bytes=4096),
        registry_policy=policy,
    )
    return ImageCore(port, ThreadPoolExecutor(2), settings)


def test_import_sends_the_rewritten_archive_and_returns_ids_with_tags() -> None:
    port = FakeDockerPort()
    port.add(engine_image(1, tags=["team/app:1"]))
    port.load_streams.append(
        FakeEngineStream(
            [
                {"status": "Loading layer", "id": "abc", "progressDetail": {"current": 1}},
                {"status": "Loading layer", "id": "abc", "progressDetail": {"current": 2}},
                {"stream": "Loaded image: team/app:1\n"},
                {"stream": f"Loaded image ID: {image_id(2)}\n"},
            ]
        )
    )
    data = archive({"manifest.json": manifest("team/app:1"), "blobs/x": b"layer"})
    items = run_collect(
        core_with(port, RegistryPolicy()).import_images(ChunkSource(split(data, 100)))
    )
    assert items[:-1] == [
        "Loading layer abc",
        "Loaded image: team/app:1",
        f"Loaded image ID: {image_id(2)}",
    ]
    assert items[-1] == ImportResult(
        images=(ImportedImage(image_id(2), ()), ImportedImage(image_id(1), ("team/app:1",)))
    )
    assert regular_files(port.loads[0])["blobs/x"] == b"layer"


def test_a_name_outside_the_allowlist_is_refused_before_the_engine_is_called() -> None:
    port = FakeDockerPort()
    policy = RegistryPolicy.from_text("", "team/*")
    data = archive(
        {
            "manifest.json": manifest("team/app:1"),
            "index.json": index({"io.containerd.image.name": "docker.io/other/evil:1"}),
        }
    )
    with pytest.raises(PermissionDeniedError) as caught:
        run_collect(core_with(port, policy).import_images(ChunkSource([data])))
    assert caught.value.reason is Reason.REGISTRY_NOT_ALLOWED
    assert "other/evil" in caught.value.message
    assert port.received_no_upload()


def test_hostile_and_oversized_archives_never_reach_the_engine() -> None:
    port = FakeDockerPort()
    link = tarfile.TarInfo("blobs/out")
    link.type = tarfile.SYMTYPE
    link.linkname = "../../etc/shadow"
    hostile = archive({"manifest.json": manifest("a:1")}, extra=link)
    with pytest.raises(InvalidArgumentError) as caught:
        run_collect(core_with(port, RegistryPolicy()).import_images(ChunkSource([hostile])))
    assert caught.value.reason is Reason.INVALID_IMAGE_ARCHIVE
    assert "the image archive is refused: member 'blobs/out'" in caught.value.message
    big = archive({"blobs/big": bytes(5000)})
    with pytest.raises(ResourceExhaustedError) as too_large:
        run_collect(
            core_with(port, RegistryPolicy(), max_bytes=4096).import_images(
                ChunkSource(split(big, 1000))
            )
        )
    assert too_large.value.reason is Reason.IMAGE_ARCHIVE_TOO_LARGE
    assert port.received_no_upload()


def test_settings_default_import_cap_is_its_own() -> None:
    settings = CoreSettings(build_context=ArchiveLimits(max_bytes=1))
    assert dataclasses.replace(settings).import_archive.max_bytes == 4 * 1024**3
