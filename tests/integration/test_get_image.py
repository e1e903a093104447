"""GetImage and GetImageHistory against the sandboxed engine, field by field against
``docker image inspect`` and ``docker history``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from devtools.engine_kinds import EngineKind
from devtools.sandbox import BuiltImage, SandboxEngine
from imagesvc.v1 import image_pb2
from imagesvc.v1 import image_service_pb2 as pb
from tests.integration.local_images import (
    MALFORMED,
    Stub,
    Throwaway,
    assert_serving,
    cli_time,
    engine_document,
    engine_time,
    expect_error,
    inspect,
    unique_repo,
)

# The API contract: runs once per engine kind (tests/integration/conftest.py).
pytestmark = pytest.mark.contract

_DOCKERFILE_LINES = (
    "ENV GREETING=hello PATH=/usr/local/bin:/bin",
    "ENV EMPTY=",
    "WORKDIR /srv/app",
    "USER 1000:1000",
    "EXPOSE 8080/tcp 53/udp 9090",
    "VOLUME /data /cache",
    "STOPSIGNAL SIGINT",
    'HEALTHCHECK --interval=7s --timeout=3s --start-period=2s --retries=4 CMD ["/bin/true"]',
    'ENTRYPOINT ["/bin/sh", "-c"]',
    'CMD ["echo hello"]',
)


@dataclass(frozen=True)
class Rich:
    image: BuiltImage
    second_tag: str
    document: dict[str, Any]


@pytest.fixture(scope="module")
def rich(engine: SandboxEngine, busybox_image: BuiltImage, stub: Stub) -> Iterator[Rich]:
    """An image whose config sets every field GetImage reports, under two tags."""
    throwaway = Throwaway(engine, stub)
    repo = unique_repo("get")
    try:
        image = throwaway.build(
            f"{repo}:1",
            extra_lines=[*_DOCKERFILE_LINES, f"LABEL org.imagesvc-test.unique={throwaway.scope}"],
            labels={"org.example.team": "images", "org.example.empty": ""},
        )
        second = f"{repo}-copy:2"
        engine.docker("tag", image.tag, second)
        yield Rich(image, second, inspect(engine, image.id))
    finally:
        throwaway.cleanup()


def _get(stub: Stub, image: str) -> image_pb2.Image:
    reply: pb.GetImageResponse = stub.GetImage(pb.GetImageRequest(image=image), timeout=20)
    return reply.image


def _duration_ns(value: Any) -> int:
    return int(value.seconds) * 1_000_000_000 + int(value.nanos)


# --------------------------------------------------------------------------- GetImage


def test_every_field_matches_docker_inspect(
    stub: Stub, engine: SandboxEngine, engine_kind: EngineKind, rich: Rich
) -> None:
    doc = rich.document
    config = doc["Config"]
    image = _get(stub, rich.image.tag)

    assert image.id == doc["Id"] == rich.image.id
    assert sorted(image.repo_tags) == sorted(doc["RepoTags"])
    assert sorted(image.repo_tags) == sorted([rich.image.tag, rich.second_tag])
    assert list(image.repo_digests) == doc["RepoDigests"]
    assert image.parent == doc["Parent"]
    assert image.parent  # the classic builder keeps the parent chain
    seconds, nanos = engine_time(doc["Created"])
    assert image.created.seconds == seconds
    # Python datetimes keep microseconds: the Engine's nanoseconds are truncated to them.
    assert image.created.nanos == nanos // 1000 * 1000
    assert image.author == doc["Author"]
    assert image.comment == doc["Comment"]
    assert image.architecture == doc["Architecture"]
    assert image.architecture
    assert image.os == doc["Os"] == "linux"
    assert image.variant == doc.get("Variant", "")
    assert image.size == doc["Size"]
    assert image.size > 0
    assert image.docker_version == doc["DockerVersion"]
    assert list(image.root_fs_layers) == doc["RootFS"]["Layers"]
    # COPY busybox, RUN --install and WORKDIR; buildah commits no layer for a WORKDIR.
    assert len(image.root_fs_layers) >= (2 if engine_kind.buildah else 3)
    assert dict(image.labels) == config["Labels"]
    assert image.labels["org.example.team"] == "images"
    assert image.labels["org.example.empty"] == ""
    # GetImage answers from one inspect: the Engine does not count containers there.
    assert image.containers == -1

    got = image.config
    assert list(got.env) == config["Env"]
    assert "GREETING=hello" in got.env
    assert "EMPTY=" in got.env
    assert list(got.cmd) == config["Cmd"] == ["echo hello"]
    assert list(got.entrypoint) == config["Entrypoint"] == ["/bin/sh", "-c"]
    assert got.working_dir == config["WorkingDir"] == "/srv/app"
    assert got.user == config["User"] == "1000:1000"
    assert list(got.exposed_ports) == sorted(config["ExposedPorts"])
    assert list(got.exposed_ports) == ["53/udp", "8080/tcp", "9090/tcp"]
    assert list(got.volumes) == sorted(config["Volumes"]) == ["/cache", "/data"]
    assert dict(got.labels) == config["Labels"]
    assert got.stop_signal == config["StopSignal"] == "SIGINT"

    check = config["Healthcheck"]
    assert got.HasField("healthcheck")
    assert list(got.healthcheck.test) == check["Test"] == ["CMD", "/bin/true"]
    assert _duration_ns(got.healthcheck.interval) == check["Interval"] == 7_000_000_000
    assert _duration_ns(got.healthcheck.timeout) == check["Timeout"] == 3_000_000_000
    assert _duration_ns(got.healthcheck.start_period) == check["StartPeriod"] == 2_000_000_000
    assert got.healthcheck.retries == check["Retries"] == 4

    # inspect_json is the Engine's own document, as it words it.
    assert json.loads(image.inspect_json) == engine_document(engine, rich.image.id)


def test_image_without_config_extras(
    stub: Stub, engine: SandboxEngine, busybox_image: BuiltImage
) -> None:
    """The busybox image sets no healthcheck, ports, volumes or labels: all empty."""
    doc = inspect(engine, busybox_image.id)
    image = _get(stub, busybox_image.tag)
    assert image.id == busybox_image.id
    assert busybox_image.tag in image.repo_tags
    assert sorted(image.repo_tags) == sorted(doc["RepoTags"])
    assert not image.config.HasField("healthcheck")
    assert list(image.config.exposed_ports) == []
    assert list(image.config.volumes) == []
    assert list(image.config.entrypoint) == (doc["Config"]["Entrypoint"] or [])
    assert list(image.config.cmd) == (doc["Config"]["Cmd"] or [])
    assert dict(image.labels) == (doc["Config"]["Labels"] or {})
    assert list(image.root_fs_layers) == doc["RootFS"]["Layers"]
    # inspect_json is the Engine's own document, as it words it.
    assert json.loads(image.inspect_json) == engine_document(engine, busybox_image.id)


def test_lookup_by_id_and_by_unique_prefix(stub: Stub, engine: SandboxEngine, rich: Rich) -> None:
    full = rich.image.id
    document = engine_document(engine, full)
    hex_id = full.removeprefix("sha256:")
    for identifier in (full, hex_id, hex_id[:12], f"sha256:{hex_id[:12]}", rich.second_tag):
        image = _get(stub, identifier)
        assert image.id == full, identifier
        assert json.loads(image.inspect_json) == document, identifier


def test_unknown_image_is_not_found(stub: Stub, busybox_image: BuiltImage) -> None:
    missing = unique_repo("missing") + ":1"
    for name in (missing, "sha256:" + "0" * 64):
        error = expect_error(
            stub.GetImage,
            pb.GetImageRequest(image=name),
            grpc.StatusCode.NOT_FOUND,
            "IMAGE_NOT_FOUND",
        )
        assert name in (error.details() or ""), error.details()
    assert_serving(stub, busybox_image)


@pytest.mark.parametrize("reference", MALFORMED)
def test_malformed_reference_is_invalid(
    stub: Stub, busybox_image: BuiltImage, reference: str
) -> None:
    for call, request in (
        (stub.GetImage, pb.GetImageRequest(image=reference)),
        (stub.GetImageHistory, pb.GetImageHistoryRequest(image=reference)),
    ):
        error = expect_error(call, request, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REFERENCE")
        assert "reference" in (error.details() or "").lower(), error.details()
    assert_serving(stub, busybox_image)


def test_empty_image_is_invalid(stub: Stub, busybox_image: BuiltImage) -> None:
    for call, request in (
        (stub.GetImage, pb.GetImageRequest()),
        (stub.GetImageHistory, pb.GetImageHistoryRequest()),
    ):
        error = expect_error(call, request, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
        assert "image" in (error.details() or "")
    assert_serving(stub, busybox_image)


# --------------------------------------------------------------------------- history


def _cli_history(engine: SandboxEngine, ref: str) -> list[dict[str, str]]:
    out = engine.docker(
        "history", "--no-trunc", "--human=false", "--format", "{{json .}}", ref
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_history_matches_docker_history(stub: Stub, engine: SandboxEngine, rich: Rich) -> None:
    reply: pb.GetImageHistoryResponse = stub.GetImageHistory(
        pb.GetImageHistoryRequest(image=rich.image.tag), timeout=20
    )
    rows = _cli_history(engine, rich.image.tag)
    # COPY, RUN, the Dockerfile lines, the LABEL line and one step per --label.
    assert len(rows) >= 2 + len(_DOCKERFILE_LINES) + 1
    assert len(reply.entries) == len(rows)
    for entry, row in zip(reply.entries, rows, strict=True):
        assert entry.id == row["ID"]
        assert entry.created_by == row["CreatedBy"]
        assert entry.size == int(row["Size"])
        assert entry.comment == row["Comment"]
        assert entry.created.seconds == cli_time(row["CreatedAt"])
        # The CLI does not print tags: they are those of the layer's image.
        expected_tags = inspect(engine, entry.id)["RepoTags"] if entry.id != "<missing>" else []
        assert sorted(entry.tags) == sorted(expected_tags)

    # Newest first: the image itself, then its parents down to the COPY of busybox.
    assert reply.entries[0].id == rich.image.id
    assert sorted(reply.entries[0].tags) == sorted([rich.image.tag, rich.second_tag])
    assert reply.entries[1].id == rich.document["Parent"]
    assert "COPY" in reply.entries[-1].created_by
    assert reply.entries[-1].size > 0
    created = [entry.created.seconds for entry in reply.entries]
    assert created == sorted(created, reverse=True)


def test_history_shows_tags_of_parent_layers(
    stub: Stub, engine: SandboxEngine, rich: Rich, busybox_image: BuiltImage
) -> None:
    """Throwaway images are built on the session busybox image: its layer carries its tag."""
    reply: pb.GetImageHistoryResponse = stub.GetImageHistory(
        pb.GetImageHistoryRequest(image=rich.image.id), timeout=20
    )
    tagged = {entry.id: list(entry.tags) for entry in reply.entries if entry.tags}
    assert busybox_image.id in tagged
    assert busybox_image.tag in tagged[busybox_image.id]
    assert sorted(tagged[busybox_image.id]) == sorted(inspect(engine, busybox_image.id)["RepoTags"])


def test_history_of_unknown_image_is_not_found(stub: Stub, busybox_image: BuiltImage) -> None:
    missing = unique_repo("missing") + ":1"
    error = expect_error(
        stub.GetImageHistory,
        pb.GetImageHistoryRequest(image=missing),
        grpc.StatusCode.NOT_FOUND,
        "IMAGE_NOT_FOUND",
    )
    assert missing in (error.details() or "")
    assert_serving(stub, busybox_image)
