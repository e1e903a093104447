"""A fleet node cut off from the network (issue 17): node-2's imagesvc runs in a network
namespace of its own (tests/integration/netns.py), reached from the host over a veth pair
with loopback-range addresses; its dockerd stays in the host's namespace (a unix socket
crosses network namespaces). node-0 (which receives the calls) and node-1 run in the
host's namespace on 127.0.0.2 and 127.0.0.3, peers from a static list. Setting the host
end of the link down in the middle of a fleet pull cuts node-2 off while its stream is
open: it stops answering without closing anything."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest

from devtools.sandbox import Engine, Registry, build_busybox_image, free_port
from imagesvc.v1 import fleet_service_pb2 as pb
from imagesvc.v1 import fleet_service_pb2_grpc
from tests.integration.fleet_nodes import (
    Credentials,
    Fleet,
    new_credentials,
    start_fleet,
    started_engines,
)
from tests.integration.netns import NamespacedServer, VethNamespace, veth_namespace
from tests.integration.test_fleet_pull import pushed_image
from tests.integration.throttle_proxy import ThrottleProxy
from tests.integration.transfers import unique

HOSTS = ["127.0.0.2", "127.0.0.3"]
NAMES = ["node-0", "node-1", "node-2"]
# node-2's per-node timeout in the cut-off pull: with a longer stall timeout, a peer that
# stops answering mid-stream ends as TIMED_OUT; with a shorter one, as NODE_UNREACHABLE
# (docs/api.md, "Pulling on every node").
NODE_TIMEOUT_SECONDS = 8.0
STALL_SECONDS = 2.0
# --fleet-node-timeout-seconds of node-0 (ListNodes, FindImage).
LIST_TIMEOUT_SECONDS = 2.0
Stub = fleet_service_pb2_grpc.FleetServiceStub


@pytest.fixture(scope="module")
def engines() -> Iterator[list[Engine]]:
    with started_engines(3, prefix="isv-fleet-netns-") as started:
        yield started


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    return new_credentials(tmp_path_factory.mktemp("fleet-netns-tokens"))


@pytest.fixture(scope="module")
def namespace() -> Iterator[VethNamespace]:
    """The namespace and veth pair, removed at the end even when a test failed."""
    with veth_namespace() as created:
        yield created


@pytest.fixture(scope="module")
def cut_node(
    namespace: VethNamespace, engines: list[Engine], credentials: Credentials
) -> Iterator[NamespacedServer]:
    """node-2: imagesvc inside the namespace, on its own dockerd."""
    served = NamespacedServer(
        namespace,
        free_port(),
        engines[2].host,
        [
            "--tokens-file",
            str(credentials.peer_tokens),
            "--fleet-token-file",
            str(credentials.peer_token_file),
            "--node-name",
            "node-2",
            "--shutdown-grace-seconds",
            "2",
        ],
    )
    try:
        served.start()
        yield served
    finally:
        served.close()


@pytest.fixture(scope="module")
def fleet(
    engines: list[Engine], credentials: Credentials, cut_node: NamespacedServer
) -> Iterator[Fleet]:
    """node-0 and node-1 in the host's namespace, on cut_node's port; peers: all three."""
    port = int(cut_node.address.rpartition(":")[2])
    peers = ",".join([*(f"{host}:{port}" for host in HOSTS), cut_node.address])
    running = start_fleet(
        HOSTS,
        engines[:2],
        credentials,
        peers,
        port,
        fleet_node_timeout_seconds=LIST_TIMEOUT_SECONDS,
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def stub(fleet: Fleet) -> Iterator[Stub]:
    with grpc.insecure_channel(fleet.address(0)) as channel:
        yield fleet_service_pb2_grpc.FleetServiceStub(channel)


def list_nodes(stub: Stub, credentials: Credentials) -> dict[str, pb.Node]:
    nodes = stub.ListNodes(
        pb.ListNodesRequest(), metadata=credentials.metadata(credentials.caller), timeout=30
    ).nodes
    return {node.address: node for node in nodes}


def test_list_nodes_and_find_image_reach_the_node_in_its_namespace(
    stub: Stub, engines: list[Engine], credentials: Credentials, cut_node: NamespacedServer
) -> None:
    """node-2 answers over the veth pair: listed ready with its Engine, and the only
    holder of an image built on its dockerd alone."""
    nodes = list_nodes(stub, credentials)
    node = nodes[cut_node.address]
    assert node.name == "node-2"
    assert node.ready, node.error
    assert node.engine_version
    assert sorted(n.name for n in nodes.values()) == NAMES

    image = unique("127.0.0.1:5999/fleet/netns-") + ":1"
    build_busybox_image(engines[2], image)
    found = stub.FindImage(
        pb.FindImageRequest(image=image),
        metadata=credentials.metadata(credentials.caller),
        timeout=30,
    ).nodes
    holders = [n for n in found if n.present]
    assert [(n.node, n.address) for n in holders] == [("node-2", cut_node.address)]
    assert (
        holders[0].image_id
        == engines[2].docker("image", "inspect", "-f", "{{.Id}}", image).stdout.strip()
    )
    assert image in holders[0].repo_tags


@pytest.mark.parametrize(
    ("stall_seconds", "reason", "bound_seconds"),
    [
        # The node timeout comes first: TIMED_OUT.
        (120.0, "TIMED_OUT", NODE_TIMEOUT_SECONDS),
        # The stall timeout comes first: the silent peer is asked once whether it still
        # answers, and is NODE_UNREACHABLE (never retried, never blamed on the registry).
        (STALL_SECONDS, "NODE_UNREACHABLE", STALL_SECONDS + LIST_TIMEOUT_SECONDS),
    ],
)
def test_a_node_cut_off_mid_pull_fails_in_time_and_answers_again_once_back(
    stub: Stub,
    engines: list[Engine],
    credentials: Credentials,
    open_registry: Registry,
    namespace: VethNamespace,
    cut_node: NamespacedServer,
    stall_seconds: float,
    reason: str,
    bound_seconds: float,
) -> None:
    """The host end of node-2's link goes down while all three pull (throttled, so the
    pull is in flight): node-2's open stream hears nothing more, so it fails with
    `reason` within `bound_seconds`; node-0 and node-1 pull; the call ends. While cut
    off, ListNodes reports node-2 NODE_TIMEOUT within the fleet node timeout. Link up:
    the next calls reach node-2 again."""
    repository = pushed_image(engines[0], open_registry, layer_mib=8)
    cut_at: float | None = None
    failed_at: dict[str, float] = {}
    summary = None
    try:
        with ThrottleProxy(open_registry.address, rate=256 * 1024) as proxy:
            reference = f"{proxy.address}/{repository}"
            started = time.monotonic()
            call = stub.PullImageOnNodes(
                pb.PullImageOnNodesRequest(
                    reference=reference,
                    parallelism="3",
                    node_timeout_seconds=NODE_TIMEOUT_SECONDS,
                    stall_timeout_seconds=stall_seconds,
                ),
                metadata=credentials.metadata(credentials.caller),
                timeout=120,
            )
            for response in call:
                if response.HasField("summary"):
                    summary = response.summary
                    break
                node = response.node
                if node.phase == pb.NODE_PULL_PHASE_FAILED:
                    failed_at[node.address] = time.monotonic() - started
                if cut_at is None and node.address == cut_node.address and node.bytes_done > 0:
                    namespace.set_link(up=False)
                    cut_at = time.monotonic() - started
                    proxy.set_rate(None)  # the others finish at full speed
            ended_at = time.monotonic() - started

        assert cut_at is not None, "node-2 never reported progress"
        # Still cut off: the next call to node-2 goes on the connection that went silent
        # and is reported within --fleet-node-timeout-seconds.
        during = time.monotonic()
        cut_off = list_nodes(stub, credentials)[cut_node.address]
        assert time.monotonic() - during < LIST_TIMEOUT_SECONDS + 1.5
        assert not cut_off.ready
        assert cut_off.error.reason == "NODE_TIMEOUT", cut_off.error
    finally:
        namespace.set_link(up=True)

    assert summary is not None
    assert [n.node for n in summary.succeeded] == ["node-0", "node-1"], summary
    assert [n.address for n in summary.failed] == [cut_node.address], summary
    failed = summary.failed[0]
    assert failed.error.reason == reason, failed.error
    if reason == "TIMED_OUT":
        assert f"within {NODE_TIMEOUT_SECONDS:g} s" in failed.error.message
    else:
        assert "stopped answering during its pull" in failed.error.message
    assert failed.attempt == 1
    assert not summary.complete
    # Reported failed after the cut, within its bound (from the call's start: it
    # started at once) plus a margin for the loaded machine; the call ended with it.
    assert set(failed_at) == {cut_node.address}
    assert cut_at < failed_at[cut_node.address] < bound_seconds + 1.5, (cut_at, failed_at)
    assert ended_at < bound_seconds + 2.0, ended_at

    # Back up: the very next call reaches node-2 again, and so does a fleet pull.
    back = list_nodes(stub, credentials)[cut_node.address]
    assert back.ready, back.error
    assert back.name == "node-2"
    direct = f"{open_registry.address}/{repository}"
    again = None
    for response in stub.PullImageOnNodes(
        pb.PullImageOnNodesRequest(reference=direct, node_timeout_seconds=60),
        metadata=credentials.metadata(credentials.caller),
        timeout=120,
    ):
        if response.HasField("summary"):
            again = response.summary
    assert again is not None
    assert not again.failed, again
    assert sorted(n.node for n in [*again.succeeded, *again.skipped]) == NAMES
    assert again.complete
