"""``imagesvc serve`` as a child process, and its own figures from /proc.

For the soak (bench/soak.py) and the leak tests: in a process of its own, the server's
resident memory, descriptors and threads are its own, not the test runner's or the
clients'. Loopback only: both ports listen on 127.0.0.1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devtools.closing import StartedOnEnter
from devtools.sandbox import free_port

IMAGESVC = Path(sys.executable).parent / "imagesvc"


@dataclass(frozen=True)
class ProcessFigures:
    """What a process holds at one moment."""

    rss_bytes: int
    fds: int
    threads: int
    # Threads of the server's Engine thread pools (named docker_N, docker-stream_N,
    # docker-ping_N in the kernel): bounded by --docker-workers and the stream workers,
    # they grow in bursts and never shrink.
    pool_threads: int
    # Unix sockets among the descriptors: the server's only ones are its connections
    # to a unix:// Docker daemon.
    unix_sockets: int

    def describe(self) -> str:
        return (
            f"RSS {self.rss_bytes / 2**20:.1f} MiB, {self.fds} fds"
            f" ({self.unix_sockets} unix sockets), {self.threads} threads"
            f" ({self.pool_threads} in the Engine pools)"
        )


def _unix_socket_inodes() -> set[str]:
    inodes = set()
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 7:
            inodes.add(fields[6])
    return inodes


def accepted_connections(socket_path: str | Path) -> int:
    """Connections a unix socket's listener holds open (accepted and not yet closed):
    for a Docker daemon's socket, the requests and idle keep-alive connections of every
    client."""
    connected = 0
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        # Num RefCount Protocol Flags Type St Inode Path; St 03 is connected.
        if len(fields) >= 8 and fields[5] == "03" and fields[7] == str(socket_path):
            connected += 1
    return connected


def process_figures(pid: int) -> ProcessFigures:
    status = Path(f"/proc/{pid}/status").read_text()
    values = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss_kib = int(values["VmRSS"].split()[0])
    threads = int(values["Threads"])
    pool_threads = 0
    for task in os.scandir(f"/proc/{pid}/task"):
        try:
            comm = Path(task.path, "comm").read_text().strip()
        except OSError:
            continue
        pool_threads += comm.startswith("docker")
    unix = _unix_socket_inodes()
    fds = 0
    unix_sockets = 0
    for entry in os.scandir(f"/proc/{pid}/fd"):
        fds += 1
        try:
            target = os.readlink(entry.path)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in unix:
            unix_sockets += 1
    return ProcessFigures(rss_kib * 1024, fds, threads, pool_threads, unix_sockets)


class ServedProcess(StartedOnEnter):
    """``imagesvc serve`` against ``docker_host``, on two free loopback ports unless
    given (``grpc_address``, ``http_address``), run through ``wrapper`` when set (e.g.
    ``ip netns exec NAME``), with ``extra_env``; ``start()`` returns once its gRPC health,
    asked at ``grpc_address``, says SERVING."""

    def __init__(
        self,
        docker_host: str,
        *,
        extra_args: Sequence[str] = (),
        grpc_address: str | None = None,
        http_address: str | None = None,
        wrapper: Sequence[str] = (),
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.grpc_address = grpc_address or f"127.0.0.1:{free_port()}"
        self.grpc_port = int(self.grpc_address.rpartition(":")[2])
        self.http_port = int(http_address.rpartition(":")[2]) if http_address else free_port()
        self._args = [
            *wrapper,
            str(IMAGESVC),
            "serve",
            "--grpc-address",
            self.grpc_address,
            "--http-address",
            http_address or f"127.0.0.1:{self.http_port}",
            "--docker-host",
            docker_host,
            *extra_args,
        ]
        self._extra_env = dict(extra_env or {})
        self._log = tempfile.NamedTemporaryFile(prefix="imagesvc-served-", suffix=".log")  # noqa: SIM115
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def figures(self) -> ProcessFigures:
        return process_figures(self.pid)

    def log_text(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def start(self, within: float = 30.0) -> ServedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGESVC_")}
        env.update(self._extra_env)
        self.process = subprocess.Popen(
            self._args, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, env=env
        )
        deadline = time.monotonic() + within
        with grpc.insecure_channel(self.grpc_address) as channel:
            health: object = health_pb2_grpc.HealthStub(channel)
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"imagesvc exited: {self.log_text()[-2000:]}")
                try:
                    answer = health.Check(  # type: ignore[attr-defined]
                        health_pb2.HealthCheckRequest(), timeout=1
                    )
                    if answer.status == health_pb2.HealthCheckResponse.SERVING:
                        return self
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"imagesvc not SERVING at {self.grpc_address} within {within}s:"
                        f" {self.log_text()[-2000:]}"
                    )
                time.sleep(0.05)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()
