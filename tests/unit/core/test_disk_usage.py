"""GetDiskUsage's figures from both shapes of the Engine's /system/df."""

from __future__ import annotations

from datetime import UTC, datetime

from imagesvc.core.disk_usage import disk_usage
from imagesvc.core.image_core import ImageCore
from imagesvc.core.models import DiskUsage, ImageDiskUsage
from tests.unit.aio import run
from tests.unit.fakes import FakeDockerPort, image_id


def summary(
    n: int, *, size: int, shared: int, containers: int, tags: list[str], created: int
) -> dict[str, object]:
    return {
        "Id": image_id(n),
        "RepoTags": tags,
        "Created": created,
        "Size": size,
        "SharedSize": shared,
        "Containers": containers,
    }


BASE = summary(1, size=1_000, shared=1_000, containers=0, tags=["base:1"], created=100)
APP = summary(2, size=1_300, shared=1_000, containers=2, tags=["app:1"], created=200)
TOOL = summary(3, size=1_050, shared=1_000, containers=0, tags=["<none>:<none>"], created=300)


def test_the_classic_shape_counts_each_layer_once_and_reclaims_what_no_container_uses() -> None:
    usage = disk_usage({"LayersSize": 1_350, "Images": [BASE, APP, TOOL]})
    assert usage.image_count == 3
    assert usage.active_image_count == 1
    # The layers, each once: less than the sum of the sizes (3,350).
    assert usage.total_size_bytes == 1_350
    # Everything but what only the image in use has (like the CLI's RECLAIMABLE).
    assert usage.reclaimable_bytes == 1_350 - 300
    assert [i.id for i in usage.images] == [image_id(3), image_id(2), image_id(1)]
    app = usage.images[1]
    assert app == ImageDiskUsage(
        id=image_id(2),
        repo_tags=("app:1",),
        created=datetime.fromtimestamp(200, tz=UTC),
        size_bytes=1_300,
        shared_size_bytes=1_000,
        containers=2,
    )
    assert app.unique_size_bytes == 300
    assert usage.images[0].repo_tags == ()


def test_unknown_figures_stay_unknown() -> None:
    # Podman and the containerd store answer -1 for what they do not know.
    unknown = summary(4, size=500, shared=-1, containers=-1, tags=["x:1"], created=1)
    [image] = disk_usage({"LayersSize": 500, "Images": [unknown]}).images
    assert image.shared_size_bytes is None
    assert image.unique_size_bytes is None
    assert image.containers is None
    assert image.size_bytes == 500


def test_an_image_in_use_whose_shared_size_is_unknown_reclaims_nothing_of_its_own() -> None:
    in_use = summary(5, size=800, shared=-1, containers=1, tags=["y:1"], created=1)
    usage = disk_usage({"LayersSize": 800, "Images": [in_use]})
    assert usage.active_image_count == 1
    assert usage.reclaimable_bytes == 800


def test_the_api_1_52_shape_takes_the_engine_totals_and_items() -> None:
    document = {
        "ImagesDiskUsage": {
            "ActiveCount": 1,
            "TotalCount": 3,
            "Reclaimable": 1_050,
            "TotalSize": 1_350,
            "Items": [BASE, APP, TOOL],
        }
    }
    usage = disk_usage(document)
    assert (usage.image_count, usage.active_image_count) == (3, 1)
    assert (usage.total_size_bytes, usage.reclaimable_bytes) == (1_350, 1_050)
    assert [i.unique_size_bytes for i in usage.images] == [50, 300, 0]


def test_the_api_1_52_shape_without_items_still_has_the_totals() -> None:
    document = {
        "ImagesDiskUsage": {"ActiveCount": 0, "TotalCount": 2, "Reclaimable": 9, "TotalSize": 9}
    }
    assert disk_usage(document) == DiskUsage(
        images=(), image_count=2, active_image_count=0, total_size_bytes=9, reclaimable_bytes=9
    )


def test_core_answers_from_one_engine_call(core: ImageCore, port: FakeDockerPort) -> None:
    port.disk_usage_answer = {"LayersSize": 1_350, "Images": [BASE, APP, TOOL]}
    usage = run(core.disk_usage())
    assert usage.total_size_bytes == 1_350
    assert port.methods_called == ["disk_usage"]


def test_a_zero_layers_size_beside_images_of_some_size_is_unknown() -> None:
    # Podman 4 answers LayersSize 0 whatever its images weigh.
    usage = disk_usage({"LayersSize": 0, "Images": [BASE, APP]})
    assert usage.total_size_bytes is None
    assert usage.reclaimable_bytes is None
    assert disk_usage({"LayersSize": 0, "Images": []}).total_size_bytes == 0
