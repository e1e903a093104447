"""Every ImageService RPC x every caller (no token, and each role's token) over gRPC:
allowed calls reach the core (their known harmless outcome), the others end with
UNAUTHENTICATED or PERMISSION_DENIED and this service's own reasons."""

from __future__ import annotations

import grpc
import pytest

from devtools.sandbox import Registry
from imagesvc.v1 import image_service_pb2 as pb
from tests.integration.rpc_errors import error_info
from tests.integration.security.conftest import Tokens
from tests.integration.security.probes import Probe, Stub, grpc_probes, outcome

# The table, written out: who may call what (roles are cumulative).
VIEWER = {"viewer", "puller", "builder", "pusher", "admin"}
PULLER = VIEWER - {"viewer"}
BUILDER = PULLER - {"puller"}
PUSHER = BUILDER - {"builder"}
ADMIN = {"admin"}
ALLOWED: dict[str, set[str]] = {
    "ListImages": VIEWER,
    "GetImage": VIEWER,
    "GetImageHistory": VIEWER,
    "PullImage": PULLER,
    "CheckRegistryAuth": PULLER,
    "BuildImage": BUILDER,
    "TagImage": BUILDER,
    "PushImage": PUSHER,
    "RemoveImage": ADMIN,
    "PruneImages": ADMIN,
}
LEAST_ROLE = {
    rpc: min(allowed, key=["viewer", "puller", "builder", "pusher", "admin"].index)
    for rpc, allowed in ALLOWED.items()
}
CALLERS = ["no token", "viewer", "puller", "builder", "pusher", "admin"]


@pytest.fixture(scope="module")
def probes(open_registry: Registry, auth_registry: Registry) -> dict[str, Probe]:
    return grpc_probes(open_registry, auth_registry)


def test_the_matrix_covers_every_rpc_of_the_service() -> None:
    service = pb.DESCRIPTOR.services_by_name["ImageService"]
    assert {method.name for method in service.methods} == set(ALLOWED)


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("rpc", list(ALLOWED))
def test_grpc(
    token_stub: Stub, tokens: Tokens, probes: dict[str, Probe], rpc: str, caller: str
) -> None:
    probe = probes[rpc]
    metadata = () if caller == "no token" else tokens.metadata(caller)
    error = outcome(probe, token_stub, metadata)
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
