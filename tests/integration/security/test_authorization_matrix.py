"""Every ImageService and FleetService RPC x every caller (no token, and each role's token) x both
transports (gRPC, REST): allowed calls reach the core (their known harmless outcome),
the others end with UNAUTHENTICATED/401 or PERMISSION_DENIED/403 and this service's own
reasons (REST: a google.rpc.Status JSON body)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import httpx
import pytest

from devtools.sandbox import Registry
from imagesvc.server import ThreadedServer
from imagesvc.v1 import fleet_service_pb2 as fleet_pb
from imagesvc.v1 import fleet_service_pb2_grpc
from imagesvc.v1 import image_service_pb2 as pb
from tests.integration.rpc_errors import error_info
from tests.integration.security.conftest import Tokens
from tests.integration.security.probes import (
    FleetStub,
    Probe,
    RestProbe,
    Stub,
    grpc_probes,
    outcome,
    rest_call,
    rest_probes,
    rest_reason,
)

# The table, written out: who may call what (roles are cumulative).
VIEWER = {"viewer", "puller", "builder", "pusher", "fleet", "admin"}
PULLER = VIEWER - {"viewer"}
BUILDER = PULLER - {"puller"}
PUSHER = BUILDER - {"builder"}
FLEET = {"fleet", "admin"}
ADMIN = {"admin"}
ALLOWED: dict[str, set[str]] = {
    "ListImages": VIEWER,
    "GetImage": VIEWER,
    "GetImageHistory": VIEWER,
    "WatchImages": VIEWER,
    "PullImage": PULLER,
    "CheckRegistryAuth": PULLER,
    "InspectRegistryImage": PULLER,
    "CheckImageUpdates": PULLER,
    "BuildImage": BUILDER,
    "ImportImages": BUILDER,
    "TagImage": BUILDER,
    "PushImage": PUSHER,
    "RemoveImage": ADMIN,
    "PruneImages": ADMIN,
    "ExportImages": PULLER,
    "GetDiskUsage": VIEWER,
    "ListNodes": FLEET,
    "FindImage": FLEET,
    "PullImageOnNodes": FLEET,
    "RemoveImageOnNodes": ADMIN,
    "PruneImagesOnNodes": ADMIN,
}
LEAST_ROLE = {
    rpc: min(allowed, key=["viewer", "puller", "builder", "pusher", "fleet", "admin"].index)
    for rpc, allowed in ALLOWED.items()
}
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
}
CALLERS = ["no token", "viewer", "puller", "builder", "pusher", "fleet", "admin"]


@pytest.fixture(scope="module")
def probes(open_registry: Registry, auth_registry: Registry) -> dict[str, Probe]:
    return grpc_probes(open_registry, auth_registry)


@pytest.fixture(scope="module")
def http_probes(open_registry: Registry, auth_registry: Registry) -> dict[str, RestProbe]:
    return rest_probes(open_registry, auth_registry)


@pytest.fixture(scope="module")
def http(token_server: ThreadedServer) -> Iterator[httpx.Client]:
    base = f"http://127.0.0.1:{token_server.http_port}"
    with httpx.Client(base_url=base, timeout=60, trust_env=False) as client:
        yield client


@pytest.fixture(scope="module")
def fleet_stub(token_server: ThreadedServer) -> Iterator[FleetStub]:
    with grpc.insecure_channel(f"127.0.0.1:{token_server.port}") as channel:
        yield fleet_service_pb2_grpc.FleetServiceStub(channel)


def test_the_matrix_covers_every_rpc_of_the_services() -> None:
    images = pb.DESCRIPTOR.services_by_name["ImageService"]
    fleet = fleet_pb.DESCRIPTOR.services_by_name["FleetService"]
    assert {method.name for method in (*images.methods, *fleet.methods)} == set(ALLOWED)


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("rpc", list(ALLOWED))
def test_grpc(
    token_stub: Stub,
    fleet_stub: FleetStub,
    tokens: Tokens,
    probes: dict[str, Probe],
    rpc: str,
    caller: str,
) -> None:
    probe = probes[rpc]
    metadata = () if caller == "no token" else tokens.metadata(caller)
    error = outcome(probe, fleet_stub if probe.fleet else token_stub, metadata)
    assert error is None or isinstance(error, grpc.Call)

    if caller == "no token":
        assert error is not None
        assert error.code() is grpc.StatusCode.UNAUTHENTICATED
        assert error_info(error).reason == "CALLER_UNAUTHENTICATED"
    elif caller in ALLOWED[rpc]:
        code = grpc.StatusCode.OK if error is None else error.code()
        assert code is probe.authorized_code, error
        if error is not None:
            assert not error_info(error).reason.startswith("CALLER_")
    else:
        assert error is not None
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED
        info = error_info(error)
        assert info.reason == "CALLER_PERMISSION_DENIED"
        assert info.metadata["rpc"] == rpc
        assert info.metadata["required_role"] == LEAST_ROLE[rpc]
        assert f"{caller}-bot" in (error.details() or "")


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("rpc", list(ALLOWED))
def test_rest(
    http: httpx.Client,
    tokens: Tokens,
    http_probes: dict[str, RestProbe],
    rpc: str,
    caller: str,
) -> None:
    probe = http_probes[rpc]
    headers = () if caller == "no token" else (("authorization", tokens.metadata(caller)[0][1]),)
    result = rest_call(http, probe, headers)
    error = result.error

    if caller == "no token":
        assert result.http_status == 401
        assert result.code is grpc.StatusCode.UNAUTHENTICATED
        assert rest_reason(error) == "CALLER_UNAUTHENTICATED"
    elif caller in ALLOWED[rpc]:
        assert result.code is probe.authorized_code, error
        if not result.streamed:
            assert result.http_status == HTTP_STATUS[probe.authorized_code]
        if error is not None:
            assert not rest_reason(error).startswith("CALLER_")
    else:
        assert result.http_status == 403
        assert result.code is grpc.StatusCode.PERMISSION_DENIED
        assert rest_reason(error) == "CALLER_PERMISSION_DENIED"
        assert error is not None
        assert f"{caller}-bot" in error["message"]
