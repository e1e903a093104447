"""Soak: N clients of mixed calls against one server for T seconds, on loopback only.

Each client (a thread with a gRPC channel of its own) loops over ListImages (page 50),
GetImage, GetImageHistory, TagImage + RemoveImage of a scratch tag, and PullImage of
one small image from a loopback registry, until the time or the call budget is spent.
The server runs as a child process (``imagesvc serve``, default settings) so that its
RSS, descriptors and threads are its own; they are sampled after the warm-up and at the
end. Prints calls, errors by code, p50/p99 per RPC and those figures; exits 1 on any
error (at default settings no error is designed: nothing should fail) and, with
``--max-rss-growth-percent``, when RSS grew more than that after the warm-up.

    .venv/bin/python -m bench.soak --clients 64 --seconds 600
    .venv/bin/python -m bench.soak --clients 16 --seconds 60      # the CI version
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc

from devtools.sandbox import Registry, Sandbox, SandboxEngine, build_busybox_image
from devtools.served import ProcessFigures, ServedProcess
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc

BASE = "imagesvc-soak/base:1"
CALL_TIMEOUT = 60.0


@dataclass
class Tally:
    """What every client recorded, under one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    errors: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    examples: dict[tuple[str, str], str] = field(default_factory=dict)
    calls: int = 0

    def record(self, rpc: str, seconds: float, error: grpc.RpcError | None) -> None:
        with self.lock:
            self.calls += 1
            self.latencies[rpc].append(seconds)
            if error is not None:
                key = (rpc, error.code().name)
                self.errors[key] += 1
                self.examples.setdefault(key, str(error.details()))


@dataclass(frozen=True)
class Workload:
    pull_reference: str
    base: str = BASE


class Client:
    """One client's loop of mixed calls."""

    def __init__(self, number: int, address: str, workload: Workload, tally: Tally) -> None:
        self._number = number
        self._channel = grpc.insecure_channel(address)
        self._stub = image_service_pb2_grpc.ImageServiceStub(self._channel)
        self._workload = workload
        self._tally = tally

    def _call(self, rpc: str, call: Callable[[], object]) -> bool:
        started = time.perf_counter()
        try:
            call()
        except grpc.RpcError as error:
            self._tally.record(rpc, time.perf_counter() - started, error)
            return False
        self._tally.record(rpc, time.perf_counter() - started, None)
        return True

    def round(self, round_number: int) -> None:
        stub, base = self._stub, self._workload.base
        self._call(
            "ListImages",
            lambda: stub.ListImages(pb.ListImagesRequest(page_size=50), timeout=CALL_TIMEOUT),
        )
        self._call(
            "GetImage", lambda: stub.GetImage(pb.GetImageRequest(image=base), timeout=CALL_TIMEOUT)
        )
        self._call(
            "GetImageHistory",
            lambda: stub.GetImageHistory(
                pb.GetImageHistoryRequest(image=base), timeout=CALL_TIMEOUT
            ),
        )
        scratch = f"imagesvc-soak/scratch-{self._number}:{round_number}"
        tagged = self._call(
            "TagImage",
            lambda: stub.TagImage(
                pb.TagImageRequest(source=base, target=scratch), timeout=CALL_TIMEOUT
            ),
        )
        if tagged:
            self._call(
                "RemoveImage",
                lambda: stub.RemoveImage(
                    pb.RemoveImageRequest(image=scratch), timeout=CALL_TIMEOUT
                ),
            )
        self._call(
            "PullImage",
            lambda: list(
                stub.PullImage(
                    pb.PullImageRequest(reference=self._workload.pull_reference),
                    timeout=CALL_TIMEOUT,
                )
            ),
        )

    def run(self, until: float, budget: Callable[[], bool]) -> None:
        round_number = 0
        while time.monotonic() < until and budget():
            self.round(round_number)
            round_number += 1

    def close(self) -> None:
        self._channel.close()


