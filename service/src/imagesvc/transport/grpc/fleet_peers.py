"""Calls to the fleet's peers: FleetService with `local_only` set, on a channel per peer,
with this server's own credentials (the fleet token as bearer, the server's certificate
under mutual TLS) and never anything of the caller's but the request id. A peer's
failure becomes its typed NodeFailure (core/fleet.py)."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.rpc import error_details_pb2, status_pb2

from imagesvc.core.fleet import (
    NODE_DENIED,
    NODE_ERROR,
    NODE_TIMEOUT,
    NODE_UNREACHABLE,
    NodeFailure,
)
from imagesvc.core.fleet_pull import NodeProgress, NodePulled
from imagesvc.transport.request_id import REQUEST_ID_KEY, current_request_id
from imagesvc.v1 import fleet_service_pb2 as pb
from imagesvc.v1 import fleet_service_pb2_grpc

log = logging.getLogger(__name__)

_STATUS_DETAILS_KEY = "grpc-status-details-bin"
# A stopped peer must fail at once, not wait for a connection within the deadline.
_CHANNEL_OPTIONS = [
    ("grpc.enable_retries", 0),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    """What this server presents to its peers."""

    token_file: str | None = None
    ca_file: str | None = None  # None: plain gRPC
    cert_file: str | None = None  # with key_file: the client certificate under mTLS
    key_file: str | None = None
    # The name peers' certificates are checked against; None: the address dialled.
    server_name: str | None = None

    def token(self) -> str | None:
        """Read on every call, so that a rotated Secret applies at once."""
        if not self.token_file:
            return None
        return Path(self.token_file).read_text().strip() or None

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        if not self.ca_file:
            return None
        key = Path(self.key_file).read_bytes() if self.key_file and self.cert_file else None
        chain = Path(self.cert_file).read_bytes() if key is not None and self.cert_file else None
        return grpc.ssl_channel_credentials(
            root_certificates=Path(self.ca_file).read_bytes(),
            private_key=key,
            certificate_chain=chain,
        )


class PeerClient:
    """A channel per peer address, kept while the server runs."""

    def __init__(self, credentials: PeerCredentials) -> None:
        self._credentials = credentials
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _stub(self, address: str) -> fleet_service_pb2_grpc.FleetServiceAsyncStub:
        channel = self._channels.get(address)
        if channel is None:
            secure = self._credentials.channel_credentials()
            options: list[tuple[str, str | int]] = list(_CHANNEL_OPTIONS)
            if self._credentials.server_name:
                options.append(("grpc.ssl_target_name_override", self._credentials.server_name))
            channel = (
                grpc.aio.secure_channel(address, secure, options=options)
                if secure is not None
                else grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS)
            )
            self._channels[address] = channel
        stub: fleet_service_pb2_grpc.FleetServiceAsyncStub = (
            fleet_service_pb2_grpc.FleetServiceStub(channel)
        )
        return stub

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        metadata: list[tuple[str, str]] = []
        if request_id := current_request_id.get():
            metadata.append((REQUEST_ID_KEY, request_id))
        if token := self._credentials.token():
            metadata.append(("authorization", f"Bearer {token}"))
        return tuple(metadata)

    async def list_node(self, address: str, seconds: float) -> pb.Node:
        try:
            response = await self._stub(address).ListNodes(
                pb.ListNodesRequest(local_only=True), metadata=self._metadata(), timeout=seconds
            )
        except grpc.aio.AioRpcError as error:
            raise failure_of(address, error) from None
        if len(response.nodes) != 1:
            raise NodeFailure(NODE_ERROR, f"node {address} answered {len(response.nodes)} nodes")
        return response.nodes[0]

    async def find_image(self, address: str, image: str, seconds: float) -> pb.NodeImage:
        try:
            response = await self._stub(address).FindImage(
                pb.FindImageRequest(image=image, local_only=True),
                metadata=self._metadata(),
                timeout=seconds,
            )
        except grpc.aio.AioRpcError as error:
            raise failure_of(address, error) from None
        if len(response.nodes) != 1:
            raise NodeFailure(NODE_ERROR, f"node {address} answered {len(response.nodes)} nodes")
        return response.nodes[0]

    async def pull_on_node(
        self, address: str, request: pb.PullImageOnNodesRequest
    ) -> AsyncGenerator[NodeProgress | NodePulled, None]:
        """One pull on the peer (`request` with local_only set): its progress, then its
        end; its failure as NodeFailure. No deadline of its own: the fleet pull's node
        timeout and stall timeout cancel it, and cancelling ends the peer's pull."""
        call = self._stub(address).PullImageOnNodes(request, metadata=self._metadata())
        try:
            async for response in call:
                if response.HasField("summary"):
                    yield _pulled(address, response.summary)
                    return
                node = response.node
                if node.phase == pb.NODE_PULL_PHASE_PULLING:
                    yield NodeProgress(node.bytes_done, node.bytes_total, node.percent)
        except grpc.aio.AioRpcError as error:
            raise failure_of(address, error) from None
        finally:
            call.cancel()
        raise NodeFailure(NODE_ERROR, f"node {address} ended its pull without a summary")

    async def remove_on_node(
        self, address: str, request: pb.RemoveImageOnNodesRequest, seconds: float
    ) -> tuple[str, pb.NodeImagesChange]:
        try:
            response = await self._stub(address).RemoveImageOnNodes(
                request, metadata=self._metadata(), timeout=seconds
            )
        except grpc.aio.AioRpcError as error:
            raise failure_of(address, error) from None
        return _only_change(address, response.summary)

    async def prune_on_node(
        self, address: str, request: pb.PruneImagesOnNodesRequest, seconds: float
    ) -> tuple[str, pb.NodeImagesChange]:
        try:
            response = await self._stub(address).PruneImagesOnNodes(
                request, metadata=self._metadata(), timeout=seconds
            )
        except grpc.aio.AioRpcError as error:
            raise failure_of(address, error) from None
        return _only_change(address, response.summary)

    async def keep_only(self, addresses: Iterable[str]) -> None:
        """Closes the channels of peers no longer listed (a DaemonSet's pods come and go
        with new addresses)."""
        current = set(addresses)
        for address in [a for a in self._channels if a not in current]:
            await self._channels.pop(address).close()

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.close()


