"""imagesvc.v1.FleetService: this node answers for itself locally (core/fleet_node.py)
and for each peer through `PeerClient`, all through the one fan-out (core/fleet.py).

Authorized with the role table like ImageService (the `fleet` role), and every call is
audited: the receiving node names the peers it asked, a peer (a `local_only` call)
names the node it answered for and, through the identity, the server that asked."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

import grpc

from imagesvc.core.access import authorize
from imagesvc.core.audit import AuditEvent, Value
from imagesvc.core.errors import ImageServiceError, InvalidArgumentError, Reason
from imagesvc.core.fleet import (
    NODE_UNREACHABLE,
    Drift,
    FanOutLimits,
    FleetMember,
    NodeFailure,
    NodeImage,
    NodeImagesChange,
    NodeStatus,
    drift_of,
    fan_out,
    select_members,
)
from imagesvc.core.fleet_discovery import DiscoveryError, PeerDiscovery
from imagesvc.core.fleet_node import LocalNode
from imagesvc.core.fleet_pull import (
    DEFAULT_BACKOFF_SECONDS,
    DEFAULT_RETRIES,
    DEFAULT_STALL_TIMEOUT_SECONDS,
    Attempt,
    FleetPullOptions,
    FleetPullSummary,
    NodeProgress,
    NodePulled,
    NodePullUpdate,
    Probe,
    PullPhase,
    PullTarget,
    check_retries,
    check_seconds,
    failure_from,
    fleet_pull,
    parallelism_of,
)
from imagesvc.core.identity import credential_problem, current_identity, current_origin
from imagesvc.core.kept_images import KeptImage, KeptState
from imagesvc.core.models import RegistryAuth
from imagesvc.core.references import parse_reference
from imagesvc.transport.grpc import convert
from imagesvc.transport.grpc.errors import status_code_for
from imagesvc.transport.grpc.fleet_peers import PeerClient
from imagesvc.v1 import fleet_service_pb2 as pb
from imagesvc.v1 import fleet_service_pb2_grpc

FLEET_SERVICE_NAME = pb.DESCRIPTOR.services_by_name["FleetService"].full_name

Context = grpc.aio.ServicerContext[object, object]

# A node's RemoveImageOnNodes / PruneImagesOnNodes outcome: "succeeded", "skipped" or
# "failed" (the summary's list it goes in), and the node's entry.
Outcome = tuple[str, pb.NodeImagesChange]

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
        *,
        pull_timeout_seconds: float = 600.0,
    ) -> None:
        """`local`: this node, known once the server has bound its port."""
        self._local = local
        self._discovery = discovery
        self._peers = peers
        self._limits = limits
        self._pull_timeout_seconds = pull_timeout_seconds

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
                reference, registry_digest = await local.drift_digest(
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

    async def PullImageOnNodes(
        self, request: pb.PullImageOnNodesRequest, context: Context
    ) -> AsyncIterator[pb.PullImageOnNodesResponse]:
        local = self._local()
        async with _audited(
            "PullImageOnNodes",
            node=local.name,
            reference=request.reference,
            nodes=list(request.nodes),
            local_only=str(request.local_only).lower(),
        ) as event:
            _check_pull(request)
            auth = convert.optional_auth(request.HasField("auth"), request.auth)
            if request.local_only:
                # A peer's part: one attempt here; the receiving node times and retries it.
                targets = [self._local_target(request, auth, request.registry_digest)]
                options = FleetPullOptions(1, None, stall_timeout_seconds=0, retries=0)
            else:
                node_timeout = request.node_timeout_seconds or self._pull_timeout_seconds
                targets = await self._pull_targets(request, auth, node_timeout, event)
                options = FleetPullOptions(
                    parallelism=parallelism_of(
                        request.parallelism, len(targets), self._limits.parallelism
                    ),
                    node_timeout_seconds=node_timeout,
                    stall_timeout_seconds=request.stall_timeout_seconds
                    or DEFAULT_STALL_TIMEOUT_SECONDS,
                    retries=request.retries if request.HasField("retries") else DEFAULT_RETRIES,
                    backoff_seconds=request.retry_backoff_seconds or DEFAULT_BACKOFF_SECONDS,
                    stop_on_first_failure=request.completion_policy
                    == pb.COMPLETION_POLICY_STOP_ON_FIRST_FAILURE,
                )
            items = fleet_pull(targets, options)
            async with contextlib.aclosing(items):
                async for item in items:
                    if isinstance(item, FleetPullSummary):
                        event.result.update(
                            succeeded=len(item.succeeded),
                            skipped=len(item.skipped),
                            failed=len(item.failed),
                            cancelled=len(item.cancelled),
                        )
                        yield pb.PullImageOnNodesResponse(summary=_summary(item))
                    else:
                        yield pb.PullImageOnNodesResponse(node=_node_pull(item))

    def _local_target(
        self, request: pb.PullImageOnNodesRequest, auth: RegistryAuth | None, digest: str
    ) -> PullTarget:
        local = self._local()

        def attempt() -> AsyncGenerator[NodeProgress | NodePulled, None]:
            return local.pull(
                request.reference, platform=request.platform, auth=auth, registry_digest=digest
            )

        return PullTarget(local.address, local.name, attempt=attempt, local=True)

    async def _members(self, node_timeout_seconds: float, event: AuditEvent) -> list[FleetMember]:
        """This node, then every peer as a listing of them found it (named; a peer that
        does not answer within the node timeout fails at once, and so does one whose
        daemon is down), then the discovery's failures."""
        local = self._local()
        addresses, problems = await self._addresses(event)
        listing = FanOutLimits(
            self._limits.parallelism,
            min(self._limits.node_timeout_seconds, node_timeout_seconds),
        )
        members = [FleetMember(local.address, local.name, local=True)]
        for outcome in await fan_out(addresses, self._list_peer, listing):
            node = outcome.value
            if node is None:
                unlisted = outcome.failure or NodeFailure(NODE_UNREACHABLE, "no answer")
                members.append(FleetMember(outcome.address, failure=unlisted))
            elif not node.ready:
                down = NodeFailure(node.error.reason, node.error.message)
                members.append(FleetMember(outcome.address, node.name, failure=down))
            else:
                members.append(FleetMember(outcome.address, node.name))
        members.extend(FleetMember("", failure=_discovery(problem)) for problem in problems)
        return members

    async def _pull_targets(
        self,
        request: pb.PullImageOnNodesRequest,
        auth: RegistryAuth | None,
        node_timeout_seconds: float,
        event: AuditEvent,
    ) -> list[PullTarget]:
        """The selected nodes; each pulls at the digest this node resolved once (or fails
        unasked with the registry's refusal, which every node would meet)."""
        local = self._local()
        # A registry that holds its answer back must not hold the whole call: past this
        # bound, no digest (every node pulls, under its own stall and node timeouts).
        resolving = min(
            node_timeout_seconds, request.stall_timeout_seconds or DEFAULT_STALL_TIMEOUT_SECONDS
        )
        digest, everywhere = "", None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(resolving):
                digest, everywhere = await local.registry_digest(request.reference, auth)
        members = select_members(await self._members(node_timeout_seconds, event), request.nodes)
        peer_request = pb.PullImageOnNodesRequest(
            reference=request.reference,
            platform=request.platform,
            auth=request.auth if request.HasField("auth") else None,
            local_only=True,
            registry_digest=digest,
        )
        targets: list[PullTarget] = []
        for member in members:
            failure = member.failure or everywhere
            if failure is not None:
                targets.append(
                    PullTarget(
                        member.address,
                        member.name,
                        failure=failure_from(failure),
                        local=member.local,
                    )
                )
            elif member.local:
                targets.append(self._local_target(request, auth, digest))
            else:
                targets.append(
                    PullTarget(
                        member.address,
                        member.name,
                        attempt=self._peer_attempt(member.address, peer_request),
                        probe=self._peer_probe(member.address),
                    )
                )
        return targets

    def _peer_attempt(self, address: str, request: pb.PullImageOnNodesRequest) -> Attempt:
        return lambda: self._peers.pull_on_node(address, request)

    def _peer_probe(self, address: str) -> Probe:
        return lambda: self._peers.list_node(address, self._limits.node_timeout_seconds)

    async def RemoveImageOnNodes(
        self, request: pb.RemoveImageOnNodesRequest, context: Context
    ) -> pb.RemoveImageOnNodesResponse:
        local = self._local()
        async with _audited(
            "RemoveImageOnNodes",
            node=local.name,
            image=request.image,
            nodes=list(request.nodes),
            local_only=str(request.local_only).lower(),
        ) as event:
            if not request.image:
                raise InvalidArgumentError("image is required", metadata={"field": "image"})
            check_seconds("node_timeout_seconds", request.node_timeout_seconds)
            peer_request = pb.RemoveImageOnNodesRequest()
            peer_request.CopyFrom(request)
            peer_request.local_only = True

            async def here() -> NodeImagesChange:
                return await local.remove(
                    request.image, force=request.force, no_prune=request.no_prune
                )

            async def there(address: str, seconds: float) -> Outcome:
                return await self._peers.remove_on_node(address, peer_request, seconds)

            summary = await self._change_on_nodes(request, here, there, event)
            return pb.RemoveImageOnNodesResponse(summary=summary)

    async def PruneImagesOnNodes(
        self, request: pb.PruneImagesOnNodesRequest, context: Context
    ) -> pb.PruneImagesOnNodesResponse:
        local = self._local()
        async with _audited(
            "PruneImagesOnNodes",
            node=local.name,
            nodes=list(request.nodes),
            local_only=str(request.local_only).lower(),
        ) as event:
            check_seconds("node_timeout_seconds", request.node_timeout_seconds)
            options = convert.prune_options(request.prune)
            peer_request = pb.PruneImagesOnNodesRequest()
            peer_request.CopyFrom(request)
            peer_request.local_only = True

            async def here() -> NodeImagesChange:
                return await local.prune(options)

            async def there(address: str, seconds: float) -> Outcome:
                return await self._peers.prune_on_node(address, peer_request, seconds)

            summary = await self._change_on_nodes(request, here, there, event)
            return pb.PruneImagesOnNodesResponse(summary=summary)

    async def _change_on_nodes(
        self,
        request: pb.RemoveImageOnNodesRequest | pb.PruneImagesOnNodesRequest,
        here: Callable[[], Awaitable[NodeImagesChange]],
        there: Callable[[str, float], Awaitable[Outcome]],
        event: AuditEvent,
    ) -> pb.ImagesOnNodesSummary:
        """`here()` on this node and `there(address)` on each selected peer, in parallel
        (`--fleet-parallelism`), each within the node timeout; the summary."""
        if request.local_only:
            return _images_summary([_outcome(await here(), local=True)])
        seconds = request.node_timeout_seconds or self._limits.node_timeout_seconds
        members = select_members(await self._members(seconds, event), request.nodes)
        limits = FanOutLimits(self._limits.parallelism, seconds)
        by_key = {str(index): member for index, member in enumerate(members)}

        async def act(key: str) -> Outcome:
            member = by_key[key]
            if member.local:
                return _outcome(await here(), local=True)
            kind, change = await there(member.address, seconds)
            change.address, change.local = member.address, False
            return kind, change

        acting = [key for key, member in by_key.items() if member.failure is None]
        done = dict(zip(acting, await fan_out(acting, act, limits), strict=True))
        outcomes: list[Outcome] = []
        for key, member in by_key.items():
            outcome = done.get(key)
            if outcome is not None and outcome.value is not None:
                outcomes.append(outcome.value)
                continue
            failure = member.failure or (outcome.failure if outcome else None)
            unasked = NodeImagesChange(member.address, member.name, failure=failure)
            outcomes.append(_outcome(unasked, local=member.local))
        summary = _images_summary(outcomes)
        event.result.update(
            succeeded=len(summary.succeeded),
            skipped=len(summary.skipped),
            failed=len(summary.failed),
        )
        return summary


