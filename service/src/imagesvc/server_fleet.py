"""The fleet's wiring from the settings: this node's name and address, the peers'
discovery, the credentials presented to them, and the FleetService servicer."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import Executor

from imagesvc.config import Settings, SettingsError
from imagesvc.core.fleet import FanOutLimits
from imagesvc.core.fleet_discovery import PeerDiscovery, join_host_port, split_host_port
from imagesvc.core.fleet_node import LocalNode
from imagesvc.core.image_core import ImageCore
from imagesvc.core.kept_images import KeptImage
from imagesvc.core.port import DockerPort
from imagesvc.transport.grpc.fleet_peers import PeerClient, PeerCredentials
from imagesvc.transport.grpc.fleet_servicer import FleetServiceServicer

_EVERY_ADDRESS = frozenset({"", "0.0.0.0", "::", "[::]"})  # noqa: S104 (compared, never bound)


def node_name(settings: Settings) -> str:
    """`--node-name` (or NODE_NAME, the downward API's), else the host name."""
    return settings.node_name or socket.gethostname()


def fleet_address(settings: Settings, bound_port: int) -> str:
    """This node's gRPC address as its peers know it."""
    if settings.fleet_address:
        return join_host_port(*split_host_port(settings.fleet_address))
    host, _ = split_host_port(settings.grpc_address)
    if host in _EVERY_ADDRESS:
        host = os.environ.get("POD_IP") or socket.gethostname()
    return join_host_port(host, bound_port)


class ServerFleet:
    """Built with the server; `bind(port)` once its gRPC port is known."""

    def __init__(
        self,
        settings: Settings,
        core: ImageCore,
        engine: DockerPort,
        executor: Executor,
        daemon_up: Callable[[], bool],
        *,
        kept_images: Callable[[], Sequence[KeptImage]] = tuple,
    ) -> None:
        """`kept_images`: this node's kept images and their states (ListNodes)."""
        try:
            discovery = PeerDiscovery(
                settings.fleet_peers, cache_seconds=settings.fleet_dns_cache_seconds
            )
            if settings.fleet_address:
                split_host_port(settings.fleet_address)
        except ValueError as exc:
            raise SettingsError(f"--fleet-peers / --fleet-address: {exc}") from None
        if (
            settings.fleet_parallelism < 1
            or settings.fleet_node_timeout_seconds <= 0
            or settings.fleet_pull_timeout_seconds <= 0
        ):
            raise SettingsError(
                "--fleet-parallelism must be at least 1, --fleet-node-timeout-seconds and"
                " --fleet-pull-timeout-seconds over 0"
            )
        mutual_tls = bool(settings.tls_client_ca_file)
        self.peers = PeerClient(
            PeerCredentials(
                token_file=settings.fleet_token_file,
                ca_file=settings.fleet_tls_ca_file,
                server_name=settings.fleet_tls_server_name,
                cert_file=settings.tls_cert_file if mutual_tls else None,
                key_file=settings.tls_key_file if mutual_tls else None,
            )
        )
        self._settings = settings
        self._node_parts = (core, engine, executor, daemon_up)
        self._kept_images = kept_images
        self._local: LocalNode | None = None
        self.servicer = FleetServiceServicer(
            self._local_node,
            discovery,
            self.peers,
            FanOutLimits(
                parallelism=settings.fleet_parallelism,
                node_timeout_seconds=settings.fleet_node_timeout_seconds,
            ),
            pull_timeout_seconds=settings.fleet_pull_timeout_seconds,
        )

    def _local_node(self) -> LocalNode:
        if self._local is None:
            raise RuntimeError("ServerFleet.bind() was not called")
        return self._local

    def bind(self, port: int) -> None:
        address = fleet_address(self._settings, port)
        self._local = LocalNode(
            node_name(self._settings), address, *self._node_parts, kept_images=self._kept_images
        )

    async def close(self) -> None:
        await self.peers.close()