def failure_of(address: str, error: grpc.aio.AioRpcError) -> NodeFailure:
    """A peer's status as that node's failure."""
    code = error.code()
    where = f"node {address}"
    if code is grpc.StatusCode.UNAVAILABLE and _error_reason(error) in ("", None):
        return NodeFailure(NODE_UNREACHABLE, f"{where} is unreachable: {error.details()}")
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return NodeFailure(NODE_TIMEOUT, f"{where} did not answer in time")
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        # The peer refused this server's fleet credentials (never the caller's).
        return NodeFailure(NODE_DENIED, f"{where} refused this server's fleet credentials")
    reason = _error_reason(error)
    if reason:
        return NodeFailure(reason, f"{where}: {error.details()}")
    return NodeFailure(NODE_ERROR, f"{where}: {code.name}: {error.details()}")


def _only_change(address: str, summary: pb.ImagesOnNodesSummary) -> tuple[str, pb.NodeImagesChange]:
    """A peer's one-node summary: which list its entry is in, and the entry."""
    entries = [
        (kind, change)
        for kind in ("succeeded", "skipped", "failed")
        for change in getattr(summary, kind)
    ]
    if len(entries) != 1:
        raise NodeFailure(NODE_ERROR, f"node {address} answered {len(entries)} nodes")
    return entries[0]


def _pulled(address: str, summary: pb.PullImageOnNodesSummary) -> NodePulled:
    """A peer's one-node summary as its end, or its failure."""
    for skipped, nodes in ((False, summary.succeeded), (True, summary.skipped)):
        for node in nodes:
            return NodePulled(
                skipped=skipped, image_id=node.image_id, digest=node.digest, name=node.node
            )
    for node in summary.failed:
        # The peer's own ErrorInfo reason, mapped again here (the one table).
        raise NodeFailure(node.error_cause or node.error.reason, node.error.message)
    raise NodeFailure(NODE_ERROR, f"node {address} answered an empty summary")


def _error_reason(error: grpc.aio.AioRpcError) -> str | None:
    """The ErrorInfo reason of imagesvc's status details, if any."""
    for key, value in error.trailing_metadata() or ():
        if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info) and info.domain == "imagesvc":
                return str(info.reason)
    return None
