"""This node's own answers to the fleet RPCs, against the in-memory Engine."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from imagesvc.core.errors import InvalidArgumentError, Reason, UnavailableError
from imagesvc.core.fleet import NodeFailure
from imagesvc.core.fleet_node import LocalNode
from imagesvc.core.fleet_pull import NodePulled
from imagesvc.core.image_core import ImageCore
from tests.unit.fakes import FakeDockerPort, engine_image


def _node(
    core: ImageCore, port: FakeDockerPort, executor: ThreadPoolExecutor, *, up: bool = True
) -> LocalNode:
    return LocalNode("node-a", "10.0.0.1:50051", core, port, executor, lambda: up)


def test_status_counts_the_images_and_names_the_engine(
    core: ImageCore, port: FakeDockerPort, executor: ThreadPoolExecutor
) -> None:
    for n in range(3):
        port.add(engine_image(n + 1, tags=[f"app:{n}"], size=(n + 1) * 100))
    status = asyncio.run(_node(core, port, executor).status())
    assert status.ready
    assert status.failure is None
    assert (status.name, status.address) == ("node-a", "10.0.0.1:50051")
    assert status.image_count == 3
    assert status.images_size_bytes == 100 + 200 + 300
    assert status.engine_version == port.version()["Version"]


def test_a_daemon_that_is_down_makes_the_node_not_ready_with_its_reason(
    core: ImageCore, port: FakeDockerPort, executor: ThreadPoolExecutor
) -> None:
    status = asyncio.run(_node(core, port, executor, up=False).status())
    assert not status.ready
    assert status.failure is not None
    assert status.failure.reason == "DAEMON_UNAVAILABLE"


def test_find_tells_present_absent_and_the_nodes_own_failures(
    core: ImageCore, port: FakeDockerPort, executor: ThreadPoolExecutor
) -> None:
    document = port.add(engine_image(7, tags=["app:1"]))
    node = _node(core, port, executor)
    found = asyncio.run(node.find("app:1"))
    assert found.present
    assert found.image_id == document["Id"]
    assert found.repo_tags == ("app:1",)
    absent = asyncio.run(node.find("other:1"))
    assert not absent.present
    assert absent.failure is None
    with pytest.raises(InvalidArgumentError):
        asyncio.run(node.find("UPPER/case"))
    port.failures["inspect_image"] = UnavailableError("daemon gone")
    failed = asyncio.run(node.find("gone:1"))
    assert failed.failure is not None
    assert failed.failure.reason == "DAEMON_UNAVAILABLE"


def _pull_items(node: LocalNode, reference: str, digest: str) -> list[object]:
    async def collect() -> list[object]:
        items = node.pull(reference, platform="", auth=None, registry_digest=digest)
        return [item async for item in items]

    return asyncio.run(collect())


def test_a_node_holding_the_reference_at_the_registrys_digest_skips_the_pull(
    core: ImageCore, port: FakeDockerPort, executor: ThreadPoolExecutor
) -> None:
    port.add(
        engine_image(
            3,
            tags=["registry.test/team/app:1"],
            digests=["registry.test/team/app@sha256:" + "a" * 64],
        )
    )
    node = _node(core, port, executor)
    items = _pull_items(node, "registry.test/team/app:1", "sha256:" + "a" * 64)
    assert items == [NodePulled(skipped=True, digest="sha256:" + "a" * 64, name="node-a")]
    assert port.calls_to("pull") == []


def test_another_digest_or_another_repository_does_not_count_as_held(
    core: ImageCore, port: FakeDockerPort, executor: ThreadPoolExecutor
) -> None:
    port.add(
        engine_image(
            3,
            tags=["registry.test/team/app:1"],
            digests=["registry.test/other/app@sha256:" + "b" * 64],
        )
    )
    node = _node(core, port, executor)
    assert not asyncio.run(node._holds("registry.test/team/app:1", "sha256:" + "b" * 64))
    port.add(
        engine_image(
            4,
            tags=["registry.test/team/app:2"],
            digests=["registry.test/team/app@sha256:" + "c" * 64],
        )
    )
    assert not asyncio.run(node._holds("registry.test/team/app:2", "sha256:" + "d" * 64))
    assert asyncio.run(node._holds("registry.test/team/app:2", "sha256:" + "c" * 64))
    assert not asyncio.run(node._holds("registry.test/team/absent:1", "sha256:" + "c" * 64))


def test_a_failed_pull_is_the_nodes_failure_with_its_reason(
    core: ImageCore, port: FakeDockerPort, executor: ThreadPoolExecutor
) -> None:
    port.failures["pull"] = UnavailableError("the Docker daemon is not answering")
    with pytest.raises(NodeFailure) as failed:
        _pull_items(_node(core, port, executor), "registry.test/team/app:1", "")
    assert failed.value.reason == "DAEMON_UNAVAILABLE"
    assert "Docker daemon" in failed.value.message


def test_the_registry_digest_is_resolved_once_or_fails_every_node_when_refused(
    core: ImageCore, port: FakeDockerPort, executor: ThreadPoolExecutor
) -> None:
    node = _node(core, port, executor)
    digest = "sha256:" + "e" * 64
    port.distributions["registry.test/team/app:1"] = {
        "Descriptor": {"digest": digest, "mediaType": "application/json", "size": 1},
        "Platforms": [],
    }
    assert asyncio.run(node.registry_digest("registry.test/team/app:1", None)) == (digest, None)
    # A digest reference is its own digest: the registry is not asked.
    pinned = f"registry.test/team/app@{digest}"
    assert asyncio.run(node.registry_digest(pinned, None)) == (digest, None)
    assert len(port.calls_to("inspect_distribution")) == 1
    # No such image: every node would fail the same.
    unknown, failure = asyncio.run(node.registry_digest("registry.test/team/gone:1", None))
    assert unknown == ""
    assert failure is not None
    assert failure.reason == "IMAGE_NOT_FOUND"
    # Anything else (here the registry is down): no digest, every node pulls.
    port.distribution_failures["registry.test/team/down:1"] = UnavailableError(
        "registry down", reason=Reason.REGISTRY_UNAVAILABLE
    )
    assert asyncio.run(node.registry_digest("registry.test/team/down:1", None)) == ("", None)
