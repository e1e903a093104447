"""This node's own answers to the fleet RPCs, against the in-memory Engine."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from imagesvc.core.errors import InvalidArgumentError, UnavailableError
from imagesvc.core.fleet_node import LocalNode
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
