"""The role ladder and the RPC table: cumulative roles, refusals with their reasons."""

from __future__ import annotations

import pytest

from imagesvc.core.access import FLEET_REQUIRED_ROLE, REQUIRED_ROLE, WRITE_RPCS, Role, authorize
from imagesvc.core.errors import PermissionDeniedError, Reason, UnauthenticatedError
from imagesvc.core.identity import Identity
from imagesvc.v1 import fleet_service_pb2
from imagesvc.v1 import image_service_pb2 as pb


def _caller(*roles: str) -> Identity:
    return Identity("ci", frozenset(roles), "token")


def test_every_rpc_of_the_service_has_a_required_role() -> None:
    service = pb.DESCRIPTOR.services_by_name["ImageService"]
    assert {method.name for method in service.methods} == set(REQUIRED_ROLE)


def test_the_writes_are_what_a_viewer_may_not_call() -> None:
    assert {
        "PullImage",
        "CheckRegistryAuth",
        "InspectRegistryImage",
        "CheckImageUpdates",
        "ExportImages",
        "BuildImage",
        "ImportImages",
        "TagImage",
        "PushImage",
        "RemoveImage",
        "PruneImages",
    } == WRITE_RPCS


def test_the_ladder_is_the_issue_s() -> None:
    assert [role.label for role in sorted(Role)] == [
        "viewer",
        "puller",
        "builder",
        "pusher",
        "fleet",
        "admin",
    ]
    assert {rpc for rpc, role in REQUIRED_ROLE.items() if role is Role.VIEWER} == {
        "ListImages",
        "GetImage",
        "GetImageHistory",
        "WatchImages",
        "GetDiskUsage",
    }
    assert {rpc for rpc, role in REQUIRED_ROLE.items() if role is Role.PULLER} == {
        "PullImage",
        "CheckRegistryAuth",
        "InspectRegistryImage",
        "CheckImageUpdates",
        "ExportImages",
    }
    assert {rpc for rpc, role in REQUIRED_ROLE.items() if role is Role.BUILDER} == {
        "BuildImage",
        "ImportImages",
        "TagImage",
    }
    assert {rpc for rpc, role in REQUIRED_ROLE.items() if role is Role.PUSHER} == {"PushImage"}
    assert {rpc for rpc, role in REQUIRED_ROLE.items() if role is Role.ADMIN} == {
        "RemoveImage",
        "PruneImages",
    }


def test_every_fleet_rpc_needs_the_fleet_role_and_removal_on_nodes_admin() -> None:
    service = fleet_service_pb2.DESCRIPTOR.services_by_name["FleetService"]
    assert {method.name for method in service.methods} == set(FLEET_REQUIRED_ROLE)
    admin = {rpc for rpc, role in FLEET_REQUIRED_ROLE.items() if role is Role.ADMIN}
    assert admin == {"RemoveImageOnNodes", "PruneImagesOnNodes"}
    assert {FLEET_REQUIRED_ROLE[rpc] for rpc in set(FLEET_REQUIRED_ROLE) - admin} == {Role.FLEET}
    assert Role.PUSHER < Role.FLEET < Role.ADMIN
    assert not set(FLEET_REQUIRED_ROLE) & WRITE_RPCS


@pytest.mark.parametrize("rpc", [*REQUIRED_ROLE, *FLEET_REQUIRED_ROLE])
@pytest.mark.parametrize("role", list(Role))
def test_roles_are_cumulative(rpc: str, role: Role) -> None:
    caller = _caller(role.label)
    required = {**REQUIRED_ROLE, **FLEET_REQUIRED_ROLE}[rpc]
    if role >= required:
        assert authorize(rpc, caller, None) is caller
    else:
        with pytest.raises(PermissionDeniedError) as refused:
            authorize(rpc, caller, None)
        assert refused.value.reason is Reason.CALLER_PERMISSION_DENIED
        assert refused.value.metadata == {
            "rpc": rpc,
            "required_role": required.label,
        }


def test_the_highest_of_several_roles_counts() -> None:
    assert authorize("RemoveImage", _caller("viewer", "admin"), None)


def test_no_roles_and_unknown_roles_allow_nothing() -> None:
    for caller in (_caller(), _caller("root", "superuser")):
        with pytest.raises(PermissionDeniedError, match="needs the viewer role"):
            authorize("ListImages", caller, None)


def test_no_caller_is_unauthenticated() -> None:
    with pytest.raises(UnauthenticatedError) as refused:
        authorize("ListImages", None, None)
    assert refused.value.reason is Reason.CALLER_UNAUTHENTICATED
    assert "Bearer <token>" in refused.value.message


def test_a_credential_problem_wins_over_an_identity() -> None:
    with pytest.raises(UnauthenticatedError, match="revoked") as refused:
        authorize("ListImages", _caller("admin"), "the bearer token is revoked")
    assert refused.value.reason is Reason.CALLER_UNAUTHENTICATED


def test_role_labels_parse_case_insensitively_and_unknown_ones_say_what_exists() -> None:
    assert Role.parse("Builder") is Role.BUILDER
    with pytest.raises(ValueError, match="known: viewer, puller, builder, pusher, fleet, admin"):
        Role.parse("root")
