"""GetDiskUsage on each engine kind: its figures are the Engine's own `GET /system/df`
(fetched here over the Engine's socket), and two images on one base share its layers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from devtools.sandbox import BuiltImage, SandboxEngine
from imagesvc.v1 import image_service_pb2 as pb
from tests.integration.local_images import (
    Stub,
    Throwaway,
    familiar_name,
    full_id,
    in_step,
    unique_repo,
)

# The API contract: runs once per engine kind (tests/integration/conftest.py).
pytestmark = pytest.mark.contract


@pytest.fixture
def throwaway(engine: SandboxEngine, stub: Stub) -> Iterator[Throwaway]:
    made = Throwaway(engine, stub)
    try:
        yield made
    finally:
        made.cleanup()


def _figure(message: pb.ImageDiskUsage, field: str) -> int:
    """A figure as the Engine writes it: -1 for unknown (unset here)."""
    value: int = getattr(message, field) if message.HasField(field) else -1
    return value


def _system_df(engine: SandboxEngine) -> dict[str, Any]:
    document = engine.api_get("/system/df")
    assert isinstance(document, dict)
    return document


def test_the_figures_are_the_engines_system_df(
    stub: Stub, engine: SandboxEngine, throwaway: Throwaway
) -> None:
    repo = unique_repo("df")
    used = throwaway.build(f"{repo}:used", extra_lines=["RUN head -c 300000 /dev/urandom > /u"])
    throwaway.build(f"{repo}:idle", extra_lines=["RUN head -c 200000 /dev/urandom > /i"])
    throwaway.create_container(used.tag)
    in_step(stub, engine)

    reply = stub.GetDiskUsage(pb.GetDiskUsageRequest(), timeout=60)
    document = _system_df(engine)

    listed = {full_id(str(image["Id"])): image for image in document["Images"]}
    served = {image.id: image for image in reply.images}
    assert set(served) == set(listed)
    # Tags as the Engine's list shows them (Podman's /system/df holds only the tag part).
    summaries = engine.api_get("/images/json?all=1")
    assert isinstance(summaries, list)
    tags = {
        full_id(str(s["Id"])): [familiar_name(t) for t in s["RepoTags"] or ()] for s in summaries
    }
    for image_id, image in listed.items():
        answer = served[image_id]
        assert answer.size_bytes == image["Size"], image_id
        assert _figure(answer, "shared_size_bytes") == image["SharedSize"], image_id
        assert _figure(answer, "containers") == image["Containers"], image_id
        if image["SharedSize"] >= 0:
            assert answer.unique_size_bytes == image["Size"] - image["SharedSize"]
        else:
            assert not answer.HasField("unique_size_bytes")
        wanted = sorted(t for t in tags.get(image_id, []) if t != "<none>:<none>")
        assert sorted(answer.repo_tags) == wanted, image_id
    assert reply.image_count == len(listed)
    active = [image for image in listed.values() if image["Containers"] > 0]
    assert reply.active_image_count == len(active)
    if document["LayersSize"] == 0:
        # Podman 4 answers 0 whatever its images weigh: unknown, not a number.
        assert not reply.HasField("total_size_bytes")
        assert not reply.HasField("reclaimable_bytes")
    else:
        assert reply.total_size_bytes == document["LayersSize"]
        # RECLAIMABLE as the docker CLI computes it from the same document.
        in_use = sum(i["Size"] - i["SharedSize"] for i in active if i["SharedSize"] >= 0)
        assert reply.reclaimable_bytes == document["LayersSize"] - in_use
    assert served[used.id].containers == 1


def test_images_on_one_base_share_its_layers_which_are_counted_once(
    stub: Stub, engine: SandboxEngine, throwaway: Throwaway, busybox_image: BuiltImage
) -> None:
    repo = unique_repo("df-shared")
    first = throwaway.build(f"{repo}:1", extra_lines=["RUN head -c 300000 /dev/urandom > /1"])
    second = throwaway.build(f"{repo}:2", extra_lines=["RUN head -c 300000 /dev/urandom > /2"])
    in_step(stub, engine)

    reply = stub.GetDiskUsage(pb.GetDiskUsageRequest(), timeout=60)
    served = {image.id: image for image in reply.images}
    base = served[busybox_image.id].size_bytes
    for built in (first, second):
        image = served[built.id]
        # The base's layers are shared (the classic builder's intermediate images share
        # the rest too, which Docker counts as shared as well).
        assert image.shared_size_bytes > 0, image
        assert image.unique_size_bytes == image.size_bytes - image.shared_size_bytes
        assert image.size_bytes >= base + 300000, image
    if reply.HasField("total_size_bytes"):  # unset only where the Engine reports 0
        # Each layer once: the total is less than the images' sizes added up.
        assert reply.total_size_bytes < sum(image.size_bytes for image in reply.images)
