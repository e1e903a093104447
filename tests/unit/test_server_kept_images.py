"""The server's kept images: `--keep-images-file` checked at start, the health name
`imagesvc.v1.KeptImages` (SERVING without a file, and once every kept image is present),
the state metric, ListNodes' kept_images, and PruneImages' refusal; on a fake Engine."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from imagesvc.config import Settings, SettingsError
from imagesvc.core.errors import NotFoundError
from imagesvc.server import ImageServer, ThreadedServer
from imagesvc.v1 import fleet_service_pb2 as fleet_pb
from imagesvc.v1 import fleet_service_pb2_grpc, image_service_pb2_grpc
from imagesvc.v1 import image_service_pb2 as pb
from tests.unit.fakes import FakeDockerPort, engine_image

KEPT_IMAGES = "imagesvc.v1.KeptImages"


def _settings(**overrides: Any) -> Settings:
    return Settings(grpc_address="127.0.0.1:0", http_address="127.0.0.1:0", **overrides)


def _health(channel: grpc.Channel) -> int:
    # Typed Any: the types-grpcio-health-checking stub has no methods.
    stub: Any = health_pb2_grpc.HealthStub(channel)
    status: int = stub.Check(health_pb2.HealthCheckRequest(service=KEPT_IMAGES), timeout=5).status
    return status


def _eventually(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_a_keep_file_that_cannot_be_read_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="--keep-images-file"):
        ImageServer(_settings(keep_images_file=str(tmp_path / "missing")), FakeDockerPort())


def test_without_a_keep_file_the_node_is_warm() -> None:
    server = ThreadedServer(_settings(), engine=FakeDockerPort())
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
    finally:
        server.stop()


def test_present_kept_images_make_the_node_warm_and_are_never_pruned(tmp_path: Path) -> None:
    fake = FakeDockerPort()
    document = fake.add(engine_image(1, tags=["reg.example/app:1"]))
    keep = tmp_path / "keep"
    keep.write_text("# kept\nreg.example/app:1\n")
    server = ThreadedServer(_settings(keep_images_file=str(keep)), engine=fake)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            _eventually(lambda: _health(channel) == health_pb2.HealthCheckResponse.SERVING)
            fleet = fleet_service_pb2_grpc.FleetServiceStub(channel)
            [node] = fleet.ListNodes(fleet_pb.ListNodesRequest(local_only=True), timeout=5).nodes
            [kept] = node.kept_images
            assert (kept.reference, kept.state, kept.image_id) == (
                "reg.example/app:1",
                fleet_pb.KeptImage.STATE_PRESENT,
                document["Id"],
            )
            registry = server.server.registry
            assert registry.get_sample_value("imagesvc_kept_images", {"state": "present"}) == 1
            images = image_service_pb2_grpc.ImageServiceStub(channel)
            with pytest.raises(grpc.RpcError) as refused:
                images.PruneImages(pb.PruneImagesRequest(all=True), timeout=5)
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert not any(call.method == "prune_images" for call in fake.calls)
            images.PruneImages(pb.PruneImagesRequest(), timeout=5)  # dangling only: runs
            assert any(call.method == "prune_images" for call in fake.calls)
            assert (
                _health(channel) == health_pb2.HealthCheckResponse.SERVING
            )  # still warm after both prunes
    finally:
        server.stop()


def test_a_kept_image_that_cannot_be_pulled_makes_the_node_cold(tmp_path: Path) -> None:
    keep = tmp_path / "keep"
    keep.write_text("reg.example/missing:1\n")
    fake = FakeDockerPort()
    fake.failures["pull"] = NotFoundError("manifest for reg.example/missing:1 not found")
    server = ThreadedServer(_settings(keep_images_file=str(keep)), engine=fake)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            registry = server.server.registry
            _eventually(
                lambda: registry.get_sample_value("imagesvc_kept_images", {"state": "failed"}) == 1
            )
            assert _health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        server.stop()
