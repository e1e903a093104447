"""The server runs the image index: live after start, its state a metric, its event
stream closed and its reader thread ended on stop; off with --disable-image-index."""

from __future__ import annotations

import threading
import time

import grpc

from imagesvc.config import Settings
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc
from tests.unit.fakes import FakeDockerPort, engine_image, image_id

SETTINGS = Settings(grpc_address="127.0.0.1:0", http_address="127.0.0.1:0")


def _event_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("docker-events")]


def test_the_index_runs_with_the_server_and_stops_with_it() -> None:
    fake = FakeDockerPort()
    fake.add(engine_image(1, tags=["app:1"]))
    others = set(_event_threads())  # other servers' (a whole-suite run has some)
    server = ThreadedServer(SETTINGS, engine=fake)
    try:
        index = server.server.index
        assert index is not None
        deadline = time.monotonic() + 10
        while not index.live:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        registry = server.server.registry
        assert registry.get_sample_value("imagesvc_image_index_state", {"state": "live"}) == 1
        assert registry.get_sample_value("imagesvc_image_index_images") == 1
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = image_service_pb2_grpc.ImageServiceStub(channel)
            lists = len(fake.calls_to("list_images"))
            reply = stub.ListImages(pb.ListImagesRequest())
            assert [i.id for i in reply.images] == [image_id(1)]
            assert len(fake.calls_to("list_images")) == lists  # from memory
        assert set(_event_threads()) - others
    finally:
        server.stop()
    assert all(stream.closed for stream in fake.event_streams)
    deadline = time.monotonic() + 15  # a loaded CI machine: the thread must still end
    while set(_event_threads()) - others:
        assert time.monotonic() < deadline, "the event reader thread outlived the server"
        time.sleep(0.01)


def test_disabled_the_engine_answers_every_read() -> None:
    fake = FakeDockerPort()
    fake.add(engine_image(1, tags=["app:1"]))
    settings = Settings(
        grpc_address="127.0.0.1:0", http_address="127.0.0.1:0", disable_image_index=True
    )
    server = ThreadedServer(settings, engine=fake)
    try:
        assert server.server.index is None
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = image_service_pb2_grpc.ImageServiceStub(channel)
            for _ in range(2):
                lists = len(fake.calls_to("list_images"))
                stub.ListImages(pb.ListImagesRequest())
                assert len(fake.calls_to("list_images")) == lists + 1
        assert not fake.event_streams
    finally:
        server.stop()
