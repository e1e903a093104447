"""Benchmark: ExportImages of a large image (1 GiB by default) against `docker save` of
it, on the same sandboxed Engine in the same run, alternating, medians; and the peak
resident memory of the server (`imagesvc serve` in a process of its own: VmHWM).

Each round runs, in turn (starting at a different one each round): `docker save IMAGE`
(the CLI process, into /dev/null), the Python client's `ImageClient.export` over gRPC
(into /dev/null), REST `GET /v1/images:export` read with httpx, and `imagesvc-cli save
IMAGE` (the CLI process, into /dev/null). Each call's speed against the CLI is printed
two ways: the ratio of the medians, and the median of the per-round ratios
(bench/pairing.py), which the target is checked on. Targets (issue 16): ExportImages at
>= 0.9x the CLI's speed, peak server RSS < 150 MB. Exit status 1 when a target is missed.

    .venv/bin/python -m bench.save --size-mib 1024 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import httpx

from bench.build_context import compile_client, peak_rss_bytes
from bench.pairing import median_round_ratio, rotated
from devtools.sandbox import Sandbox, build_busybox_image
from devtools.served import ServedProcess
from imagesvc_client import ImageClient

IMAGE = "imagesvc-bench/save:1"
CLI = Path(sys.executable).with_name("imagesvc-cli")
SPEED_TARGET = 0.9
RSS_TARGET_BYTES = 150 * 10**6


def _timed(run: Callable[[], int]) -> tuple[float, int]:
    started = time.perf_counter()
    size = run()
    return time.perf_counter() - started, size


def run(size_mib: int, rounds: int) -> bool:
    with Sandbox() as sandbox:
        engine = sandbox.engine
        print(f"building {IMAGE} with a {size_mib} MiB layer ...", flush=True)
        build_busybox_image(
            engine,
            IMAGE,
            extra_lines=(f"RUN head -c {size_mib * 2**20} /dev/urandom > /blob",),
        )
        environment = {k: v for k, v in os.environ.items() if not k.startswith("IMAGESVC_")}
        with ServedProcess(engine.host) as served, open(os.devnull, "wb") as null:
            client = ImageClient(served.grpc_address, timeout=60)
            rest = httpx.Client(
                base_url=f"http://127.0.0.1:{served.http_port}", timeout=600, trust_env=False
            )

            docker_env = {
                **{k: v for k, v in environment.items() if not k.startswith("DOCKER_")},
                "DOCKER_CONFIG": str(engine.docker_config),
            }

            def docker_save() -> int:
                subprocess.run(
                    ["docker", "-H", engine.host, "save", IMAGE],
                    stdout=null,
                    env=docker_env,
                    check=True,
                )
                return 0

            def grpc_export() -> int:
                return client.export(IMAGE, null)

            def rest_export() -> int:
                size = 0
                path = f"/v1/images:export?images={quote(IMAGE, safe='')}"
                with rest.stream("GET", path) as response:
                    response.raise_for_status()
                    for chunk in response.iter_raw(1 << 20):
                        size += len(chunk)
                return size

            def cli_save() -> int:
                subprocess.run(
                    [str(CLI), "save", IMAGE],
                    stdout=null,
                    env={**environment, "IMAGESVC_SERVER": served.grpc_address},
                    check=True,
                )
                return 0

            calls: dict[str, Callable[[], int]] = {
                "docker save (CLI)": docker_save,
                "ExportImages (gRPC, Python client)": grpc_export,
                "REST GET /v1/images:export": rest_export,
                "imagesvc-cli save": cli_save,
            }
            samples: dict[str, list[float]] = {name: [] for name in calls}
            archive_bytes = 0
            grpc_export()  # warm-up: page cache, connections
            for round_number in range(rounds):
                for name in rotated(list(calls), round_number):
                    seconds, size = _timed(calls[name])
                    archive_bytes = size or archive_bytes
                    samples[name].append(seconds)
                print(f"round {round_number + 1}/{rounds} done", flush=True)
            peak = peak_rss_bytes(served.pid)
            rest.close()
            client.close()

    cli_samples = samples["docker save (CLI)"]
    direct = statistics.median(cli_samples)
    print(f"\narchive {archive_bytes / 2**20:.0f} MiB, {rounds} rounds, medians")
    print(f"{'call':40} {'seconds':>8} {'MiB/s':>8} {'speed vs CLI':>13} {'per round':>10}")
    for name, values in samples.items():
        median = statistics.median(values)
        rate = archive_bytes / 2**20 / median
        paired = median_round_ratio(cli_samples, values)
        print(f"{name:40} {median:8.2f} {rate:8.0f} {direct / median:12.2f}x {paired:9.2f}x")
    speed = median_round_ratio(cli_samples, samples["ExportImages (gRPC, Python client)"])
    speed_ok = speed >= SPEED_TARGET
    rss_ok = peak < RSS_TARGET_BYTES
    print(
        f"\nExportImages speed {speed:.2f}x docker save, median of the rounds'"
        f" (target >= {SPEED_TARGET}x):"
        f" {'pass' if speed_ok else 'FAIL'}"
    )
    print(
        f"peak server RSS {peak / 10**6:.1f} MB (target < {RSS_TARGET_BYTES / 10**6:.0f} MB):"
        f" {'pass' if rss_ok else 'FAIL'}"
    )
    return speed_ok and rss_ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    compile_client()
    sys.exit(0 if run(args.size_mib, args.rounds) else 1)


if __name__ == "__main__":
    main()
