"""The fleet's per-node answers and the one fan-out every fleet RPC uses: each node
called in parallel (bounded), each within its own timeout, each failure kept as that
node's typed error, never the whole call's.

Later fleet operations (pull, remove, prune on nodes) reuse `fan_out` with their own
per-node call."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

from imagesvc.core.kept_images import KeptImage
from imagesvc.core.references import Reference
from imagesvc.core.registry_images import digests_in_repository

log = logging.getLogger(__name__)
T = TypeVar("T")

# Per-node error reasons of the fleet (besides the ErrorInfo reasons a peer answers).
NODE_UNREACHABLE = "NODE_UNREACHABLE"
NODE_TIMEOUT = "NODE_TIMEOUT"
NODE_DENIED = "NODE_DENIED"
NODE_ERROR = "NODE_ERROR"


class NodeFailure(Exception):
    """Why one node could not answer: a reason (above, or a peer's ErrorInfo reason)
    and a message for people."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """One node as ListNodes reports it."""

    address: str
    name: str = ""
    ready: bool = False
    failure: NodeFailure | None = None
    engine_version: str = ""
    engine_api_version: str = ""
    image_count: int = 0
    images_size_bytes: int = 0
    local: bool = False
    kept_images: tuple[KeptImage, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeImage:
    """One node's answer to FindImage."""

    address: str
    node: str = ""
    present: bool = False
    image_id: str = ""
    repo_digests: tuple[str, ...] = ()
    repo_tags: tuple[str, ...] = ()
    failure: NodeFailure | None = None
    local: bool = False


class Drift(StrEnum):
    """Whether a node's image is what the registry serves for the tag now."""

    CURRENT = "current"
    STALE = "stale"
    # The image has no digest of the reference's repository: cannot tell.
    UNKNOWN = "unknown"


def drift_of(reference: Reference, repo_digests: Sequence[str], registry_digest: str) -> Drift:
    """A node's image, by its repo digests, against the registry's current digest."""
    local = digests_in_repository(reference, repo_digests)
    if not local:
        return Drift.UNKNOWN
    return Drift.CURRENT if registry_digest in local else Drift.STALE


@dataclass(frozen=True, slots=True)
class NodeOutcome(Generic[T]):
    """A node's value, or its failure."""

    address: str
    value: T | None = None
    failure: NodeFailure | None = field(default=None)


@dataclass(frozen=True, slots=True)
class FanOutLimits:
    """How many nodes are called at once, and how long each may take."""

    parallelism: int = 16
    node_timeout_seconds: float = 5.0


async def fan_out(
    addresses: Sequence[str],
    call: Callable[[str], Awaitable[T]],
    limits: FanOutLimits,
) -> list[NodeOutcome[T]]:
    """`call(address)` for every address, at most `limits.parallelism` at once, each
    within `limits.node_timeout_seconds`; outcomes in the order of `addresses`. A call
    raises NodeFailure for a known failure; a timeout is NODE_TIMEOUT, anything else
    NODE_ERROR (logged with its traceback: a bug of ours)."""
    slots = asyncio.Semaphore(max(limits.parallelism, 1))

    async def one(address: str) -> NodeOutcome[T]:
        async with slots:
            try:
                async with asyncio.timeout(limits.node_timeout_seconds):
                    return NodeOutcome(address, value=await call(address))
            except NodeFailure as failure:
                return NodeOutcome(address, failure=failure)
            except TimeoutError:
                return NodeOutcome(
                    address,
                    failure=NodeFailure(
                        NODE_TIMEOUT,
                        f"node {address} did not answer within {limits.node_timeout_seconds:g} s",
                    ),
                )
            except Exception:
                log.exception("fleet call to a node failed", extra={"node_address": address})
                return NodeOutcome(
                    address, failure=NodeFailure(NODE_ERROR, f"node {address}: internal error")
                )

    return list(await asyncio.gather(*(one(address) for address in addresses)))


NODE_NOT_FOUND = "NODE_NOT_FOUND"


@dataclass(frozen=True, slots=True)
class FleetMember:
    """A node a fleet operation may act on, as the listing of the peers found it: its
    `failure` set when it cannot act (unreachable, its daemon down)."""

    address: str
    name: str = ""
    failure: NodeFailure | None = None
    local: bool = False


def select_members(members: Sequence[FleetMember], wanted: Sequence[str]) -> list[FleetMember]:
    """The members named in `wanted` (node names or addresses), in the order asked; all of
    them when `wanted` is empty. A name no reachable node has is its own failed member
    (NODE_NOT_FOUND): an unreachable node has no name to match, so the call goes on."""
    if not wanted:
        return list(members)
    chosen: list[FleetMember] = []
    for name in dict.fromkeys(wanted):
        match = next((m for m in members if name in (m.name, m.address)), None)
        if match is None:
            unnamed = [m.address for m in members if not m.name and m.address]
            hint = f" (nodes that did not answer: {', '.join(unnamed)})" if unnamed else ""
            match = FleetMember(
                "",
                name,
                failure=NodeFailure(NODE_NOT_FOUND, f"no reachable node is named {name!r}{hint}"),
            )
        chosen.append(match)
    return chosen


@dataclass(frozen=True, slots=True)
class NodeImagesChange:
    """One node's RemoveImageOnNodes or PruneImagesOnNodes outcome: done, nothing to do
    (`skipped`, with its reason in `failure`), or failed."""

    address: str
    node: str = ""
    untagged: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    space_reclaimed_bytes: int = 0
    failure: NodeFailure | None = None
    skipped: bool = False
    local: bool = False