def _percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _drive(
    address: str, workload: Workload, clients: int, seconds: float, max_calls: int, tally: Tally
) -> None:
    until = time.monotonic() + seconds
    pool = [Client(number, address, workload, tally) for number in range(clients)]

    def budget() -> bool:
        return tally.calls < max_calls

    threads = [
        threading.Thread(target=client.run, args=(until, budget), name=f"soak-{i}")
        for i, client in enumerate(pool)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client in pool:
        client.close()


@dataclass(frozen=True)
class SoakResult:
    tally: Tally
    before: ProcessFigures
    after: ProcessFigures
    seconds: float

    @property
    def rss_growth_percent(self) -> float:
        return 100.0 * (self.after.rss_bytes - self.before.rss_bytes) / self.before.rss_bytes

    def report(self) -> str:
        tally = self.tally
        lines = [
            f"{tally.calls} calls in {self.seconds:.0f}s ({tally.calls / self.seconds:.0f}/s),"
            f" {sum(tally.errors.values())} errors",
        ]
        for (rpc, code), count in sorted(tally.errors.items()):
            lines.append(f"  error {rpc} {code}: {count} (e.g. {tally.examples[(rpc, code)]})")
        lines.append(f"{'rpc':<16} {'calls':>7} {'p50 ms':>8} {'p99 ms':>8}")
        for rpc, samples in sorted(tally.latencies.items()):
            lines.append(
                f"{rpc:<16} {len(samples):>7} {statistics.median(samples) * 1000:>8.1f}"
                f" {_percentile(samples, 0.99) * 1000:>8.1f}"
            )
        lines.append(f"server before: {self.before.describe()}")
        lines.append(f"server after:  {self.after.describe()}")
        lines.append(f"RSS growth after warm-up: {self.rss_growth_percent:+.1f}%")
        return "\n".join(lines)


def soak_against(
    engine: SandboxEngine,
    registry: Registry,
    *,
    clients: int,
    seconds: float,
    warmup_seconds: float,
    max_calls: int,
    settle_seconds: float = 2.0,
) -> SoakResult:
    """Runs the soak against a sandboxed engine and a registry without auth (both on
    loopback), with a server of its own."""
    build_busybox_image(engine, BASE)
    small = f"{registry.address}/imagesvc-soak/small:1"
    engine.docker("tag", BASE, small)
    engine.docker("push", small)
    engine.docker("image", "rm", small)
    workload = Workload(pull_reference=small)
    with ServedProcess(engine.host) as served:
        # The warm-up fills the thread pools, connection pools and caches; its calls
        # count for errors but not for the figures or the latencies.
        warmup = Tally()
        _drive(served.grpc_address, workload, clients, warmup_seconds, max_calls, warmup)
        time.sleep(settle_seconds)
        before = served.figures()
        tally = Tally()
        started = time.monotonic()
        _drive(served.grpc_address, workload, clients, seconds, max_calls, tally)
        took = time.monotonic() - started
        time.sleep(settle_seconds)
        after = served.figures()
        tally.errors.update(warmup.errors)
        for key, example in warmup.examples.items():
            tally.examples.setdefault(key, example)
        if tally.errors:
            failures = [line for line in served.log_text().splitlines() if "call failed" in line]
            for line in failures[:10]:
                print(f"server: {line}", file=sys.stderr)
    engine.docker("image", "rm", "--force", small, BASE, check=False)
    return SoakResult(tally, before, after, took)


def soak(*, clients: int, seconds: float, warmup_seconds: float, max_calls: int) -> SoakResult:
    """Runs the soak on a sandboxed engine and registry of its own."""
    with Sandbox() as sandbox:
        return soak_against(
            sandbox.engine,
            sandbox.open_registry,
            clients=clients,
            seconds=seconds,
            warmup_seconds=warmup_seconds,
            max_calls=max_calls,
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=600.0, help="after the warm-up")
    parser.add_argument("--warmup-seconds", type=float, default=30.0)
    parser.add_argument(
        "--max-calls", type=int, default=2_000_000, help="stop after this many calls at most"
    )
    parser.add_argument(
        "--max-rss-growth-percent",
        type=float,
        default=None,
        help="fail when the server's RSS grew more than this after the warm-up",
    )
    args = parser.parse_args(argv)
    if args.seconds > 3600 or args.clients > 512:
        parser.error("bounded: at most 3600 seconds and 512 clients")
    result = soak(
        clients=args.clients,
        seconds=args.seconds,
        warmup_seconds=args.warmup_seconds,
        max_calls=args.max_calls,
    )
    print(result.report())
    failed = bool(result.tally.errors)
    if args.max_rss_growth_percent is not None and (
        result.rss_growth_percent > args.max_rss_growth_percent
    ):
        print(f"RSS grew more than {args.max_rss_growth_percent}%", file=sys.stderr)
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
