"""A fleet of "nodes" on this machine for the fleet tests: each node its own sandboxed
dockerd and its own imagesvc on its own loopback address (one port for all), peers
found through a `host:port` list or a DNS server of the test's own (dnsmasq answering a
headless name with every node's address).

Tokens: only the first node knows the callers' tokens; every node knows the fleet token
the servers present to each other. So a peer that answers proves the caller's token was
not what reached it, and the peers' audit lines name the server's identity.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from devtools.sandbox import Engine
from imagesvc.core.credential_files import hash_token
from imagesvc.server import ThreadedServer
from tests.integration.conftest import server_settings

PEER_IDENTITY = "imagesvc-fleet"
DNS_NAME = "imagesvc-peers.fleet.test"


@dataclass(frozen=True)
class Credentials:
    caller: str  # fleet role, known to the first node only
    viewer: str  # pusher role (below fleet), known to the first node only
    peer: str  # the servers' own, known to every node
    admin: str  # admin role, known to the first node only
    first_tokens: Path
    peer_tokens: Path
    peer_token_file: Path

    def metadata(self, token: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {token}"),)


@dataclass
class Fleet:
    port: int
    hosts: list[str]
    servers: list[ThreadedServer]
    stopped: set[int] = field(default_factory=set)

    def address(self, index: int) -> str:
        return f"{self.hosts[index]}:{self.port}"

    def stop(self, *indexes: int) -> None:
        """Stops these nodes' imagesvc (all by default), each once."""
        for index in indexes or range(len(self.servers)):
            if index not in self.stopped:
                self.stopped.add(index)
                self.servers[index].stop()


def token_entry(identity: str, role: str, token: str) -> dict[str, object]:
    return {"identity": identity, "roles": [role], "sha256": hash_token(token)}


def write_json(path: Path, document: object) -> None:
    path.write_text(json.dumps(document))


def new_credentials(folder: Path, *, peer_role: str = "fleet") -> Credentials:
    """Tokens files and the fleet token; `peer_role`: the servers' own identity's role on
    every node (admin for RemoveImageOnNodes / PruneImagesOnNodes to act on peers)."""
    caller, viewer, peer, admin = (secrets.token_urlsafe(32) for _ in range(4))
    first, others, token_file = (
        folder / "first.json",
        folder / "peers.json",
        folder / "fleet-token",
    )
    peer_entry = token_entry(PEER_IDENTITY, peer_role, peer)
    write_json(
        first,
        {
            "tokens": [
                token_entry("fleet-caller", "fleet", caller),
                token_entry("viewer-caller", "pusher", viewer),
                token_entry("admin-caller", "admin", admin),
                peer_entry,
            ]
        },
    )
    write_json(others, {"tokens": [peer_entry]})
    token_file.write_text(peer + "\n")
    token_file.chmod(0o600)
    return Credentials(caller, viewer, peer, admin, first, others, token_file)


@contextlib.contextmanager
def started_engines(count: int, prefix: str = "isv-fleet-") -> Iterator[list[Engine]]:
    """`count` dockerds, started at once, stopped and removed at the end."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    started = [Engine(base / f"node{n}") for n in range(count)]
    try:
        with ThreadPoolExecutor(len(started)) as pool:
            list(pool.map(lambda engine: engine.start(), started))
        yield started
    finally:
        for engine in started:
            engine.stop()
        for engine in started:
            assert not engine.leftover_processes()
        shutil.rmtree(base)


@contextlib.contextmanager
def dns_server(port: int, hosts: Sequence[str]) -> Iterator[None]:
    """dnsmasq on 127.0.0.1:`port`, answering DNS_NAME with every address of `hosts`
    (a headless Service's records) and nothing else."""
    records = [f"--host-record={DNS_NAME},{host}" for host in hosts]
    process = subprocess.Popen(
        [
            "dnsmasq",
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            f"--port={port}",
            "--local=/fleet.test/",
            "--pid-file=",
            "--log-facility=-",
            *records,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.3)
        assert process.poll() is None, "dnsmasq did not start"
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


def static_peers(hosts: Sequence[str]) -> str:
    """`--fleet-peers` as a `host:PORT` list (PORT replaced by start_fleet)."""
    return ",".join(f"{host}:PORT" for host in hosts)


def dns_peers(dns_port: int) -> str:
    return f"dns://127.0.0.1:{dns_port}/{DNS_NAME}:PORT"


def start_fleet(
    hosts: Sequence[str],
    engines: Sequence[Engine],
    credentials: Credentials,
    peers: str,
    port: int,
    **settings: object,
) -> Fleet:
    """One imagesvc per (host, engine), named node-0, node-1, ...; the first knows the
    callers' tokens. `settings` apply to every node."""
    servers: list[ThreadedServer] = []
    for index, (host, engine) in enumerate(zip(hosts, engines, strict=True)):
        tokens = credentials.first_tokens if index == 0 else credentials.peer_tokens
        values: dict[str, object] = {
            "grpc_address": f"{host}:{port}",
            "http_address": f"{host}:0",
            "tokens_file": str(tokens),
            "node_name": f"node-{index}",
            "fleet_peers": peers.replace("PORT", str(port)),
            "fleet_token_file": str(credentials.peer_token_file),
        }
        values.update(settings)
        servers.append(ThreadedServer(server_settings(engine.host, **values)))
    return Fleet(port, list(hosts), servers)