def _check_pull(request: pb.PullImageOnNodesRequest) -> None:
    """The request's own mistakes, before any node is asked."""
    if not request.reference:
        raise InvalidArgumentError("reference is required", metadata={"field": "reference"})
    parse_reference(request.reference)
    parallelism_of(request.parallelism, 1, 1)
    for name in ("node_timeout_seconds", "stall_timeout_seconds", "retry_backoff_seconds"):
        check_seconds(name, getattr(request, name))
    if request.HasField("retries"):
        check_retries(request.retries)


def _outcome(change: NodeImagesChange, *, local: bool) -> Outcome:
    message = pb.NodeImagesChange(
        node=change.node,
        address=change.address,
        untagged=list(change.untagged),
        deleted=list(change.deleted),
        space_reclaimed_bytes=change.space_reclaimed_bytes,
        error=_error(change.failure),
        local=local,
    )
    if change.skipped:
        return "skipped", message
    return ("failed" if change.failure else "succeeded"), message


def _images_summary(outcomes: list[Outcome]) -> pb.ImagesOnNodesSummary:
    summary = pb.ImagesOnNodesSummary(desired=len(outcomes))
    for kind, change in outcomes:
        getattr(summary, kind).append(change)
        summary.space_reclaimed_bytes += change.space_reclaimed_bytes
    summary.complete = not summary.failed
    return summary


