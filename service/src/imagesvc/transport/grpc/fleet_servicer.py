"""imagesvc.v1.FleetService: this node answers for itself locally (core/fleet_node.py)
and for each peer through `PeerClient`, all through the one fan-out (core/fleet.py).

Authorized with the role table like ImageService (the `fleet` role), and every call is
audited: the receiving node names the peers it asked, a peer (a `local_only` call)
names the node it answered for and, through the identity, the server that asked."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable

import grpc

from imagesvc.core.access import authorize
from imagesvc.core.audit import AuditEvent, Value
from imagesvc.core.errors import ImageServiceError, InvalidArgumentError, Reason
from imagesvc.core.fleet import (
    NODE_UNREACHABLE,
    Drift,
    FanOutLimits,
    NodeFailure,
    NodeImage,
    NodeStatus,
    drift_of,
    fan_out,
)
from imagesvc.core.fleet_discovery import DiscoveryError, PeerDiscovery
from imagesvc.core.fleet_node import LocalNode
from imagesvc.core.identity import credential_problem, current_identity, current_origin
from imagesvc.core.kept_images import KeptImage, KeptState
from imagesvc.transport.grpc import convert
from imagesvc.transport.grpc.errors import status_code_for
from imagesvc.transport.grpc.fleet_peers import PeerClient
from imagesvc.v1 import fleet_service_pb2 as pb
from imagesvc.v1 import fleet_service_pb2_grpc

FLEET_SERVICE_NAME = pb.DESCRIPTOR.services_by_name["FleetService"].full_name

Context = grpc.aio.ServicerContext[object, object]

_REFUSALS = frozenset({Reason.CALLER_UNAUTHENTICATED, Reason.CALLER_PERMISSION_DENIED})


@contextlib.asynccontextmanager
async def _audited(rpc: str, **subject: Value) -> AsyncIterator[AuditEvent]:
    """Authorizes the call and writes its audit line at the end, whatever the outcome."""
    started = time.monotonic()
    event = AuditEvent(rpc, current_identity.get(), current_origin.get(), dict(subject))
    outcome, code, reason = "ok", "", ""
    try:
        authorize(rpc, event.identity, credential_problem.get())
        yield event
    except ImageServiceError as error:
        code, reason = status_code_for(error).name, str(error.reason)
        outcome = "denied" if error.reason in _REFUSALS else "failed"
        raise
    except BaseException:
        outcome, code = "failed", grpc.StatusCode.INTERNAL.name
        raise
    finally:
        duration_ms = (time.monotonic() - started) * 1000
        event.write(outcome, code=code, reason=reason, duration_ms=duration_ms)


class FleetServiceServicer(fleet_service_pb2_grpc.FleetServiceServicer):
    def __init__(
        self,
        local: Callable[[], LocalNode],
        discovery: PeerDiscovery,
        peers: PeerClient,
        limits: FanOutLimits,
    ) -> None:
        """`local`: this node, known once the server has bound its port."""
        self._local = local
        self._discovery = discovery
        self._peers = peers
        self._limits = limits

    async def _addresses(self, event: AuditEvent) -> tuple[list[str], list[str]]:
        """The peers to ask (never this node's own address), and sources that failed."""
        own = self._local().address
        try:
            found = await self._discovery.peers()
        except DiscoveryError as error:
            event.result["discovery_failed"] = str(error)
            return [], [str(error)]
        asked = [address for address in found if address != own]
        event.subject["peers"] = asked
        await self._peers.keep_only(asked)
        return asked, []

    async def ListNodes(
        self, request: pb.ListNodesRequest, context: Context
    ) -> pb.ListNodesResponse:
        local = self._local()
        async with _audited(
            "ListNodes", node=local.name, local_only=str(request.local_only).lower()
        ) as event:
            own = await local.status()
            nodes = [_node(own, local=True)]
            if not request.local_only:
                addresses, problems = await self._addresses(event)
                outcomes = await fan_out(addresses, self._list_peer, self._limits)
                for outcome in outcomes:
                    if outcome.value is not None:
                        nodes.append(outcome.value)
                    else:
                        nodes.append(_node(NodeStatus(outcome.address, failure=outcome.failure)))
                nodes.extend(_node(NodeStatus("", failure=_discovery(p))) for p in problems)
                event.result["ready"] = sum(1 for node in nodes if node.ready)
            return pb.ListNodesResponse(nodes=nodes)

    async def _list_peer(self, address: str) -> pb.Node:
        node = await self._peers.list_node(address, self._limits.node_timeout_seconds)
        node.address, node.local = address, False
        return node

    async def FindImage(
        self, request: pb.FindImageRequest, context: Context
    ) -> pb.FindImageResponse:
        local = self._local()
        async with _audited(
            "FindImage",
            node=local.name,
            image=request.image,
            local_only=str(request.local_only).lower(),
            check_registry=str(request.check_registry).lower(),
        ) as event:
            if not request.image:
                raise InvalidArgumentError("image is required", metadata={"field": "image"})
            registry_digest = ""
            if request.check_registry:
                # Once, here: peers are asked for their images only, never given the auth.
                reference, registry_digest = await local.registry_digest(
                    request.image, convert.optional_auth(request.HasField("auth"), request.auth)
                )
                event.result["registry_digest"] = registry_digest
            nodes = [_node_image(await local.find(request.image), local=True)]
            if not request.local_only:
                addresses, problems = await self._addresses(event)

                async def find(address: str) -> pb.NodeImage:
                    return await self._find_on_peer(address, request.image)

                for outcome in await fan_out(addresses, find, self._limits):
                    if outcome.value is not None:
                        nodes.append(outcome.value)
                    else:
                        nodes.append(
                            _node_image(NodeImage(outcome.address, failure=outcome.failure))
                        )
                nodes.extend(_node_image(NodeImage("", failure=_discovery(p))) for p in problems)
                event.result["present"] = sum(1 for node in nodes if node.present)
            if registry_digest:
                for node in nodes:
                    if node.present:
                        node.drift = _DRIFTS[
                            drift_of(reference, node.repo_digests, registry_digest)
                        ]
                event.result["stale"] = sum(1 for n in nodes if n.drift == pb.NodeImage.DRIFT_STALE)
            return pb.FindImageResponse(nodes=nodes, registry_digest=registry_digest)

    async def _find_on_peer(self, address: str, image: str) -> pb.NodeImage:
        found = await self._peers.find_image(address, image, self._limits.node_timeout_seconds)
        found.address, found.local = address, False
        return found


def _discovery(problem: str) -> NodeFailure:
    return NodeFailure(NODE_UNREACHABLE, f"the peers cannot be listed: {problem}")


def _error(failure: NodeFailure | None) -> pb.NodeError | None:
    return None if failure is None else pb.NodeError(reason=failure.reason, message=failure.message)


def _node(status: NodeStatus, *, local: bool = False) -> pb.Node:
    return pb.Node(
        name=status.name,
        address=status.address,
        ready=status.ready,
        error=_error(status.failure),
        engine_version=status.engine_version,
        engine_api_version=status.engine_api_version,
        image_count=status.image_count,
        images_size_bytes=status.images_size_bytes,
        local=local,
        kept_images=[_kept_image(kept) for kept in status.kept_images],
    )


_DRIFTS = {
    Drift.CURRENT: pb.NodeImage.DRIFT_CURRENT,
    Drift.STALE: pb.NodeImage.DRIFT_STALE,
    Drift.UNKNOWN: pb.NodeImage.DRIFT_UNKNOWN,
}

_KEPT_STATES = {
    KeptState.PRESENT: pb.KeptImage.STATE_PRESENT,
    KeptState.PULLING: pb.KeptImage.STATE_PULLING,
    KeptState.FAILED: pb.KeptImage.STATE_FAILED,
}


def _kept_image(kept: KeptImage) -> pb.KeptImage:
    failure = NodeFailure(kept.reason, kept.message) if kept.reason else None
    return pb.KeptImage(
        reference=kept.reference,
        state=_KEPT_STATES[kept.state],
        image_id=kept.image_id,
        error=_error(failure),
    )


def _node_image(found: NodeImage, *, local: bool = False) -> pb.NodeImage:
    return pb.NodeImage(
        node=found.node,
        address=found.address,
        present=found.present,
        image_id=found.image_id,
        repo_digests=list(found.repo_digests),
        repo_tags=list(found.repo_tags),
        error=_error(found.failure),
        local=local,
    )
