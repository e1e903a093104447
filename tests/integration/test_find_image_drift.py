"""FindImage's drift report on a real engine and registry: the node that received the
call resolves the tag at its registry once, and each node's image is CURRENT (pulled as
the registry's digest), STALE (an older push of the tag) or UNKNOWN (no digest of that
repository). One node, the tag moved at the registry under it."""

from __future__ import annotations

import grpc
import httpx
import pytest

from devtools.engine_kinds import EngineKind
from devtools.sandbox import Registry, SandboxEngine, build_busybox_image
from imagesvc.server import ThreadedServer
from imagesvc.v1 import fleet_service_pb2 as fleet_pb
from imagesvc.v1 import fleet_service_pb2_grpc, image_service_pb2_grpc
from imagesvc.v1 import image_service_pb2 as pb
from tests.integration.rpc_errors import error_info
from tests.integration.test_registry_inspect import _auth, _get_manifest, _push, _put_manifest
from tests.integration.transfers import (
    local_id,
    pushed_manifest_type,
    read_pull,
    read_push,
    registry_manifest,
    remove_local,
    unique,
)

# The API contract: runs once per engine kind (tests/integration/conftest.py).
pytestmark = pytest.mark.contract

CURRENT = fleet_pb.NodeImage.DRIFT_CURRENT
STALE = fleet_pb.NodeImage.DRIFT_STALE
UNKNOWN = fleet_pb.NodeImage.DRIFT_UNKNOWN
UNSPECIFIED = fleet_pb.NodeImage.DRIFT_UNSPECIFIED


@pytest.fixture(scope="module")
def fleet(channel: grpc.Channel) -> fleet_service_pb2_grpc.FleetServiceStub:
    return fleet_service_pb2_grpc.FleetServiceStub(channel)


def _drift(
    fleet: fleet_service_pb2_grpc.FleetServiceStub, image: str
) -> tuple[str, fleet_pb.NodeImage]:
    found = fleet.FindImage(fleet_pb.FindImageRequest(image=image, check_registry=True), timeout=30)
    [node] = found.nodes  # the test server has no peers
    return found.registry_digest, node


def test_a_node_holding_an_older_push_of_the_tag_is_stale(
    fleet: fleet_service_pb2_grpc.FleetServiceStub,
    server: ThreadedServer,
    stub: image_service_pb2_grpc.ImageServiceStub,
    engine: SandboxEngine,
    engine_kind: EngineKind,
    open_registry: Registry,
) -> None:
    repository = unique("drift/app-")
    tag_1 = f"{open_registry.address}/{repository}:1"
    tag_2 = f"{open_registry.address}/{repository}:2"
    media_type = pushed_manifest_type(engine_kind)
    try:
        _push(engine, tag_1, unique("first"))
        _push(engine, tag_2, unique("second"))
        first = registry_manifest(open_registry, repository, "1", media_type)
        remove_local(engine, tag_1, tag_2)
        read_pull(stub.PullImage(pb.PullImageRequest(reference=tag_1), timeout=60))

        registry_digest, node = _drift(fleet, tag_1)
        assert registry_digest == first.digest
        assert (node.present, node.drift) == (True, CURRENT)

        # The tag is pushed again (tag 2's manifest put as 1): the node's image is stale.
        second = _get_manifest(open_registry, repository, "2", media_type)
        second_digest = _put_manifest(open_registry, repository, "1", media_type, second)
        registry_digest, node = _drift(fleet, tag_1)
        assert registry_digest == second_digest
        assert (node.present, node.drift) == (True, STALE)
        assert node.image_id == local_id(engine, tag_1)
        # The same over REST (a POST: credentials would go in its body).
        with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}") as rest:
            answer = rest.post(
                "/v1/images:findOnNodes", json={"image": tag_1, "checkRegistry": True}
            )
        assert answer.status_code == 200, answer.text
        assert answer.json()["registryDigest"] == second_digest
        assert [n["drift"] for n in answer.json()["nodes"]] == ["DRIFT_STALE"]

        read_pull(stub.PullImage(pb.PullImageRequest(reference=tag_1), timeout=60))
        registry_digest, node = _drift(fleet, tag_1)
        assert (registry_digest, node.drift) == (second_digest, CURRENT)
    finally:
        remove_local(engine, tag_1, tag_2)


