"""Benchmark: imagesvc's reads beside the Engine's own, against the speed issue 14 asks for.

One run, loopback only: a sandboxed engine (or the daemon at --docker-host) with 40 and
then 400 bench images; for each count the service runs in a process of its own
(bench/read_server.py: `imagesvc serve`'s server with its JSON access log) and this
process measures, each figure beside the Engine's in the same run:

- ListImages (page_size 1000) median beside `GET /images/json` (target at 400 images:
  at most 1/10 of it);
- GetImage median beside `GET /images/{id}/json` (target: at most 1.0 ms and 2x it);
- GetImage throughput at 32 calls in flight beside grpc.health Check's on the same
  server (target: at least 65 %);
- ListImages throughput at 8 in flight (target: 10x today's) beside the same server
  with the index off (`--disable-image-index`: every ListImages asks the Engine, the
  path the service had before the index), and, for information, beside the Engine's own
  `GET /images/json` at 8 in flight, which bounds any Engine-backed service from above.

The REST rows are for information. The Engine is called over its socket with a bare
HTTP/1.1 keep-alive client, not docker-py. Figures are medians of interleaved rounds;
on a shared machine read the ratios. The service answers once its live image index is
live, so the reads measured are the index's.

    .venv/bin/python -m bench.reads [--images 40,400] [--docker-host URL]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.images import ensure_images
from devtools.sandbox import Engine
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent


class EngineConnection(http.client.HTTPConnection):
    """A keep-alive HTTP/1.1 connection to the Engine's API: its unix socket, or a
    loopback TCP address."""

    def __init__(self, docker_host: str) -> None:
        parts = urlsplit(docker_host)
        self._unix = parts.path if parts.scheme == "unix" else None
        if self._unix is None and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit(f"--docker-host must be a unix socket or on loopback: {docker_host}")
        super().__init__(parts.hostname or "localhost", parts.port or 2375, timeout=60)

    def connect(self) -> None:
        if self._unix is None:
            super().connect()
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._unix)
        self.sock = sock

    def get(self, path: str) -> bytes:
        self.request("GET", path)
        response = self.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
        return body


@dataclass
class Row:
    images: int
    what: str
    ours: float
    theirs_name: str
    theirs: float
    unit: str
    target: str = ""
    passed: bool | None = None

    @property
    def ratio(self) -> float:
        return self.ours / self.theirs if self.theirs else float("inf")


def _medians_ms(calls: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Each call's median over `rounds`, the calls interleaved round by round so that
    a busy moment of a shared machine hits them alike."""
    for call in calls.values():  # warm connections and caches
        call()
        call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            samples[name].append((time.perf_counter() - started) * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


async def _calls_per_second(
    call: Callable[[], Awaitable[object]], in_flight: int, seconds: float
) -> float:
    done = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await call()
            done += 1

    for _ in range(in_flight):
        await call()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return done / (time.perf_counter() - started)


def _engine_calls_per_second(docker_host: str, path: str, in_flight: int, seconds: float) -> float:
    """The Engine's own throughput: `in_flight` threads, each with its own connection."""
    counts = [0] * in_flight
    stop = time.perf_counter() + seconds

    def worker(slot: int) -> None:
        connection = EngineConnection(docker_host)
        try:
            while time.perf_counter() < stop:
                connection.get(path)
                counts[slot] += 1
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(in_flight)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


@contextmanager
def service(docker_host: str, *, without_index: bool = False) -> Iterator[dict[str, int]]:
    """bench/read_server.py in its own process; yields its ports."""
    with tempfile.TemporaryDirectory(prefix="imagesvc-reads-") as tmp:
        ready = Path(tmp, "ready.json")
        command = [sys.executable, "-m", "bench.read_server", "--docker-host", docker_host]
        command += ["--ready-file", str(ready)]
        if without_index:
            command.append("--without-index")
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 120
            while not ready.exists() or not ready.read_text():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("bench.read_server did not start")
                time.sleep(0.05)
            yield json.loads(ready.read_text())
        finally:
            process.terminate()
            process.wait(timeout=30)


def measure(docker_host: str, count: int, args: argparse.Namespace) -> list[Row]:
    engine = EngineConnection(docker_host)
    listed = json.loads(engine.get("/images/json"))
    one = next(i["Id"] for i in listed if i.get("RepoTags"))
    with service(docker_host) as ports, service(docker_host, without_index=True) as today:
        target = f"127.0.0.1:{ports['grpc_port']}"
        channel = grpc.insecure_channel(target)
        stub = image_service_pb2_grpc.ImageServiceStub(channel)
        rest = httpx.Client(base_url=f"http://127.0.0.1:{ports['http_port']}", timeout=60)
        total = stub.ListImages(pb.ListImagesRequest(page_size=1000)).total_size

        def rest_get(path: str) -> None:
            rest.get(path).raise_for_status()

        lists = _medians_ms(
            {
                "engine": lambda: engine.get("/images/json"),
                "grpc": lambda: stub.ListImages(pb.ListImagesRequest(page_size=1000)),
                "rest": lambda: rest_get("/v1/images?pageSize=1000"),
            },
            args.list_rounds,
        )
        health: Any = health_pb2_grpc.HealthStub(channel)  # its types have no methods
        gets = _medians_ms(
            {
                "engine": lambda: engine.get(f"/images/{one}/json"),
                "grpc": lambda: stub.GetImage(pb.GetImageRequest(image=one)),
                "rest": lambda: rest_get(f"/v1/images/{one}"),
                "health": lambda: health.Check(health_pb2.HealthCheckRequest()),
            },
            args.get_rounds,
        )
        rest.close()
        channel.close()
        rates = asyncio.run(
            _rates(target, f"127.0.0.1:{today['grpc_port']}", docker_host, one, args)
        )
    engine.close()
    list_target = count >= 400
    return [
        Row(
            total,
            "ListImages page_size=1000, median ms",
            lists["grpc"],
            "GET /images/json",
            lists["engine"],
            "ms",
            "<= 0.10x" if list_target else "(at 400)",
            lists["grpc"] <= 0.1 * lists["engine"] if list_target else None,
        ),
        Row(
            total,
            "REST GET /v1/images?pageSize=1000",
            lists["rest"],
            "GET /images/json",
            lists["engine"],
            "ms",
        ),
        Row(
            total,
            "GetImage, median ms",
            gets["grpc"],
            "GET /images/{id}/json",
            gets["engine"],
            "ms",
            "<= 1.0 ms, <= 2x",
            gets["grpc"] <= 1.0 and gets["grpc"] <= 2 * gets["engine"],
        ),
        # The floor: a unary call to the same server that does nothing.
        Row(
            total,
            "grpc.health Check, median ms",
            gets["health"],
            "GET /images/{id}/json",
            gets["engine"],
            "ms",
        ),
        Row(
            total,
            "REST GET /v1/images/{id}",
            gets["rest"],
            "GET /images/{id}/json",
            gets["engine"],
            "ms",
        ),
        Row(
            total,
            "GetImage /s, 32 in flight",
            rates["get"],
            "health Check /s, 32",
            rates["health"],
            "/s",
            ">= 0.65x",
            rates["get"] >= 0.65 * rates["health"],
        ),
        Row(
            total,
            "ListImages /s, 8 in flight",
            rates["list"],
            "index off (today's) /s, 8",
            rates["list_today"],
            "/s",
            ">= 10x",
            rates["list"] >= 10 * rates["list_today"],
        ),
        Row(
            total,
            "ListImages /s, 8 in flight",
            rates["list"],
            "GET /images/json /s, 8",
            rates["engine_list"],
            "/s",
        ),
    ]


async def _rates(
    target: str, today_target: str, docker_host: str, one: str, args: argparse.Namespace
) -> dict[str, float]:
    """The throughputs, in interleaved rounds: three over one gRPC channel, ListImages
    of the server without the index, and the Engine's `GET /images/json` at 8 in flight."""
    async with (
        grpc.aio.insecure_channel(target) as channel,
        grpc.aio.insecure_channel(today_target) as today_channel,
    ):
        stub = image_service_pb2_grpc.ImageServiceStub(channel)
        today = image_service_pb2_grpc.ImageServiceStub(today_channel)
        health: Any = health_pb2_grpc.HealthStub(channel)  # its types have no methods
        list_request = pb.ListImagesRequest(page_size=1000)
        calls: dict[str, tuple[Callable[[], Awaitable[object]], int]] = {
            "get": (lambda: stub.GetImage(pb.GetImageRequest(image=one)), 32),
            "health": (lambda: health.Check(health_pb2.HealthCheckRequest()), 32),
            "list": (lambda: stub.ListImages(list_request), 8),
            "list_today": (lambda: today.ListImages(list_request), 8),
        }
        samples: dict[str, list[float]] = {name: [] for name in (*calls, "engine_list")}
        for _ in range(args.rate_rounds):
            for name, (call, in_flight) in calls.items():
                samples[name].append(await _calls_per_second(call, in_flight, args.seconds))
            samples["engine_list"].append(
                await asyncio.to_thread(
                    _engine_calls_per_second, docker_host, "/images/json", 8, args.seconds
                )
            )
        return {name: statistics.median(values) for name, values in samples.items()}


def _print(rows: list[Row]) -> None:
    print("imagesvc reads (live image index) beside the Engine's own; medians")
    header = (
        f"{'images':>6}  {'imagesvc':38} {'value':>9}  {'beside':24} {'value':>9}"
        f" {'ratio':>7}  {'target':17} result"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        digits = 2 if row.unit == "ms" else 0
        result = "" if row.passed is None else ("pass" if row.passed else "FAIL")
        print(
            f"{row.images:>6}  {row.what:38} {row.ours:>9.{digits}f}  {row.theirs_name:24}"
            f" {row.theirs:>9.{digits}f} {row.ratio:>6.2f}x  {row.target:17} {result}"
        )


def run(args: argparse.Namespace) -> int:
    engine: Engine | None = None
    tmp: tempfile.TemporaryDirectory[str] | None = None
    docker_host = args.docker_host
    if docker_host is None:
        tmp = tempfile.TemporaryDirectory(prefix="imagesvc-bench-")
        engine = Engine(tmp.name)
        engine.start()
        docker_host = engine.host
    rows: list[Row] = []
    try:
        for count in sorted(args.images):
            ensure_images(docker_host, engine, count)
            rows += measure(docker_host, count, args)
    finally:
        if engine is not None:
            engine.stop()
        if tmp is not None:
            tmp.cleanup()
    _print(rows)
    return 0 if all(row.passed is not False for row in rows) else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docker-host", help="use this daemon (unix socket or loopback)")
    parser.add_argument(
        "--images",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[40, 400],
        help="image counts, comma-separated (default 40,400)",
    )
    parser.add_argument("--get-rounds", type=int, default=300)
    parser.add_argument("--list-rounds", type=int, default=40)
    parser.add_argument("--rate-rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="per throughput round")
    args = parser.parse_args()
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    sys.exit(run(args))


if __name__ == "__main__":
    main()
