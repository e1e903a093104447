"""Build-context speed: `imagesvc-cli build --no-cache` against `docker build --no-cache`
of the same directory (one random file, `FROM scratch` + `COPY`) on the same sandboxed
engine, alternating, with each one's median, their ratio (of the medians, and the median
of the per-round ratios: bench/pairing.py) and the server's peak RSS.

The server runs as a child process (`imagesvc serve`), so its peak RSS (VmHWM) is its
own. The docker CLI uses the classic builder (DOCKER_BUILDKIT=0), the Engine API the
service calls, so both send the same context to the same endpoint.

    .venv/bin/python -m bench.build_context                      # 300 MB, 3 rounds
    .venv/bin/python -m bench.build_context --sizes-mb 300,1024 --rounds 5
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import imagesvc_client
from bench.pairing import median_round_ratio, rotated
from devtools.sandbox import Sandbox, SandboxEngine
from devtools.served import ServedProcess
from imagesvc_client import ImageClient

CLI = Path(sys.executable).parent / "imagesvc-cli"
_MIB = 1024 * 1024


def compile_client() -> None:
    """Writes the client's bytecode, as `pip install` does when it installs a package:
    the editable client of a checkout may run where none is written
    (PYTHONDONTWRITEBYTECODE), and would then compile its modules at every start of
    imagesvc-cli (~40 ms), which no installed CLI does."""
    compileall.compile_dir(Path(imagesvc_client.__file__).parent, quiet=1)


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident set size so far (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def make_context(folder: Path, size_bytes: int) -> Path:
    """A directory with a Dockerfile and one random file of `size_bytes`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text("FROM scratch\nCOPY blob /blob\n")
    with open(folder / "blob", "wb") as blob:
        left = size_bytes
        while left > 0:
            piece = min(left, 16 * _MIB)
            blob.write(os.urandom(piece))
            left -= piece
    return folder


def timed(command: Sequence[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env, timeout=1800)
    return time.perf_counter() - started


def client_build(address: str, context: Path, tag: str) -> float:
    """The Python client in this process: the CLI without its start-up (~0.2 s of imports)."""
    started = time.perf_counter()
    with ImageClient(address) as client:
        client.build(str(context), tags=[tag], no_cache=True).wait()
    return time.perf_counter() - started


def run_size(
    engine: SandboxEngine,
    served: ServedProcess,
    size_mb: int,
    rounds: int,
    work: Path,
    *,
    python_client: bool,
) -> tuple[list[float], list[float]]:
    context = make_context(work / f"ctx-{size_mb}", size_mb * _MIB)
    cli_env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    docker = ["docker", "-H", engine.host, "build", "--no-cache", "-q"]
    service, direct = [], []
    for round_number in range(rounds):
        tag = f"imagesvc-bench/ctx:{size_mb}-{round_number}"
        # Alternate which goes first, so that neither always gets a warmer cache.
        for which in rotated(["service", "docker"], round_number):
            if which == "service" and python_client:
                service.append(client_build(served.grpc_address, context, f"{tag}-svc"))
            elif which == "service":
                service.append(
                    timed(
                        [
                            str(CLI),
                            "--server",
                            served.grpc_address,
                            "build",
                            "--no-cache",
                            "-q",
                            "-t",
                            f"{tag}-svc",
                            str(context),
                        ]
                    )
                )
            else:
                direct.append(timed([*docker, "-t", f"{tag}-cli", str(context)], cli_env))
        engine.docker("image", "rm", "--force", f"{tag}-svc", f"{tag}-cli", check=False)
    return service, direct


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", default="300", help="context sizes in MiB, e.g. 300,1024")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--client",
        choices=("cli", "python"),
        default="cli",
        help="imagesvc-cli (a process per build) or the Python client in this process",
    )
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes_mb.split(",")]
    compile_client()
    with Sandbox() as sandbox, tempfile.TemporaryDirectory(prefix="isv-bench-ctx-") as folder:
        engine = sandbox.engine
        limit = str(max(sizes) * _MIB * 2)
        with ServedProcess(engine.host, extra_args=["--build-context-max-bytes", limit]) as served:
            name = "imagesvc-cli" if args.client == "cli" else "python client"
            print(f"{'context':>9} {name:>13} {'docker build':>13} {'ratio':>7} {'per round':>10}")
            for size in sizes:
                service, direct = run_size(
                    engine,
                    served,
                    size,
                    args.rounds,
                    Path(folder),
                    python_client=args.client == "python",
                )
                paired = median_round_ratio(service, direct)
                service_s, direct_s = statistics.median(service), statistics.median(direct)
                print(
                    f"{size:>6}MiB {service_s:>12.2f}s {direct_s:>12.2f}s"
                    f" {service_s / direct_s:>6.2f}x {paired:>9.2f}x"
                )
            print(f"peak server RSS: {peak_rss_bytes(served.pid) / _MIB:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
