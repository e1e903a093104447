"""Image import speed: `imagesvc-cli load -i FILE` (ImportImages) against `docker load -i
FILE` of the same `docker save` archive on the same sandboxed engine, alternating (the
image removed before each load), with each one's median, the service's speed relative
to the CLI's (docker time / service time: 1.0 is as fast; of the medians, and the median
of the per-round ratios: bench/pairing.py) and the server's peak RSS.

    .venv/bin/python -m bench.load                     # a 256 MiB image, 3 rounds
    .venv/bin/python -m bench.load --size-mb 1024 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.build_context import compile_client, make_context, peak_rss_bytes
from bench.pairing import median_round_ratio, rotated
from devtools.sandbox import Sandbox, SandboxEngine
from devtools.served import ServedProcess

CLI = Path(sys.executable).parent / "imagesvc-cli"
TAG = "imagesvc-bench/load:1"
_MIB = 1024 * 1024


def timed(command: Sequence[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, timeout=1800)
    return time.perf_counter() - started


def saved_image(engine: SandboxEngine, size_mb: int, work: Path) -> Path:
    """An image of one random `size_mb` layer, saved to a file and removed."""
    context = make_context(work / "ctx", size_mb * _MIB)
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    subprocess.run(
        ["docker", "-H", engine.host, "build", "-q", "-t", TAG, str(context)],
        check=True,
        stdout=subprocess.DEVNULL,
        env=env,
    )
    archive = work / "image.tar"
    engine.docker("save", "--output", str(archive), TAG)
    engine.docker("image", "rm", "--force", TAG)
    return archive


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=256, help="the image's size in MiB")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    compile_client()
    with Sandbox() as sandbox, tempfile.TemporaryDirectory(prefix="isv-bench-load-") as folder:
        engine = sandbox.engine
        archive = saved_image(engine, args.size_mb, Path(folder))
        limit = str(2 * archive.stat().st_size)
        with ServedProcess(engine.host, extra_args=["--import-max-bytes", limit]) as served:
            service_cli = [str(CLI), "--server", served.grpc_address, "load", "-i", str(archive)]
            docker_cli = ["docker", "-H", engine.host, "load", "-i", str(archive)]
            service, direct = [], []
            for round_number in range(args.rounds):
                for through_service in rotated([True, False], round_number):
                    engine.docker("image", "rm", "--force", TAG, check=False)
                    if through_service:
                        service.append(timed(service_cli))
                    else:
                        direct.append(timed(docker_cli))
            engine.docker("image", "rm", "--force", TAG, check=False)
            service_s, direct_s = statistics.median(service), statistics.median(direct)
            size = archive.stat().st_size / _MIB
            paired = median_round_ratio(direct, service)
            print(
                f"{'archive':>9} {'imagesvc-cli':>13} {'docker load':>12}"
                f" {'speed':>7} {'per round':>10}"
            )
            print(
                f"{size:>6.0f}MiB {service_s:>12.2f}s {direct_s:>11.2f}s"
                f" {direct_s / service_s:>6.2f}x {paired:>9.2f}x"
            )
            print(f"peak server RSS: {peak_rss_bytes(served.pid) / _MIB:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