def _node_pull(update: NodePullUpdate) -> pb.NodePull:
    failure = update.failure
    return pb.NodePull(
        node=update.name,
        address=update.address,
        phase=_PHASES[update.phase],
        attempt=update.attempt,
        bytes_done=update.bytes_done,
        bytes_total=update.bytes_total,
        percent=update.percent,
        error=None
        if failure is None
        else pb.NodeError(reason=failure.reason, message=failure.message),
        error_cause=failure.cause if failure else "",
        retry_in_seconds=update.retry_in_seconds,
        image_id=update.image_id,
        digest=update.digest,
        local=update.local,
    )


def _summary(summary: FleetPullSummary) -> pb.PullImageOnNodesSummary:
    return pb.PullImageOnNodesSummary(
        desired=summary.desired,
        succeeded=[_node_pull(u) for u in summary.succeeded],
        skipped=[_node_pull(u) for u in summary.skipped],
        failed=[_node_pull(u) for u in summary.failed],
        cancelled=[_node_pull(u) for u in summary.cancelled],
        stopped_early=summary.stopped_early,
        complete=summary.complete,
    )


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


_PHASES = {
    PullPhase.WAITING: pb.NODE_PULL_PHASE_WAITING,
    PullPhase.PULLING: pb.NODE_PULL_PHASE_PULLING,
    PullPhase.SUCCEEDED: pb.NODE_PULL_PHASE_SUCCEEDED,
    PullPhase.SKIPPED: pb.NODE_PULL_PHASE_SKIPPED,
    PullPhase.FAILED: pb.NODE_PULL_PHASE_FAILED,
    PullPhase.CANCELLED: pb.NODE_PULL_PHASE_CANCELLED,
}
