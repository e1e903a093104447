"""`imagesvc serve` on SIGTERM: NOT_SERVING, no new calls, running calls finish, exit 0."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devtools.sandbox import BuiltImage, Engine, free_port
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc
from tests.integration.builds import (
    BuildOutcome,
    build_requests,
    dockerfile,
    make_tar,
    read_build,
    unique_repo,
)

SERVICE = "imagesvc.v1.ImageService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
GRACE_SECONDS = 5.0
IMAGESVC = Path(sys.executable).with_name("imagesvc")


def health_stub(channel: grpc.Channel) -> Any:
    """A Health client (typed Any: the types-grpcio-health-checking stub has no methods)."""
    return health_pb2_grpc.HealthStub(channel)


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    address: str
    stdout: Path
    stderr: Path

    def output(self) -> tuple[str, str]:
        return self.stdout.read_text(), self.stderr.read_text()


@pytest.fixture
def served(engine: Engine, tmp_path: Path) -> Iterator[Served]:
    """`imagesvc serve` as a child process on a free loopback port."""
    address = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGESVC_")}
    env["DOCKER_HOST"] = engine.host
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [
                str(IMAGESVC),
                "serve",
                "--grpc-address",
                address,
                "--http-address",
                f"127.0.0.1:{free_port()}",
                "--shutdown-grace-seconds",
                str(GRACE_SECONDS),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
        )
    try:
        yield Served(process, address, stdout, stderr)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def wait_serving(channel: grpc.Channel, served: Served, within: float = 20) -> None:
    deadline = time.monotonic() + within
    while True:
        assert served.process.poll() is None, f"imagesvc exited: {served.output()}"
        try:
            status = health_stub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1).status
            if status == SERVING:
                return
        except grpc.RpcError:
            pass
        assert time.monotonic() < deadline, f"not SERVING within {within}s: {served.output()}"
        time.sleep(0.05)


class Background:
    """Runs ``target`` on a thread of its own and keeps what it returned, and when."""

    def __init__(self, target: Any) -> None:
        self.result: Any = None
        self.finished_at = 0.0
        self._thread = threading.Thread(target=self._run, args=(target,), daemon=True)
        self._thread.start()

    def _run(self, target: Any) -> None:
        self.result = target()
        self.finished_at = time.monotonic()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()


def test_sigterm_drains_a_running_build_and_exits_0(
    served: Served, engine: Engine, busybox_image: BuiltImage
) -> None:
    tag = f"{unique_repo('shutdown')}:1"
    marker = f"shutdown-{uuid.uuid4().hex}"
    context = make_tar(
        {
            "Dockerfile": dockerfile(
                f"FROM {busybox_image.tag}", f"RUN echo {marker} && sleep 3 && echo slept"
            )
        }
    )
    try:
        with grpc.insecure_channel(served.address) as channel:
            wait_serving(channel, served)
            stub = image_service_pb2_grpc.ImageServiceStub(channel)
            watch = health_stub(channel).Watch(
                health_pb2.HealthCheckRequest(service=SERVICE), timeout=30
            )
            assert next(watch).status == SERVING

            # A build that is in its `sleep 3` when SIGTERM arrives.
            logs: list[str] = []
            responses = stub.BuildImage(
                iter(build_requests(pb.BuildOptions(tags=[tag]), context)), timeout=30
            )

            def read_rest() -> BuildOutcome:
                return read_build(responses)

            for response in responses:
                logs.append(response.log)
                if re.search(rf"^{marker}$", "".join(logs), re.MULTILINE):
                    break
            assert re.search(r"Running in [0-9a-f]{12}", "".join(logs)), logs
            build = Background(read_rest)

            served.process.send_signal(signal.SIGTERM)
            terminated_at = time.monotonic()

            # Health turns NOT_SERVING for watchers at once ...
            assert next(watch).status == NOT_SERVING
            watch.cancel()
            not_serving_after = time.monotonic() - terminated_at
            # ... and new calls are refused while the build still runs.
            refused_after = None
            refusal: grpc.RpcError | None = None
            while refused_after is None and time.monotonic() - terminated_at < 2:
                try:
                    stub.ListImages(pb.ListImagesRequest(), timeout=1)
                except grpc.RpcError as error:
                    refusal = error
                    refused_after = time.monotonic() - terminated_at
                time.sleep(0.02)
            assert refused_after is not None, "new calls were still accepted 2 s after SIGTERM"
            assert isinstance(refusal, grpc.Call)
            assert refusal.code() is grpc.StatusCode.UNAVAILABLE, refusal
            assert build.is_alive(), "the build ended before new calls were refused"
            assert served.process.poll() is None

            # The running build finishes within the grace period, with its result.
            build.join(timeout=GRACE_SECONDS + 2)
            assert not build.is_alive()
            outcome: BuildOutcome = build.result
            result = outcome.succeeded()
            assert "slept" in "".join(logs) + outcome.text
            built_after = build.finished_at - terminated_at
            assert built_after < GRACE_SECONDS
            inspected = engine.docker("image", "inspect", "--format", "{{.Id}}", tag)
            assert result.image_id == inspected.stdout.strip()
            assert list(result.tags) == [tag]

        code = served.process.wait(timeout=GRACE_SECONDS + 5)
        exited_after = time.monotonic() - terminated_at
        stdout, stderr = served.output()
        assert code == 0, (stdout, stderr)
        print(
            f"SIGTERM -> NOT_SERVING {not_serving_after:.2f}s, calls refused {refused_after:.2f}s,"
            f" build done {built_after:.2f}s, exit {exited_after:.2f}s"
        )
        # The process does not sit out the whole grace once nothing runs any more.
        assert exited_after < built_after + 2

        assert "Traceback" not in stderr, stderr
        entries = [json.loads(line) for line in stdout.splitlines() if line.strip()]
        assert all(isinstance(entry, dict) for entry in entries)
        assert entries, stderr
        builds = [
            e
            for e in entries
            if e.get("message") == "rpc"
            and e.get("grpc_method") == "/imagesvc.v1.ImageService/BuildImage"
        ]
        assert len(builds) == 1, entries
        assert builds[0]["grpc_code"] == "OK"
        assert builds[0]["duration_ms"] > 2000
        assert builds[0]["request_id"]
        messages = [e.get("message") for e in entries]
        assert "shutting down" in messages
        assert messages.index("shutting down") < messages.index("stopped")
        assert messages[-1] == "stopped"
    finally:
        engine.docker("image", "rm", "--force", tag, check=False)
