"""Fixtures of the registry-policy, build-restriction and limit tests: servers of their
own with allowlists that admit only parts of the open loopback registry (and the
session's local busybox image), and a canary registry that must never be contacted."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from devtools.sandbox import Engine, Registry
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_service_pb2_grpc
from tests.integration.conftest import server_settings
from tests.integration.policy.canary import CanaryRegistry

Stub = image_service_pb2_grpc.ImageServiceStub


@dataclass(frozen=True)
class Running:
    server: ThreadedServer
    stub: Stub

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.server.http_port}"


@contextlib.contextmanager
def running(engine: Engine, **overrides: object) -> Iterator[Running]:
    """A server of its own with these settings, and a stub on a channel to it."""
    server = ThreadedServer(server_settings(engine.host, **overrides))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield Running(server, image_service_pb2_grpc.ImageServiceStub(channel))
    finally:
        server.stop()


def allowlists(open_registry: Registry) -> dict[str, object]:
    """Pulls from <open>/allowed/** and the session busybox image; tags and pushes to
    <open>/allowed/* and local imagesvc-test/policy-* names."""
    return {
        "pull_allowlist": f"{open_registry.address}/allowed/**,docker.io/imagesvc-test/busybox",
        "push_allowlist": f"{open_registry.address}/allowed/*, imagesvc-test/policy-*",
    }


@pytest.fixture(scope="package")
def canary() -> Iterator[CanaryRegistry]:
    with CanaryRegistry() as registry:
        yield registry


@pytest.fixture(scope="package")
def policy(default_engine: Engine, open_registry: Registry) -> Iterator[Running]:
    with running(default_engine, **allowlists(open_registry)) as server:
        yield server


def retry_delay(error: grpc.RpcError) -> float:
    """The google.rpc.RetryInfo delay of a failed call, in seconds (fails if absent)."""
    assert isinstance(error, grpc.Call)
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    raise AssertionError(f"no RetryInfo among the details: {status.details}")
