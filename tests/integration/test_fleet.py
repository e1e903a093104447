"""FleetService across real instances on real engines: three "nodes" on this machine,
each its own sandboxed dockerd and its own imagesvc on its own loopback address
(127.0.0.2 to 127.0.0.4, one port), found through a static peer list and through a DNS
server of the test's own (dnsmasq answering the headless name with all three addresses);
the harness (tokens, engines, DNS) is tests/integration/fleet_nodes.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from devtools.sandbox import Engine, build_busybox_image, free_port
from imagesvc.server import ThreadedServer
from imagesvc.v1 import fleet_service_pb2 as pb
from imagesvc.v1 import fleet_service_pb2_grpc
from imagesvc_client import AsyncImageClient, ImageClient
from tests.integration.certificates import CertificateAuthority, KeyPair, new_ca
from tests.integration.conftest import server_settings
from tests.integration.fleet_nodes import (
    DNS_NAME,
    PEER_IDENTITY,
    Credentials,
    Fleet,
    dns_server,
    new_credentials,
    started_engines,
    write_json,
)
from tests.integration.fleet_nodes import start_fleet as start_nodes
from tests.integration.log_capture import CapturedLogs, capture_logs

HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
# A peer that accepts connections and never speaks.
HUNG_HOST = "127.0.0.5"
IMAGE = "fleet-test/app:1.0"
NODE_TIMEOUT_SECONDS = 2.0
CLI = Path(sys.executable).with_name("imagesvc-cli")


@pytest.fixture(scope="module")
def logs() -> Iterator[CapturedLogs]:
    with capture_logs() as captured:
        yield captured


@pytest.fixture(scope="module")
def engines() -> Iterator[list[Engine]]:
    """Three dockerds, started at once; IMAGE built on the first two only."""
    with started_engines(len(HOSTS)) as started:
        for engine in started[:2]:
            build_busybox_image(engine, IMAGE)
        yield started


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    return new_credentials(tmp_path_factory.mktemp("fleet-tokens"))


def start_fleet(engines: list[Engine], credentials: Credentials, peers: str, port: int) -> Fleet:
    return start_nodes(
        HOSTS,
        engines,
        credentials,
        peers,
        port,
        fleet_node_timeout_seconds=NODE_TIMEOUT_SECONDS,
    )


@pytest.fixture(scope="module", params=["static", "dns"])
def fleet(
    request: pytest.FixtureRequest, engines: list[Engine], credentials: Credentials
) -> Iterator[Fleet]:
    """The three instances, peers from a `host:port` list or from DNS."""
    port = free_port()
    with contextlib.ExitStack() as stack:
        if request.param == "static":
            peers = ",".join(f"{host}:PORT" for host in HOSTS)
        else:
            dns_port = free_port()
            stack.enter_context(dns_server(dns_port, HOSTS))
            peers = f"dns://127.0.0.1:{dns_port}/{DNS_NAME}:PORT"
        running = start_fleet(engines, credentials, peers, port)
        try:
            yield running
        finally:
            for server in running.servers:
                server.stop()


@pytest.fixture
def stub(fleet: Fleet) -> Iterator[fleet_service_pb2_grpc.FleetServiceStub]:
    """A client of the first node."""
    with grpc.insecure_channel(f"{HOSTS[0]}:{fleet.port}") as channel:
        yield fleet_service_pb2_grpc.FleetServiceStub(channel)


def _api(engine: Engine, path: str) -> dict[str, object]:
    document = engine.api_get(path)
    assert isinstance(document, dict)
    return document


def _images(engine: Engine) -> list[dict[str, object]]:
    listed = engine.api_get("/images/json")
    assert isinstance(listed, list)
    return listed


def test_list_nodes_lists_every_node_with_its_engine_and_images(
    stub: fleet_service_pb2_grpc.FleetServiceStub,
    fleet: Fleet,
    engines: list[Engine],
    credentials: Credentials,
) -> None:
    response = stub.ListNodes(
        pb.ListNodesRequest(), metadata=credentials.metadata(credentials.caller), timeout=30
    )
    assert [node.address for node in response.nodes] == [f"{host}:{fleet.port}" for host in HOSTS]
    assert [node.name for node in response.nodes] == ["node-0", "node-1", "node-2"]
    assert [node.local for node in response.nodes] == [True, False, False]
    for node, engine in zip(response.nodes, engines, strict=True):
        version = _api(engine, "/version")
        assert node.ready, node.error
        assert not node.HasField("error")
        assert node.engine_version == version["Version"]
        assert node.engine_api_version == version["ApiVersion"]
        images = _images(engine)
        assert node.image_count == len(images)
        assert node.images_size_bytes == sum(int(str(image["Size"])) for image in images)
    assert [node.image_count for node in response.nodes] == [1, 1, 0]


def test_find_image_reports_the_nodes_that_hold_it_with_their_ids(
    stub: fleet_service_pb2_grpc.FleetServiceStub,
    fleet: Fleet,
    engines: list[Engine],
    credentials: Credentials,
) -> None:
    response = stub.FindImage(
        pb.FindImageRequest(image=IMAGE),
        metadata=credentials.metadata(credentials.caller),
        timeout=30,
    )
    assert [found.node for found in response.nodes] == ["node-0", "node-1", "node-2"]
    assert [found.present for found in response.nodes] == [True, True, False]
    for found, engine in zip(response.nodes[:2], engines[:2], strict=True):
        inspected = _api(engine, f"/images/{IMAGE}/json")
        assert found.image_id == inspected["Id"]
        assert list(found.repo_digests) == inspected["RepoDigests"]
        assert IMAGE in found.repo_tags
    absent = response.nodes[2]
    assert not absent.HasField("error")
    assert absent.image_id == ""


def test_a_caller_without_the_fleet_role_is_refused(
    stub: fleet_service_pb2_grpc.FleetServiceStub, credentials: Credentials
) -> None:
    metadata = credentials.metadata(credentials.viewer)
    with pytest.raises(grpc.RpcError) as listing:
        stub.ListNodes(pb.ListNodesRequest(), metadata=metadata, timeout=30)
    with pytest.raises(grpc.RpcError) as finding:
        stub.FindImage(pb.FindImageRequest(image=IMAGE), metadata=metadata, timeout=30)
    for refused in (listing, finding):
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "needs the fleet role" in (refused.value.details() or "")


def test_peers_see_the_servers_identity_never_the_callers_token(
    stub: fleet_service_pb2_grpc.FleetServiceStub,
    fleet: Fleet,
    credentials: Credentials,
    logs: CapturedLogs,
) -> None:
    mark = logs.mark()
    response = stub.FindImage(
        pb.FindImageRequest(image=IMAGE),
        metadata=credentials.metadata(credentials.caller),
        timeout=30,
    )
    # The peers only know the fleet token: had they been sent the caller's, they refused.
    assert all(not found.HasField("error") for found in response.nodes)
    time.sleep(0.2)
    audit = [r for r in logs.since(mark) if r["logger"] == "imagesvc.audit"]
    received = [r for r in audit if r["subject"]["local_only"] == "false"]
    acted = [r for r in audit if r["subject"]["local_only"] == "true"]
    # The receiving node names the peers it asked (never itself: it answers locally).
    assert len(received) == 1
    assert received[0]["identity"] == "fleet-caller"
    assert received[0]["subject"]["node"] == "node-0"
    assert received[0]["subject"]["peers"] == [f"{host}:{fleet.port}" for host in HOSTS[1:]]
    # Each peer that acted wrote its own line, naming the server's identity.
    assert sorted(r["subject"]["node"] for r in acted) == ["node-1", "node-2"]
    assert {r["identity"] for r in acted} == {PEER_IDENTITY}
    assert all(r["outcome"] == "ok" for r in audit)
    logs.assert_free_of([credentials.caller, credentials.viewer, credentials.peer])


def test_a_stopped_or_hung_instance_is_reported_within_the_node_timeout(
    engines: list[Engine], credentials: Credentials
) -> None:
    """The third instance stopped (nothing listens: NODE_UNREACHABLE at once); a fourth
    peer that accepts connections and never answers (NODE_TIMEOUT after the node
    timeout); the others answer all the same."""
    port = free_port()
    hung = HUNG_HOST
    peers = ",".join(f"{host}:PORT" for host in [*HOSTS, hung])
    with socket.create_server((hung, port), backlog=16):
        stopped = start_fleet(engines, credentials, peers, port)
        try:
            stopped.servers[2].stop()
            with grpc.insecure_channel(f"{HOSTS[0]}:{port}") as channel:
                stub = fleet_service_pb2_grpc.FleetServiceStub(channel)
                started = time.monotonic()
                response = stub.ListNodes(
                    pb.ListNodesRequest(),
                    metadata=credentials.metadata(credentials.caller),
                    timeout=30,
                )
                elapsed = time.monotonic() - started
        finally:
            for server in stopped.servers[:2]:
                server.stop()
    assert NODE_TIMEOUT_SECONDS <= elapsed < NODE_TIMEOUT_SECONDS + 1.0
    assert [node.address for node in response.nodes] == [
        f"{host}:{port}" for host in [*HOSTS, hung]
    ]
    assert [node.ready for node in response.nodes] == [True, True, False, False]
    assert [node.error.reason for node in response.nodes] == [
        "",
        "",
        "NODE_UNREACHABLE",
        "NODE_TIMEOUT",
    ]
    assert [node.name for node in response.nodes] == ["node-0", "node-1", "", ""]
    assert response.nodes[1].engine_version == _api(engines[1], "/version")["Version"]


def test_rest_routes_reach_the_fleet(fleet: Fleet, credentials: Credentials) -> None:
    headers = {"Authorization": f"Bearer {credentials.caller}"}
    base = f"http://{HOSTS[0]}:{fleet.servers[0].http_port}"
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        nodes = client.get("/v1/nodes").raise_for_status().json()["nodes"]
        found = (
            client.get("/v1/images:findOnNodes", params={"image": IMAGE})
            .raise_for_status()
            .json()["nodes"]
        )
    assert [node["name"] for node in nodes] == ["node-0", "node-1", "node-2"]
    assert all(node["ready"] for node in nodes)
    assert [node["present"] for node in found] == [True, True, False]


def test_the_python_clients_and_the_cli_reach_the_fleet(
    fleet: Fleet, engines: list[Engine], credentials: Credentials
) -> None:
    address = f"{HOSTS[0]}:{fleet.port}"
    with ImageClient(address, token=credentials.caller) as client:
        listed = client.list_nodes()
        found = client.find_image(IMAGE)
    assert [node.name for node in listed] == ["node-0", "node-1", "node-2"]
    assert [node.present for node in found] == [True, True, False]

    async def from_async() -> tuple[list[str], list[str]]:
        async with AsyncImageClient(address, token=credentials.caller) as client:
            nodes = await client.list_nodes()
            images = await client.find_image(IMAGE)
        return [node.name for node in nodes], [image.image_id for image in images]

    names, ids = asyncio.run(from_async())
    assert names == ["node-0", "node-1", "node-2"]
    assert ids == [found[0].image_id, found[1].image_id, ""]

    environment = {k: v for k, v in os.environ.items() if not k.startswith("IMAGESVC_")}
    environment.update({"IMAGESVC_SERVER": address, "IMAGESVC_TOKEN": credentials.caller})

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CLI), *args], capture_output=True, text=True, env=environment, timeout=60
        )

    table = cli("nodes")
    assert table.returncode == 0, table.stderr
    assert [line.split()[0] for line in table.stdout.splitlines()] == [
        "NODE",
        "node-0",
        "node-1",
        "node-2",
    ]
    documents = json.loads(cli("--output", "json", "find", IMAGE).stdout)
    assert [d["present"] for d in documents] == [True, True, False]
    assert [d["imageId"] for d in documents[:2]] == [found[0].image_id, found[1].image_id]
    found_table = cli("find", "--no-trunc", IMAGE)
    assert found_table.returncode == 0, found_table.stderr
    assert found[0].image_id in found_table.stdout


def _find_under_mutual_tls(
    engines: list[Engine],
    tmp_path: Path,
    node_cert: KeyPair,
    ca: CertificateAuthority,
    *,
    caller_server_name: str | None = None,
    **fleet: Any,
) -> pb.FindImageResponse:
    """FindImage on three nodes serving `node_cert` under mutual TLS, with no fleet token:
    each node presents its own server certificate to its peers, which map it to an
    identity with the fleet role. `caller_server_name`: the name the caller checks the
    first node's certificate against (None: its address); `fleet`: more settings of
    every node."""
    caller_cert = ca.issue(tmp_path, "caller", common_name="ci-fleet")
    roles = tmp_path / "client-roles.json"
    write_json(
        roles,
        {
            "clients": [
                {"identity": "node-cert", "roles": ["fleet"], "match": ["CN=imagesvc-node"]},
                {"identity": "cert-caller", "roles": ["fleet"], "match": ["CN=ci-fleet"]},
            ]
        },
    )
    port = free_port()
    servers = [
        ThreadedServer(
            server_settings(
                engine.host,
                grpc_address=f"{host}:{port}",
                http_address=f"{host}:0",
                tls_cert_file=str(node_cert.cert),
                tls_key_file=str(node_cert.key),
                tls_client_ca_file=str(ca.cert),
                client_cert_roles_file=str(roles),
                node_name=f"node-{index}",
                fleet_peers=",".join(f"{h}:{port}" for h in HOSTS),
                fleet_tls_ca_file=str(ca.cert),
                fleet_node_timeout_seconds=NODE_TIMEOUT_SECONDS,
                **fleet,
            )
        )
        for index, (host, engine) in enumerate(zip(HOSTS, engines, strict=True))
    ]
    try:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=ca.cert_pem,
            private_key=caller_cert.key_pem,
            certificate_chain=caller_cert.cert_pem,
        )
        options = (
            [("grpc.ssl_target_name_override", caller_server_name)] if caller_server_name else []
        )
        with grpc.secure_channel(f"{HOSTS[0]}:{port}", credentials, options=options) as channel:
            stub = fleet_service_pb2_grpc.FleetServiceStub(channel)
            response: pb.FindImageResponse = stub.FindImage(
                pb.FindImageRequest(image=IMAGE), timeout=30
            )
            return response
    finally:
        for server in servers:
            server.stop()


def test_under_mutual_tls_peers_are_called_with_the_servers_own_certificate(
    engines: list[Engine], tmp_path: Path, logs: CapturedLogs
) -> None:
    ca = new_ca(tmp_path, "fleet-ca")
    node_cert = ca.issue(
        tmp_path, "node", common_name="imagesvc-node", ips=tuple(HOSTS), server=True, client=True
    )
    mark = logs.mark()
    response = _find_under_mutual_tls(engines, tmp_path, node_cert, ca)
    assert [node.error.reason for node in response.nodes] == ["", "", ""]
    assert [node.present for node in response.nodes] == [True, True, False]
    audit = [r for r in logs.since(mark) if r["logger"] == "imagesvc.audit"]
    acted = [r for r in audit if r["subject"]["local_only"] == "true"]
    assert sorted(r["subject"]["node"] for r in acted) == ["node-1", "node-2"]
    assert {(r["identity"], r["via"]) for r in acted} == {("node-cert", "mtls")}
    received = [r for r in audit if r["subject"]["local_only"] == "false"]
    assert [r["identity"] for r in received] == ["cert-caller"]


def test_peers_certificates_naming_no_address_are_checked_against_the_fleet_server_name(
    engines: list[Engine], tmp_path: Path
) -> None:
    """As in a cluster: the pods share a certificate for the headless Service's name and
    none of their pod IPs. Without --fleet-tls-server-name no peer's certificate matches
    the address it is dialled at; with it, every peer answers."""
    name = "imagesvc-fleet.imagesvc.svc"
    ca = new_ca(tmp_path, "fleet-ca")
    node_cert = ca.issue(
        tmp_path, "node", common_name="imagesvc-node", dns=(name,), server=True, client=True
    )
    answered = _find_under_mutual_tls(
        engines, tmp_path, node_cert, ca, caller_server_name=name, fleet_tls_server_name=name
    )
    assert [node.error.reason for node in answered.nodes] == ["", "", ""]
    assert [node.present for node in answered.nodes] == [True, True, False]
    unnamed = _find_under_mutual_tls(engines, tmp_path, node_cert, ca, caller_server_name=name)
    assert [node.error.reason for node in unnamed.nodes[1:]] == ["NODE_UNREACHABLE"] * 2


def test_a_malformed_or_missing_image_fails_the_call_before_any_peer_is_asked(
    stub: fleet_service_pb2_grpc.FleetServiceStub, credentials: Credentials, logs: CapturedLogs
) -> None:
    metadata = credentials.metadata(credentials.caller)
    mark = logs.mark()
    for image in ("UPPER/case", ""):
        with pytest.raises(grpc.RpcError) as refused:
            stub.FindImage(pb.FindImageRequest(image=image), metadata=metadata, timeout=30)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    time.sleep(0.2)
    audit = [r for r in logs.since(mark) if r["logger"] == "imagesvc.audit"]
    assert [(r["subject"]["node"], r["outcome"]) for r in audit] == [("node-0", "failed")] * 2
