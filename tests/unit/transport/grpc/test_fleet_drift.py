"""FindImage's drift report in the servicer: the registry is asked once, on the receiving
node; every node's answer (its own and its peers') gets its drift; peers never see the
registry credentials. This node and its Engine are in memory, the peers are fakes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from imagesvc.core.fleet import FanOutLimits
from imagesvc.core.fleet_discovery import PeerDiscovery
from imagesvc.core.fleet_node import LocalNode
from imagesvc.core.identity import Identity, current_identity
from imagesvc.core.image_core import ImageCore
from imagesvc.transport.grpc.fleet_peers import PeerClient
from imagesvc.transport.grpc.fleet_servicer import FleetServiceServicer
from imagesvc.v1 import fleet_service_pb2 as pb
from imagesvc.v1 import image_pb2
from tests.unit.fakes import FakeDockerPort, engine_image

REPOSITORY = "reg.example/team/app"
CURRENT = "sha256:" + "c" * 64
OLDER = "sha256:" + "0" * 64


class FakePeers:
    """Two peers: one holds an older push of the tag, one a locally built image."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    async def find_image(self, address: str, image: str, seconds: float) -> pb.NodeImage:
        self.asked.append((address, image))
        digests = {"10.0.0.2:50051": [f"{REPOSITORY}@{OLDER}"], "10.0.0.3:50051": []}[address]
        return pb.NodeImage(node=address, present=True, image_id="sha256:x", repo_digests=digests)

    async def keep_only(self, addresses: Iterable[str]) -> None:
        pass


def test_each_node_gets_its_drift_and_the_registry_is_asked_once(
    core: ImageCore, port: FakeDockerPort, executor: ThreadPoolExecutor
) -> None:
    port.add(engine_image(1, tags=[f"{REPOSITORY}:1"], digests=[f"{REPOSITORY}@{CURRENT}"]))
    port.distributions[f"{REPOSITORY}:1"] = {
        "Descriptor": {"digest": CURRENT, "mediaType": "application/json", "size": 1}
    }
    local = LocalNode("node-a", "10.0.0.1:50051", core, port, executor, lambda: True)
    peers = FakePeers()
    servicer = FleetServiceServicer(
        lambda: local,
        PeerDiscovery("10.0.0.2:50051,10.0.0.3:50051"),
        cast(PeerClient, peers),
        FanOutLimits(),
    )
    auth = image_pb2.RegistryAuth(username="ci", password="s3cret-pw", server_address="reg.example")
    request = pb.FindImageRequest(image=f"{REPOSITORY}:1", check_registry=True, auth=auth)

    async def call() -> pb.FindImageResponse:
        current_identity.set(Identity("tester", frozenset({"admin"}), "token"))
        return await servicer.FindImage(request, cast(Any, None))

    found = asyncio.run(call())
    assert found.registry_digest == CURRENT
    assert [(n.address, n.drift) for n in found.nodes] == [
        ("10.0.0.1:50051", pb.NodeImage.DRIFT_CURRENT),
        ("10.0.0.2:50051", pb.NodeImage.DRIFT_STALE),
        ("10.0.0.3:50051", pb.NodeImage.DRIFT_UNKNOWN),
    ]
    resolutions = port.calls_to("inspect_distribution")
    assert len(resolutions) == 1
    assert resolutions[0].kwargs["auth"].password == "s3cret-pw"
    # Peers are asked for their images only: no credentials travel (the fake gets none).
    assert sorted(peers.asked) == [
        ("10.0.0.2:50051", f"{REPOSITORY}:1"),
        ("10.0.0.3:50051", f"{REPOSITORY}:1"),
    ]


def test_without_check_registry_nothing_is_resolved(
    core: ImageCore, port: FakeDockerPort, executor: ThreadPoolExecutor
) -> None:
    port.add(engine_image(1, tags=[f"{REPOSITORY}:1"], digests=[f"{REPOSITORY}@{CURRENT}"]))
    local = LocalNode("node-a", "10.0.0.1:50051", core, port, executor, lambda: True)
    servicer = FleetServiceServicer(
        lambda: local, PeerDiscovery(""), cast(PeerClient, FakePeers()), FanOutLimits()
    )

    async def call() -> pb.FindImageResponse:
        current_identity.set(Identity("tester", frozenset({"admin"}), "token"))
        return await servicer.FindImage(
            pb.FindImageRequest(image=f"{REPOSITORY}:1"), cast(Any, None)
        )

    found = asyncio.run(call())
    assert found.registry_digest == ""
    assert [n.drift for n in found.nodes] == [pb.NodeImage.DRIFT_UNSPECIFIED]
    assert port.calls_to("inspect_distribution") == []
