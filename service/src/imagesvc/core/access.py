"""Who may call what: the role ladder and the one table from RPC to the least role
that may call it. Roles are cumulative (a builder may do what a puller may do).

Both transports reach the same servicer, so this is checked once, there
(transport/access_guard.py), for gRPC and REST alike.
"""

from __future__ import annotations

import functools
from enum import IntEnum

from imagesvc.core.errors import PermissionDeniedError, Reason, UnauthenticatedError
from imagesvc.core.identity import Identity


class Role(IntEnum):
    """Ordered: each role includes everything the ones below it may do."""

    VIEWER = 1
    PULLER = 2
    BUILDER = 3
    PUSHER = 4
    # Operations across every node of the fleet (FleetService), beside all of the above.
    FLEET = 5
    ADMIN = 6

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, label: str) -> Role:
        try:
            return cls[label.upper()]
        except KeyError:
            known = ", ".join(role.label for role in cls)
            raise ValueError(f"unknown role {label!r} (known: {known})") from None


ROLE_LABELS = frozenset(role.label for role in Role)

# The least role each ImageService RPC needs.
REQUIRED_ROLE: dict[str, Role] = {
    "ListImages": Role.VIEWER,
    "GetImage": Role.VIEWER,
    "GetImageHistory": Role.VIEWER,
    "WatchImages": Role.VIEWER,
    "PullImage": Role.PULLER,
    "CheckRegistryAuth": Role.PULLER,
    "InspectRegistryImage": Role.PULLER,
    "CheckImageUpdates": Role.PULLER,
    "ExportImages": Role.PULLER,
    "GetDiskUsage": Role.VIEWER,
    "BuildImage": Role.BUILDER,
    "ImportImages": Role.BUILDER,
    "TagImage": Role.BUILDER,
    "PushImage": Role.PUSHER,
    "RemoveImage": Role.ADMIN,
    "PruneImages": Role.ADMIN,
}

# The least role each FleetService RPC needs (every fleet call is audited: the node
# that received it and each node that acted).
FLEET_REQUIRED_ROLE: dict[str, Role] = {
    "ListNodes": Role.FLEET,
    "FindImage": Role.FLEET,
    "PullImageOnNodes": Role.FLEET,
    # Destructive on every node, as RemoveImage and PruneImages are on one.
    "RemoveImageOnNodes": Role.ADMIN,
    "PruneImagesOnNodes": Role.ADMIN,
}

# The RPCs that change something (the daemon's images, or its registry logins for
# CheckRegistryAuth) or take image content out (ExportImages), each audited: all but
# what a viewer may call.
WRITE_RPCS = frozenset(rpc for rpc, role in REQUIRED_ROLE.items() if role > Role.VIEWER)

# Every role, for the anonymous caller when authentication is off.
ALL_ROLES = ROLE_LABELS


def highest_role(identity: Identity) -> Role | None:
    return _highest_of(identity.roles)


@functools.lru_cache(maxsize=256)
def _highest_of(roles: frozenset[str]) -> Role | None:
    # Asked on every call; callers hold one of a few role sets.
    ranked = [Role.parse(label) for label in roles if label in ROLE_LABELS]
    return max(ranked, default=None)


def authorize(rpc: str, identity: Identity | None, credential_problem: str | None) -> Identity:
    """The caller if it may call `rpc`; otherwise UNAUTHENTICATED (no or invalid
    credentials) or PERMISSION_DENIED (its roles lack the RPC)."""
    if credential_problem is not None:
        raise UnauthenticatedError(credential_problem, reason=Reason.CALLER_UNAUTHENTICATED)
    if identity is None:
        raise UnauthenticatedError(
            "this call needs credentials: a bearer token (authorization: Bearer <token>)"
            " or a client certificate",
            reason=Reason.CALLER_UNAUTHENTICATED,
        )
    required = REQUIRED_ROLE.get(rpc) or FLEET_REQUIRED_ROLE[rpc]
    held = highest_role(identity)
    if held is None or held < required:
        raise PermissionDeniedError(
            f"{identity.name!r} may not call {rpc}: it needs the {required.label} role"
            f" (has: {', '.join(sorted(identity.roles)) or 'none'})",
            reason=Reason.CALLER_PERMISSION_DENIED,
            metadata={"rpc": rpc, "required_role": required.label},
        )
    return identity
