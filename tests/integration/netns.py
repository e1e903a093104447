"""A network namespace joined to this one by a veth pair that carries loopback-range
addresses, and an imagesvc serving inside it: a fleet node that a test can cut off by
setting the host end of the link down.

Linux drops 127.0.0.0/8 on any interface but `lo` unless `route_localnet` is set on it,
so both ends get `net.ipv4.conf.<dev>.route_localnet=1`. Each run picks its own names and
its own /30 (127.<100-199>.<0-255>.<4n>), so parallel runs do not collide.

While the link is down its connected route is gone, and without more the host's own
`local 127.0.0.0/8` route would take over the namespace's address: the host itself would
answer a connection to it with a reset, which no real node cut off does. A blackhole
route for the /30 (a higher metric than the link's, so only used while it is down) drops
those packets instead, as a pulled cable does: a connection already open hears nothing
more, and a new one fails at once (the route refuses it locally).
Needs root and iproute2 (`ip netns`); fails with the command and its error otherwise.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
import re
import secrets
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from devtools.served import ServedProcess


def run_ip(*args: str, namespace: str | None = None) -> None:
    """`ip ARGS` (in `namespace` when given); a failure names the command and its error."""
    command = ["ip", *(["-n", namespace] if namespace else []), *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(
            f"`{' '.join(command)}` failed ({done.returncode}): {done.stderr.strip()}"
            " (the network-namespace fleet test needs root and iproute2)"
        )


def _sysctl(key: str, value: str, namespace: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    command = [*prefix, "sysctl", "-qw", f"{key}={value}"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"`{' '.join(command)}` failed: {done.stderr.strip()}")


def _free_subnet() -> ipaddress.IPv4Network:
    """A /30 in 127.100.0.0-127.199.255.255 that no interface here uses."""
    listed = subprocess.run(
        ["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True
    ).stdout
    used = {ipaddress.IPv4Address(address) for address in re.findall(r"inet ([\d.]+)/", listed)}
    for _ in range(100):
        second, third, fourth = (
            random.randint(100, 199),
            random.randint(0, 255),
            random.randint(0, 63),
        )
        network = ipaddress.IPv4Network(f"127.{second}.{third}.{4 * fourth}/30")
        if not used.intersection(network):
            return network
    raise AssertionError("no free 127.x.y.z/30 for the veth pair")


@dataclass(frozen=True)
class VethNamespace:
    """The namespace `name`; `host_device` (host end, `host_address`) and the peer end
    inside it (`address`)."""

    name: str
    host_device: str
    host_address: str
    address: str

    def set_link(self, up: bool) -> None:
        run_ip("link", "set", self.host_device, "up" if up else "down")


@contextlib.contextmanager
def veth_namespace() -> Iterator[VethNamespace]:
    """A fresh namespace and veth pair, removed at the end whatever happened."""
    suffix = secrets.token_hex(4)
    name, host_device, peer_device = f"isv-{suffix}", f"isvh{suffix}", f"isvp{suffix}"
    network = _free_subnet()
    host_ip, peer_ip = (str(host) for host in network.hosts())
    created_namespace = created_link = created_route = False
    try:
        run_ip("netns", "add", name)
        created_namespace = True
        run_ip("link", "add", host_device, "type", "veth", "peer", "name", peer_device)
        created_link = True
        run_ip("link", "set", peer_device, "netns", name)
        run_ip("addr", "add", f"{host_ip}/30", "dev", host_device)
        run_ip("addr", "add", f"{peer_ip}/30", "dev", peer_device, namespace=name)
        _sysctl(f"net.ipv4.conf.{host_device}.route_localnet", "1")
        _sysctl(f"net.ipv4.conf.{peer_device}.route_localnet", "1", namespace=name)
        run_ip("link", "set", "lo", "up", namespace=name)
        run_ip("link", "set", peer_device, "up", namespace=name)
        run_ip("link", "set", host_device, "up")
        run_ip("route", "add", "blackhole", str(network), "metric", "4096")
        created_route = True
        yield VethNamespace(name, host_device, host_ip, peer_ip)
    finally:
        if created_route:
            run_ip("route", "del", "blackhole", str(network), "metric", "4096")
        if created_namespace:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        if created_link:
            # Gone with the namespace (a veth pair dies with either end); this only
            # catches a peer end that never moved into it.
            subprocess.run(["ip", "link", "del", host_device], capture_output=True, check=False)
        leftovers = subprocess.run(
            ["ip", "-o", "link", "show", host_device], capture_output=True, check=False
        )
        assert leftovers.returncode != 0, f"{host_device} was not removed"
        namespaces = Path("/run/netns")
        assert not (namespaces / name).exists(), f"namespace {name} was not removed"


class NamespacedServer(ServedProcess):
    """`imagesvc serve` inside `namespace` (`ip netns exec`), its gRPC port on
    `address`; `start()` returns once its gRPC health, called from the host over the
    veth pair, says SERVING. Its Engine is reached through the unix socket
    `docker_host`, which no network namespace hides."""

    def __init__(
        self, namespace: VethNamespace, port: int, docker_host: str, args: Sequence[str]
    ) -> None:
        super().__init__(
            docker_host,
            extra_args=args,
            grpc_address=f"{namespace.address}:{port}",
            http_address=f"{namespace.address}:0",
            wrapper=["ip", "netns", "exec", namespace.name],
            extra_env={"IMAGESVC_HEALTH_INTERVAL_SECONDS": "0.2"},
        )
        self.address = self.grpc_address