def test_an_image_built_here_and_never_pushed_is_unknown(
    fleet: fleet_service_pb2_grpc.FleetServiceStub,
    engine: SandboxEngine,
    open_registry: Registry,
) -> None:
    repository = unique("drift/local-")
    reference = f"{open_registry.address}/{repository}:1"
    try:
        _push(engine, reference, unique("pushed"))
        # Built again under the same name and never pushed: no digest of the repository.
        remove_local(engine, reference)
        build_busybox_image(engine, reference, extra_lines=[f"RUN echo {unique('')} > /id"])
        registry_digest, node = _drift(fleet, reference)
        assert registry_digest.startswith("sha256:")
        assert (node.present, node.drift) == (True, UNKNOWN)
    finally:
        remove_local(engine, reference)


def test_a_node_without_the_image_has_no_drift(
    fleet: fleet_service_pb2_grpc.FleetServiceStub,
    engine: SandboxEngine,
    open_registry: Registry,
) -> None:
    repository = unique("drift/absent-")
    reference = f"{open_registry.address}/{repository}:1"
    try:
        _push(engine, reference, unique("pushed"))
        remove_local(engine, reference)
        registry_digest, node = _drift(fleet, reference)
        assert registry_digest.startswith("sha256:")
        assert (node.present, node.drift) == (False, UNSPECIFIED)
    finally:
        remove_local(engine, reference)


def test_drift_needs_a_reference_and_failures_at_the_registry_fail_the_call(
    fleet: fleet_service_pb2_grpc.FleetServiceStub,
    busybox_image_id: str,
    open_registry: Registry,
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        _drift(fleet, busybox_image_id)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(refused.value).reason == "INVALID_REFERENCE"
    missing = f"{open_registry.address}/{unique('drift/never-pushed-')}:1"
    with pytest.raises(grpc.RpcError) as absent:
        _drift(fleet, missing)
    assert absent.value.code() == grpc.StatusCode.NOT_FOUND
    # Without check_registry, FindImage never asks the registry.
    found = fleet.FindImage(fleet_pb.FindImageRequest(image=missing), timeout=30)
    assert found.registry_digest == ""
    assert [n.drift for n in found.nodes] == [UNSPECIFIED]


@pytest.fixture(scope="module")
def busybox_image_id(engine: SandboxEngine, busybox_image: object) -> str:
    image_id = local_id(engine, "imagesvc-test/busybox:1.0")
    assert image_id is not None
    return image_id


def test_rest_refuses_registry_credentials_in_the_url(server: ThreadedServer) -> None:
    secret = "pw-" + unique("")
    with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}") as rest:
        refused = rest.get(
            "/v1/images:findOnNodes",
            params={"image": "app:1", "checkRegistry": "true", "auth.password": secret},
        )
    assert refused.status_code == 400
    assert refused.json()["details"][0]["reason"] == "INVALID_ARGUMENT"
    assert "not accepted in the URL" in refused.json()["message"]
    assert secret not in refused.text


def test_drift_with_registry_credentials_that_never_leak(
    fleet: fleet_service_pb2_grpc.FleetServiceStub,
    stub: image_service_pb2_grpc.ImageServiceStub,
    engine: SandboxEngine,
    engine_kind: EngineKind,
    auth_registry: Registry,
) -> None:
    repository = unique("drift/auth-")
    reference = f"{auth_registry.address}/{repository}:1"
    build_busybox_image(engine, reference, extra_lines=[f"RUN echo {unique('')} > /id"])
    try:
        auth = _auth(auth_registry)
        read_push(stub.PushImage(pb.PushImageRequest(reference=reference, auth=auth), timeout=60))
        served = registry_manifest(
            auth_registry, repository, "1", pushed_manifest_type(engine_kind)
        )
        found = fleet.FindImage(
            fleet_pb.FindImageRequest(image=reference, check_registry=True, auth=auth),
            timeout=30,
        )
        assert found.registry_digest == served.digest
        assert [n.drift for n in found.nodes] == [CURRENT]
        wrong = _auth(auth_registry, password="drift-" + unique("wrong-"))
        with pytest.raises(grpc.RpcError) as refused:
            fleet.FindImage(
                fleet_pb.FindImageRequest(image=reference, check_registry=True, auth=wrong),
                timeout=30,
            )
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_info(refused.value).reason == "REGISTRY_UNAUTHENTICATED"
        assert wrong.password not in str(refused.value.details())
    finally:
        remove_local(engine, reference)
