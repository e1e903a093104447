"""Who the peers are: `--fleet-peers` is either `dns:///NAME:PORT` (every A and AAAA
record of NAME is a peer; `dns://SERVER:PORT/NAME:PORT` asks that DNS server instead of
the system's resolver) or a comma-separated `host:port` list. DNS answers are re-resolved
on every fleet call once they are older than a few seconds; a failed resolution keeps
the last good answer."""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
import struct
import time
from dataclasses import dataclass

_A, _AAAA = 1, 28
_DNS_TIMEOUT_SECONDS = 2.0


class DiscoveryError(Exception):
    """The peers cannot be listed now (the DNS name does not resolve)."""


@dataclass(frozen=True, slots=True)
class DnsTarget:
    name: str
    port: int
    server: tuple[str, int] | None  # None: the system's resolver


def split_host_port(text: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port`."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{text!r} is not host:port")
    return host.strip("[]"), int(port)


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_peers(spec: str) -> tuple[str, ...] | DnsTarget:
    """The static peer list, or the DNS name to resolve. ValueError when malformed."""
    spec = spec.strip()
    if spec.startswith("dns://"):
        authority, slash, target = spec[len("dns://") :].partition("/")
        if not slash:
            raise ValueError(f"{spec!r}: expected dns:///NAME:PORT or dns://SERVER:PORT/NAME:PORT")
        name, port = split_host_port(target)
        server = split_host_port(authority) if authority else None
        return DnsTarget(name, port, server)
    peers = [item.strip() for item in spec.split(",") if item.strip()]
    return tuple(join_host_port(*split_host_port(peer)) for peer in peers)


class PeerDiscovery:
    """The current peer addresses (`host:port`), sorted."""

    def __init__(self, spec: str, *, cache_seconds: float = 5.0) -> None:
        self._target = parse_peers(spec)
        self._cache_seconds = cache_seconds
        self._cached: tuple[str, ...] | None = None
        self._resolved_at = 0.0

    @property
    def source(self) -> str:
        target = self._target
        return f"dns:{target.name}:{target.port}" if isinstance(target, DnsTarget) else "static"

    async def peers(self) -> tuple[str, ...]:
        target = self._target
        if not isinstance(target, DnsTarget):
            return target
        now = time.monotonic()
        if self._cached is not None and now - self._resolved_at < self._cache_seconds:
            return self._cached
        try:
            hosts = await _resolve(target)
        except (OSError, DiscoveryError) as error:
            if self._cached is not None:
                return self._cached
            raise DiscoveryError(f"cannot resolve {target.name}: {error}") from error
        self._cached = tuple(sorted(join_host_port(host, target.port) for host in hosts))
        self._resolved_at = now
        return self._cached


async def _resolve(target: DnsTarget) -> set[str]:
    loop = asyncio.get_running_loop()
    if target.server is None:
        infos = await loop.getaddrinfo(target.name, target.port, type=socket.SOCK_STREAM)
        return {str(info[4][0]) for info in infos}
    server = target.server
    found: set[str] = set()
    problems: list[str] = []
    for record_type in (_A, _AAAA):
        try:
            found |= await loop.run_in_executor(None, _query, server, target.name, record_type)
        except (OSError, DiscoveryError) as error:
            # A server may refuse the type it has no record of (dnsmasq without upstream).
            problems.append(str(error) or type(error).__name__)
    if not found:
        why = f" ({'; '.join(problems)})" if problems else ""
        raise DiscoveryError(
            f"no A or AAAA record for {target.name} at {server[0]}:{server[1]}{why}"
        )
    return found


def _query(server: tuple[str, int], name: str, record_type: int) -> set[str]:
    """One DNS question over UDP (RFC 1035), the addresses of the answer."""
    ident = secrets.randbelow(1 << 16)
    question = b"".join(
        bytes([len(label)]) + label.encode("idna") for label in name.rstrip(".").split(".")
    )
    packet = struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question + b"\0"
    packet += struct.pack(">HH", record_type, 1)
    family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(_DNS_TIMEOUT_SECONDS)
        sock.sendto(packet, server)
        while True:
            reply, _ = sock.recvfrom(4096)
            if len(reply) >= 12 and struct.unpack(">H", reply[:2])[0] == ident:
                break
    _, flags, questions, answers, _, _ = struct.unpack(">HHHHHH", reply[:12])
    rcode = flags & 0xF
    if rcode == 3:  # NXDOMAIN
        return set()
    if rcode:
        raise DiscoveryError(f"DNS server answered rcode {rcode}")
    position = 12
    for _ in range(questions):
        position = _skip_name(reply, position) + 4
    found: set[str] = set()
    for _ in range(answers):
        position = _skip_name(reply, position)
        kind, _, _, length = struct.unpack(">HHIH", reply[position : position + 10])
        position += 10
        data = reply[position : position + length]
        position += length
        if kind == _A and length == 4:
            found.add(str(ipaddress.IPv4Address(data)))
        elif kind == _AAAA and length == 16:
            found.add(str(ipaddress.IPv6Address(data)))
    return found


def _skip_name(message: bytes, position: int) -> int:
    while True:
        length = message[position]
        if length == 0:
            return position + 1
        if length & 0xC0 == 0xC0:  # a compression pointer ends the name
            return position + 2
        position += length + 1
