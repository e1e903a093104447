"""Benchmark: PullImageOnNodes of one image to four nodes against the slowest
single-node PullImage of it, in the same run. Four sandboxed dockerds, each with its own
imagesvc on 127.0.0.2 to 127.0.0.5 (one port; peers from a `host:port` list), a local
registry, an image with one random layer (30 MB by default).

Each round pulls the image on each node alone (PullImage, one node after the other),
removes it, then pulls it on all four at once with four PullImage calls of the
client's own (one per node, in threads: what the machine allows, without the fleet),
then with PullImageOnNodes (parallelism 4). Prints each round and the medians: the fleet
pull against the slowest single-node pull of the same round (the issue's target: at most
1.3x) and against the four direct pulls at once (the fleet's own overhead). On a machine
with fewer cores than nodes, four dockerds decompressing at once share the CPU, which
the second ratio shows apart from the fleet.

``--node-cpu SHARE`` gives each node's dockerd and its children (containerd, shims,
whatever they start later) a cgroup with a CPU quota of SHARE CPUs, the same in every
measurement, as a node with its own CPUs would have: a node pulling alone then gets no
more CPU than one pulling beside three others. Disk and the registry stay shared; the
imagesvc servers (threads of this process), the registry and the client stay unlimited.

    .venv/bin/python -m bench.fleet_pull                     # 30 MB, 3 rounds
    .venv/bin/python -m bench.fleet_pull --layer-mb 30 --rounds 5
    .venv/bin/python -m bench.fleet_pull --rounds 5 --node-cpu 0.35   # needs root
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from bench.cpu_share import CpuGroup, cpu_groups, process_tree
from devtools.sandbox import Engine, Registry, build_busybox_image, free_port
from imagesvc.config import Settings
from imagesvc.server import ThreadedServer
from imagesvc.v1 import fleet_service_pb2 as fleet_pb
from imagesvc.v1 import fleet_service_pb2_grpc, image_service_pb2_grpc
from imagesvc.v1 import image_service_pb2 as pb

HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]


@contextlib.contextmanager
def sandbox(base: Path) -> Iterator[tuple[Registry, list[Engine]]]:
    registry = Registry(base / "registry")
    engines = [Engine(base / f"node{n}") for n in range(len(HOSTS))]
    registry.start()
    try:
        with ThreadPoolExecutor(len(engines)) as pool:
            list(pool.map(lambda engine: engine.start(), engines))
        try:
            yield registry, engines
        finally:
            for engine in engines:
                engine.stop()
    finally:
        registry.stop()


@contextlib.contextmanager
def fleet(engines: list[Engine]) -> Iterator[int]:
    port = free_port()
    peers = ",".join(f"{host}:{port}" for host in HOSTS)
    servers = [
        ThreadedServer(
            Settings(
                grpc_address=f"{host}:{port}",
                http_address=f"{host}:0",
                docker_host=engine.host,
                node_name=f"node-{n}",
                fleet_peers=peers,
            )
        )
        for n, (host, engine) in enumerate(zip(HOSTS, engines, strict=True))
    ]
    try:
        yield port
    finally:
        for server in servers:
            server.stop()


def pull_alone(address: str, reference: str) -> float:
    with grpc.insecure_channel(address) as channel:
        stub = image_service_pb2_grpc.ImageServiceStub(channel)
        started = time.perf_counter()
        responses = list(stub.PullImage(pb.PullImageRequest(reference=reference), timeout=600))
        elapsed = time.perf_counter() - started
    assert responses[-1].WhichOneof("kind") == "result"
    return elapsed


def pull_on_nodes(address: str, reference: str) -> float:
    with grpc.insecure_channel(address) as channel:
        stub = fleet_service_pb2_grpc.FleetServiceStub(channel)
        request = fleet_pb.PullImageOnNodesRequest(reference=reference, parallelism="4")
        started = time.perf_counter()
        responses = list(stub.PullImageOnNodes(request, timeout=600))
        elapsed = time.perf_counter() - started
    summary = responses[-1].summary
    assert len(summary.succeeded) == len(HOSTS), summary
    return elapsed


def pull_each_at_once(port: int, reference: str) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(len(HOSTS)) as pool:
        list(pool.map(lambda host: pull_alone(f"{host}:{port}", reference), HOSTS))
    return time.perf_counter() - started


def remove_everywhere(engines: list[Engine], reference: str) -> None:
    for engine in engines:
        engine.docker("image", "rm", "--force", reference, check=False)


def confine(engines: list[Engine], groups: list[CpuGroup]) -> None:
    """Put each node's dockerd, its process tree and its leftovers (containerd
    by exec root) into the node's cgroup. Repeated before each measurement: children
    inherit the cgroup, so this only catches what escaped it."""
    for engine, group in zip(engines, groups, strict=True):
        pid = engine.pid
        if pid is None:
            raise RuntimeError(f"{engine!r} is not running")
        group.add_processes([*process_tree(pid), *engine.leftover_processes()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer-mb", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--node-cpu",
        type=float,
        default=None,
        metavar="SHARE",
        help="CPU quota of each node's dockerd and children, in CPUs (e.g. 0.35); "
        "default: unlimited",
    )
    args = parser.parse_args()
    # SIGTERM (timeout, kill) runs the finally blocks too: engines stop, cgroups go.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    share = "unlimited" if args.node_cpu is None else f"{args.node_cpu:g} CPU"
    print(
        f"fleet pull bench: {args.layer_mb} MB layer, {args.rounds} rounds,"
        f" {len(HOSTS)} nodes, per-node CPU share {share}"
        f" (machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f})",
        flush=True,
    )
    base = Path(tempfile.mkdtemp(prefix="isv-bench-fleet-", dir="/tmp"))
    try:
        with sandbox(base) as (registry, engines):
            reference = f"{registry.address}/bench/fleet-pull:1"
            build_busybox_image(
                engines[0],
                reference,
                extra_lines=[f"RUN dd if=/dev/urandom of=/blob bs=1M count={args.layer_mb}"],
            )
            engines[0].docker("push", reference)
            remove_everywhere(engines, reference)
            # The image is built and pushed unlimited; the quota applies from here on.
            limits: contextlib.AbstractContextManager[list[CpuGroup] | None] = (
                contextlib.nullcontext(None)
                if args.node_cpu is None
                else cpu_groups("isv-bench-fleet", len(engines), args.node_cpu)
            )
            with limits as groups, fleet(engines) as port:
                if groups is not None:
                    confine(engines, groups)
                    print("cgroups: " + ", ".join(str(g.path) for g in groups), flush=True)

                def limit() -> None:
                    if groups is not None:
                        confine(engines, groups)

                slowest: list[float] = []
                direct: list[float] = []
                together: list[float] = []
                for round_number in range(1, args.rounds + 1):
                    alone = []
                    for host in HOSTS:
                        limit()
                        alone.append(pull_alone(f"{host}:{port}", reference))
                        remove_everywhere(engines, reference)
                    limit()
                    at_once = pull_each_at_once(port, reference)
                    remove_everywhere(engines, reference)
                    limit()
                    fleet_seconds = pull_on_nodes(f"{HOSTS[0]}:{port}", reference)
                    remove_everywhere(engines, reference)
                    slowest.append(max(alone))
                    direct.append(at_once)
                    together.append(fleet_seconds)
                    throttled = (
                        ""
                        if groups is None
                        else f"; quota throttled {sum(g.throttled_seconds() for g in groups):.1f}s"
                        " so far (all nodes)"
                    )
                    print(
                        f"round {round_number}: single-node pulls "
                        + " ".join(f"{s:.2f}s" for s in alone)
                        + f"; {len(HOSTS)} direct pulls at once {at_once:.2f}s"
                        f"; fleet pull to {len(HOSTS)} nodes {fleet_seconds:.2f}s"
                        f" ({fleet_seconds / max(alone):.2f}x the slowest)"
                        f"{throttled}; load {os.getloadavg()[0]:.2f}",
                        flush=True,
                    )
                median_slowest = statistics.median(slowest)
                median_direct = statistics.median(direct)
                median_fleet = statistics.median(together)
                print(
                    f"{args.layer_mb} MB layer, {args.rounds} rounds, per-node CPU {share},"
                    " medians:"
                    f" slowest single-node pull {median_slowest:.2f}s,"
                    f" {len(HOSTS)} direct pulls at once {median_direct:.2f}s,"
                    f" fleet pull to {len(HOSTS)} nodes {median_fleet:.2f}s;"
                    f" fleet / slowest single {median_fleet / median_slowest:.2f}x"
                    " (target <= 1.3x),"
                    f" fleet / direct at once {median_fleet / median_direct:.2f}x"
                )
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
