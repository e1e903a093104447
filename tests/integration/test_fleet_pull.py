"""PullImageOnNodes across four real "nodes" (tests/integration/fleet_nodes.py): each its
own dockerd and imagesvc on 127.0.0.2 to 127.0.0.5, found through dnsmasq, pulling from
a real registry, slowed by a throttling proxy where a pull must be in flight."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from devtools.sandbox import Engine, Registry, build_busybox_image, free_port
from imagesvc.v1 import fleet_service_pb2 as pb
from imagesvc.v1 import fleet_service_pb2_grpc, image_pb2
from imagesvc_client import AsyncImageClient, FleetPullOptions, ImageClient
from imagesvc_client.v1 import fleet_service_pb2 as client_pb
from tests.integration.fleet_nodes import (
    PEER_IDENTITY,
    Credentials,
    Fleet,
    dns_peers,
    dns_server,
    new_credentials,
    start_fleet,
    started_engines,
    static_peers,
)
from tests.integration.log_capture import CapturedLogs, capture_logs
from tests.integration.rpc_errors import error_info
from tests.integration.throttle_proxy import ThrottleProxy
from tests.integration.transfers import local_image, remove_local, unique

HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
NAMES = [f"node-{n}" for n in range(len(HOSTS))]
NODE_TIMEOUT_SECONDS = 2.0
# A peer that accepts connections and never speaks.
HUNG_HOST = "127.0.0.6"
Stub = fleet_service_pb2_grpc.FleetServiceStub
CLI = Path(sys.executable).with_name("imagesvc-cli")


@pytest.fixture(scope="module")
def logs() -> Iterator[CapturedLogs]:
    with capture_logs() as captured:
        yield captured


@pytest.fixture(scope="module")
def engines() -> Iterator[list[Engine]]:
    with started_engines(len(HOSTS), prefix="isv-fleet-pull-") as started:
        yield started


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    return new_credentials(tmp_path_factory.mktemp("fleet-pull-tokens"))


@pytest.fixture(scope="module")
def fleet(engines: list[Engine], credentials: Credentials) -> Iterator[Fleet]:
    """The four instances, peers from DNS."""
    dns_port = free_port()
    with dns_server(dns_port, HOSTS):
        running = start_fleet(
            HOSTS,
            engines,
            credentials,
            dns_peers(dns_port),
            free_port(),
            fleet_node_timeout_seconds=NODE_TIMEOUT_SECONDS,
        )
        try:
            yield running
        finally:
            running.stop()


@pytest.fixture
def stub(fleet: Fleet) -> Iterator[Stub]:
    with grpc.insecure_channel(fleet.address(0)) as channel:
        yield fleet_service_pb2_grpc.FleetServiceStub(channel)


def pushed_image(engine: Engine, registry: Registry, layer_mib: int) -> str:
    """A fresh repository in `registry` holding an image with a random layer; returns
    its `repository:1` (no registry part); not left on `engine`."""
    repository = unique("fleet/pull-")
    direct = f"{registry.address}/{repository}:1"
    build_busybox_image(
        engine, direct, extra_lines=[f"RUN dd if=/dev/urandom of=/blob bs=1M count={layer_mib}"]
    )
    engine.docker("push", direct)
    remove_local(engine, direct)
    return f"{repository}:1"


def pull_events(engine: Engine, reference: str) -> int:
    """How many times the Engine pulled `reference` (its `pull` events)."""
    listed = engine.docker(
        "events",
        "--since",
        "0",
        "--until",
        str(int(time.time()) + 1),
        "--filter",
        "type=image",
        "--filter",
        "event=pull",
        "--format",
        "{{json .}}",
    )
    events = [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
    return sum(1 for event in events if event.get("id") == reference)


def fleet_pull(
    stub: Stub, credentials: Credentials, **fields: object
) -> tuple[list[pb.NodePull], pb.PullImageOnNodesSummary]:
    updates: list[pb.NodePull] = []
    request = pb.PullImageOnNodesRequest(**fields)  # type: ignore[arg-type]
    for response in stub.PullImageOnNodes(
        request, metadata=credentials.metadata(credentials.caller), timeout=180
    ):
        if response.HasField("summary"):
            return updates, response.summary
        updates.append(response.node)
    raise AssertionError("the stream ended without a summary")


def test_a_fleet_pull_puts_the_image_on_every_node_once_then_skips_them_all(
    stub: Stub,
    fleet: Fleet,
    engines: list[Engine],
    credentials: Credentials,
    open_registry: Registry,
    logs: CapturedLogs,
) -> None:
    repository = pushed_image(engines[0], open_registry, layer_mib=4)
    with ThrottleProxy(open_registry.address, rate=1024 * 1024) as proxy:
        reference = f"{proxy.address}/{repository}"
        mark = logs.mark()
        updates, summary = fleet_pull(stub, credentials, reference=reference, parallelism="100%")

        assert summary.desired == 4
        assert [node.node for node in summary.succeeded] == NAMES, summary
        assert summary.complete
        assert not summary.failed
        digest = summary.succeeded[0].digest
        assert digest.startswith("sha256:")
        for node, engine in zip(summary.succeeded, engines, strict=True):
            held = local_image(engine, reference)
            assert held is not None
            assert node.image_id == held["Id"]
            assert f"{reference.rsplit(':', 1)[0]}@{digest}" in held["RepoDigests"]  # type: ignore[operator]
            assert pull_events(engine, reference) == 1
            assert node.percent == 100.0
        # Progress moves on every node: seen between 0 and 100 %, never going back.
        for name in NAMES:
            percents = [
                u.percent
                for u in updates
                if u.node == name and u.phase == pb.NODE_PULL_PHASE_PULLING
            ]
            assert any(0 < p < 100 for p in percents), (name, percents)
            assert percents == sorted(percents), (name, percents)
            assert any(u.bytes_total >= 4 * 1024 * 1024 for u in updates if u.node == name)

        # Audit: the receiving node for the caller, each peer for the server's identity.
        time.sleep(0.2)
        audit = [
            r
            for r in logs.since(mark)
            if r["logger"] == "imagesvc.audit" and r["rpc"] == "PullImageOnNodes"
        ]
        received = [r for r in audit if r["subject"]["local_only"] == "false"]
        acted = [r for r in audit if r["subject"]["local_only"] == "true"]
        assert [(r["identity"], r["subject"]["node"]) for r in received] == [
            ("fleet-caller", "node-0")
        ]
        assert received[0]["result"]["succeeded"] == 4
        assert sorted(r["subject"]["node"] for r in acted) == NAMES[1:]
        assert {r["identity"] for r in acted} == {PEER_IDENTITY}
        logs.assert_free_of([credentials.caller, credentials.viewer, credentials.peer])

        # Again, over REST: every node holds it at the registry's digest, none pulls.
        headers = {"Authorization": f"Bearer {credentials.caller}"}
        base = f"http://{HOSTS[0]}:{fleet.servers[0].http_port}"
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            answer = client.post("/v1/images:pullOnNodes", json={"reference": reference})
        assert answer.status_code == 200
        lines = [json.loads(line) for line in answer.text.splitlines()]
        again = lines[-1]["result"]["summary"]
        assert [node["node"] for node in again["skipped"]] == NAMES
        assert {node["digest"] for node in again["skipped"]} == {digest}
        assert again["succeeded"] == []
        assert again["complete"] is True
        for engine in engines:
            assert pull_events(engine, reference) == 1


@pytest.mark.parametrize("policy", ["best_effort", "stop_on_first_failure"])
def test_a_node_whose_dockerd_is_killed_mid_pull_fails_and_the_policy_decides(
    stub: Stub,
    fleet: Fleet,
    engines: list[Engine],
    credentials: Credentials,
    open_registry: Registry,
    policy: str,
) -> None:
    """Node 2's dockerd is killed while it pulls. Best effort: the three others pull.
    Stop at the first failure, three at a time: node 3 never starts."""
    repository = pushed_image(engines[0], open_registry, layer_mib=8)
    stop = policy == "stop_on_first_failure"
    with ThrottleProxy(open_registry.address, rate=256 * 1024) as proxy:
        reference = f"{proxy.address}/{repository}"
        request = pb.PullImageOnNodesRequest(
            reference=reference,
            parallelism="3" if stop else "4",
            completion_policy=pb.COMPLETION_POLICY_STOP_ON_FIRST_FAILURE
            if stop
            else pb.COMPLETION_POLICY_BEST_EFFORT,
        )
        call = stub.PullImageOnNodes(
            request, metadata=credentials.metadata(credentials.caller), timeout=180
        )
        killed = False
        summary = None
        for response in call:
            if response.HasField("summary"):
                summary = response.summary
                break
            node = response.node
            if not killed and node.node == "node-2" and node.bytes_done > 0:
                engines[2].docker("version")  # still up until now
                pid = engines[2].pid
                assert pid is not None
                subprocess.run(["kill", "-KILL", str(pid)], check=True)
                killed = True
                proxy.set_rate(None)  # the others finish at full speed
    assert killed
    assert summary is not None
    try:
        assert [n.node for n in summary.failed] == ["node-2"]
        failed = summary.failed[0]
        assert failed.error.reason == "DAEMON_UNAVAILABLE", failed.error
        assert failed.error_cause == "DAEMON_UNAVAILABLE"
        assert "Docker daemon" in failed.error.message
        assert failed.attempt == 1  # never retried
        assert not summary.complete
        if stop:
            assert [n.node for n in summary.succeeded] == ["node-0", "node-1"]
            assert [n.node for n in summary.cancelled] == ["node-3"]
            assert summary.cancelled[0].error.reason == "CANCELLED"
            assert "node-2 failed" in summary.cancelled[0].error.message
            assert summary.stopped_early
            assert local_image(engines[3], reference) is None
        else:
            assert [n.node for n in summary.succeeded] == ["node-0", "node-1", "node-3"]
            assert not summary.cancelled
            assert not summary.stopped_early
    finally:
        engines[2].stop()
        engines[2].start()
    _wait_until_ready(stub, credentials, "node-2")


def _wait_until_ready(stub: Stub, credentials: Credentials, name: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        nodes = stub.ListNodes(
            pb.ListNodesRequest(), metadata=credentials.metadata(credentials.caller), timeout=30
        ).nodes
        if any(node.name == name and node.ready for node in nodes):
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} not ready again")


def test_a_stopped_or_hung_imagesvc_is_unreachable_within_the_node_timeout(
    engines: list[Engine], credentials: Credentials, open_registry: Registry
) -> None:
    """Node 3's imagesvc stopped (nothing listens) and a fifth peer that accepts
    connections and never answers: both NODE_UNREACHABLE within the 3 s node timeout,
    the others pull."""
    repository = pushed_image(engines[0], open_registry, layer_mib=1)
    reference = f"{open_registry.address}/{repository}"
    port = free_port()
    with socket.create_server((HUNG_HOST, port), backlog=16):
        stopped = start_fleet(
            HOSTS,
            engines,
            credentials,
            static_peers([*HOSTS, HUNG_HOST]),
            port,
            fleet_node_timeout_seconds=30.0,
        )
        try:
            stopped.stop(3)
            with grpc.insecure_channel(stopped.address(0)) as channel:
                started = time.monotonic()
                failed_after: dict[str, float] = {}
                summary = None
                for response in fleet_service_pb2_grpc.FleetServiceStub(channel).PullImageOnNodes(
                    pb.PullImageOnNodesRequest(reference=reference, node_timeout_seconds=3.0),
                    metadata=credentials.metadata(credentials.caller),
                    timeout=120,
                ):
                    if response.HasField("summary"):
                        summary = response.summary
                    elif response.node.phase == pb.NODE_PULL_PHASE_FAILED:
                        failed_after[response.node.address] = time.monotonic() - started
        finally:
            stopped.stop()
    assert summary is not None
    assert [n.node for n in summary.succeeded] == NAMES[:3]
    assert [n.address for n in summary.failed] == [f"{HOSTS[3]}:{port}", f"{HUNG_HOST}:{port}"]
    assert [n.error.reason for n in summary.failed] == ["NODE_UNREACHABLE"] * 2
    assert f"{HOSTS[3]}:{port}" in summary.failed[0].error.message
    assert summary.failed[1].error_cause == "NODE_TIMEOUT"
    # Each reported failed within the node timeout (a margin for the loaded machine).
    assert set(failed_after) == {f"{HOSTS[3]}:{port}", f"{HUNG_HOST}:{port}"}
    assert all(seconds < 3.0 + 1.0 for seconds in failed_after.values()), failed_after


def test_a_caller_without_the_fleet_role_is_refused(stub: Stub, credentials: Credentials) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        list(
            stub.PullImageOnNodes(
                pb.PullImageOnNodesRequest(reference="busybox:latest"),
                metadata=credentials.metadata(credentials.viewer),
                timeout=30,
            )
        )
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "needs the fleet role" in (refused.value.details() or "")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"reference": ""}, "reference is required"),
        ({"reference": "UPPER/case"}, "UPPER/case"),
        ({"parallelism": "0"}, "parallelism '0' is neither a count of at least 1"),
        ({"parallelism": "150%"}, "parallelism '150%' is neither a count of at least 1"),
        ({"node_timeout_seconds": -1.0}, "node_timeout_seconds must be 0 (the default) or a"),
        ({"stall_timeout_seconds": float("inf")}, "stall_timeout_seconds must be 0"),
        ({"retries": 11}, "retries must be from 0 to 10"),
    ],
)
def test_bad_input_is_invalid_argument_with_a_clear_message(
    stub: Stub, credentials: Credentials, fields: dict[str, object], message: str
) -> None:
    values: dict[str, object] = {"reference": "fleet/app:1"}
    values.update(fields)
    with pytest.raises(grpc.RpcError) as refused:
        list(
            stub.PullImageOnNodes(
                pb.PullImageOnNodesRequest(**values),  # type: ignore[arg-type]
                metadata=credentials.metadata(credentials.caller),
                timeout=30,
            )
        )
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert message in (refused.value.details() or "")
    assert error_info(refused.value).reason in ("INVALID_ARGUMENT", "INVALID_REFERENCE")


def test_nodes_are_selected_by_name_and_an_unknown_name_is_its_own_failure(
    stub: Stub, engines: list[Engine], credentials: Credentials, open_registry: Registry
) -> None:
    repository = pushed_image(engines[0], open_registry, layer_mib=1)
    reference = f"{open_registry.address}/{repository}"
    _, summary = fleet_pull(
        stub, credentials, reference=reference, nodes=["node-3", "node-9", "node-1"]
    )
    assert summary.desired == 3
    assert [n.node for n in summary.succeeded] == ["node-3", "node-1"]
    assert [(n.node, n.error.reason) for n in summary.failed] == [("node-9", "NODE_NOT_FOUND")]
    assert local_image(engines[0], reference) is None
    assert local_image(engines[2], reference) is None
    assert local_image(engines[3], reference) is not None


def test_the_python_clients_and_the_cli_pull_on_nodes(
    fleet: Fleet, engines: list[Engine], credentials: Credentials, open_registry: Registry
) -> None:
    repository = pushed_image(engines[0], open_registry, layer_mib=1)
    reference = f"{open_registry.address}/{repository}"
    address = fleet.address(0)
    with (
        ImageClient(address, token=credentials.caller) as client,
        client.pull_on_nodes(reference, FleetPullOptions(nodes=("node-1", "node-2"))) as pulling,
    ):
        phases = {(node.node, node.phase) for node in pulling}
        summary = pulling.result
    assert [n.node for n in summary.succeeded] == ["node-1", "node-2"]
    assert ("node-1", client_pb.NODE_PULL_PHASE_PULLING) in phases

    async def from_async() -> client_pb.PullImageOnNodesSummary:
        async with AsyncImageClient(address, token=credentials.caller) as client:
            operation = client.pull_on_nodes(reference, FleetPullOptions(parallelism="50%"))
            return await operation.wait()

    everywhere = asyncio.run(from_async())
    assert [n.node for n in everywhere.succeeded] == ["node-0", "node-3"]
    assert [n.node for n in everywhere.skipped] == ["node-1", "node-2"]

    environment = {k: v for k, v in os.environ.items() if not k.startswith("IMAGESVC_")}
    environment.update({"IMAGESVC_SERVER": address, "IMAGESVC_TOKEN": credentials.caller})
    ran = subprocess.run(
        [str(CLI), "fleet-pull", "--nodes", "node-0,node-9", reference],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert ran.returncode == 1, ran.stderr  # node-9 is no node
    rows = [line.split()[:3] for line in ran.stdout.splitlines() if line.startswith("node-")]
    assert ["node-0", f"{HOSTS[0]}:{fleet.port}", "skipped"] in rows
    assert "node-9: NODE_NOT_FOUND: no reachable node is named 'node-9'" in ran.stderr
    assert "2 nodes: 0 pulled, 1 already present, 1 failed, 0 not started" in ran.stdout


def test_registry_auth_reaches_every_node_and_a_refusal_is_auth_failed_everywhere(
    stub: Stub,
    engines: list[Engine],
    credentials: Credentials,
    auth_registry: Registry,
    logs: CapturedLogs,
) -> None:
    assert auth_registry.username is not None
    assert auth_registry.password is not None
    reference = f"{auth_registry.address}/{unique('fleet/auth-')}:1"
    build_busybox_image(engines[0], reference, extra_lines=[f"RUN echo {unique('')} > /id"])
    engines[0].docker(
        "login",
        "-u",
        auth_registry.username,
        "--password-stdin",
        auth_registry.address,
        input=auth_registry.password,
    )
    try:
        engines[0].docker("push", reference)
    finally:
        engines[0].docker("logout", auth_registry.address)
    remove_local(engines[0], reference)
    wrong = secrets.token_urlsafe(12)
    mark = logs.mark()

    def auth(password: str) -> image_pb2.RegistryAuth:
        return image_pb2.RegistryAuth(
            username=auth_registry.username or "",
            password=password,
            server_address=auth_registry.address,
        )

    _, refused = fleet_pull(stub, credentials, reference=reference, auth=auth(wrong))
    assert [n.node for n in refused.failed] == NAMES
    for node in refused.failed:
        assert node.error.reason == "AUTH_FAILED", node.error
        assert node.error_cause in ("REGISTRY_UNAUTHENTICATED", "REGISTRY_DENIED")
        assert node.error.message
        assert wrong not in node.error.message
    assert all(local_image(engine, reference) is None for engine in engines)

    _, pulled = fleet_pull(
        stub, credentials, reference=reference, auth=auth(auth_registry.password)
    )
    assert [n.node for n in pulled.succeeded] == NAMES
    assert all(local_image(engine, reference) is not None for engine in engines)
    time.sleep(0.2)
    logs.assert_free_of([wrong, auth_registry.password, credentials.caller, credentials.peer])
    assert logs.since(mark)


# RemoveImageOnNodes and PruneImagesOnNodes ------------------------------------------


def test_remove_and_prune_on_nodes_with_an_admin_fleet_identity(
    engines: list[Engine],
    open_registry: Registry,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    admin_peers = new_credentials(tmp_path_factory.mktemp("fleet-admin"), peer_role="admin")
    repository = pushed_image(engines[0], open_registry, layer_mib=1)
    reference = f"{open_registry.address}/{repository}"
    running = start_fleet(HOSTS, engines, admin_peers, static_peers(HOSTS), free_port())
    try:
        with grpc.insecure_channel(running.address(0)) as channel:
            fleet_stub = fleet_service_pb2_grpc.FleetServiceStub(channel)
            _, pulled = fleet_pull(fleet_stub, admin_peers, reference=reference)
            assert len(pulled.succeeded) + len(pulled.skipped) == 4
            remove_local(engines[1], reference)

            request = pb.RemoveImageOnNodesRequest(image=reference)
            with pytest.raises(grpc.RpcError) as refused:
                fleet_stub.RemoveImageOnNodes(
                    request, metadata=admin_peers.metadata(admin_peers.caller), timeout=60
                )
            assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
            assert "needs the admin role" in (refused.value.details() or "")

            removed = fleet_stub.RemoveImageOnNodes(
                request, metadata=admin_peers.metadata(admin_peers.admin), timeout=60
            ).summary
            assert [n.node for n in removed.succeeded] == ["node-0", "node-2", "node-3"]
            assert all(f"{reference}" in n.untagged for n in removed.succeeded)
            assert [(n.node, n.error.reason) for n in removed.skipped] == [
                ("node-1", "IMAGE_NOT_FOUND")
            ]
            assert removed.complete
            assert all(local_image(engine, reference) is None for engine in engines)

            label = f"imagesvc-test.fleet-prune={unique('')}"
            for n, engine in enumerate(engines):
                build_busybox_image(
                    engine,
                    f"fleet/prune-me:{n}",
                    labels=dict([label.split("=", 1)]),
                    extra_lines=[f"RUN echo {unique('')} > /id"],
                )
            headers = {"Authorization": f"Bearer {admin_peers.admin}"}
            base = f"http://{HOSTS[0]}:{running.servers[0].http_port}"
            with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
                answer = client.post(
                    "/v1/images:pruneOnNodes",
                    json={"prune": {"all": True, "labels": [label]}, "nodes": NAMES},
                )
            assert answer.status_code == 200, answer.text
            pruned = answer.json()["summary"]
            assert [n["node"] for n in pruned["succeeded"]] == NAMES
            assert all(n["deleted"] for n in pruned["succeeded"])
            assert int(pruned["spaceReclaimedBytes"]) > 0
            for n, engine in enumerate(engines):
                assert local_image(engine, f"fleet/prune-me:{n}") is None

        # The Python client and the CLI.
        with grpc.insecure_channel(running.address(0)) as channel:
            again = fleet_service_pb2_grpc.FleetServiceStub(channel)
            fleet_pull(again, admin_peers, reference=reference)
        with ImageClient(running.address(0), token=admin_peers.admin) as client:
            one = client.remove_on_nodes(reference, nodes=["node-2"])
            nothing = client.prune_on_nodes(labels=[label], nodes=["node-1"])
        assert [n.node for n in one.succeeded] == ["node-2"]
        assert [n.node for n in nothing.succeeded] == ["node-1"]
        assert not nothing.succeeded[0].deleted
        environment = {k: v for k, v in os.environ.items() if not k.startswith("IMAGESVC_")}
        environment.update(
            {"IMAGESVC_SERVER": running.address(0), "IMAGESVC_TOKEN": admin_peers.admin}
        )
        ran = subprocess.run(
            [str(CLI), "fleet-rm", "--nodes", "node-3,node-2", reference],
            capture_output=True,
            text=True,
            env=environment,
            timeout=60,
        )
        assert ran.returncode == 0, ran.stderr
        rows = [line.split()[:3] for line in ran.stdout.splitlines() if line.startswith("node-")]
        assert rows == [
            ["node-3", running.address(3), "done"],
            ["node-2", running.address(2), "skipped"],
        ]
        assert local_image(engines[3], reference) is None
        assert local_image(engines[0], reference) is not None
    finally:
        running.stop()


def test_peers_refuse_removal_to_a_fleet_identity_without_admin(
    stub: Stub, engines: list[Engine], credentials: Credentials
) -> None:
    """The module's fleet: the servers' identity has the fleet role only. The receiving
    node acts for an admin caller; each peer refuses the server: NODE_DENIED."""
    absent = f"fleet/never-{unique('')}:1"
    summary = stub.RemoveImageOnNodes(
        pb.RemoveImageOnNodesRequest(image=absent),
        metadata=credentials.metadata(credentials.admin),
        timeout=60,
    ).summary
    assert [(n.node, n.error.reason) for n in summary.skipped] == [("node-0", "IMAGE_NOT_FOUND")]
    assert [n.error.reason for n in summary.failed] == ["NODE_DENIED"] * 3
    assert not summary.complete


def test_a_stalled_pull_is_retried_and_then_succeeds(
    stub: Stub, engines: list[Engine], credentials: Credentials, open_registry: Registry
) -> None:
    """The registry answers nothing (the proxy holds every byte back): each node's first
    attempt is STALLED after the stall timeout, then retried once the registry is back."""
    repository = pushed_image(engines[0], open_registry, layer_mib=1)
    with ThrottleProxy(open_registry.address, rate=0) as proxy:
        reference = f"{proxy.address}/{repository}"
        call = stub.PullImageOnNodes(
            pb.PullImageOnNodesRequest(
                reference=reference,
                nodes=["node-1", "node-2"],
                stall_timeout_seconds=1.5,
                retries=2,
                retry_backoff_seconds=0.5,
            ),
            metadata=credentials.metadata(credentials.caller),
            timeout=120,
        )
        retried: list[pb.NodePull] = []
        summary = None
        for response in call:
            if response.HasField("summary"):
                summary = response.summary
                break
            node = response.node
            if node.phase == pb.NODE_PULL_PHASE_WAITING and node.HasField("error"):
                retried.append(node)
                proxy.set_rate(None)  # the registry is back for the next attempt
    assert summary is not None
    assert [n.node for n in summary.succeeded] == ["node-1", "node-2"], summary
    assert {n.node for n in retried} == {"node-1", "node-2"}
    for node in retried:
        assert node.error.reason == "STALLED"
        assert "no progress for 1.5 s" in node.error.message
        assert node.retry_in_seconds == 0.5
    assert all(n.attempt >= 2 for n in summary.succeeded)
