"""Benchmark: ListImages / GetImage through imagesvc (gRPC and REST) against the direct
Docker calls.

Runs everything in one process and one run, side by side, on the sandboxed engine
(or the daemon at --docker-host), and prints medians and ratios. Shared, noisy
machines: read the ratios, not the absolute numbers.

    .venv/bin/python -m bench.list_and_inspect --images 40 --rounds 30
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable

import docker
import grpc
import httpx

from bench.images import ensure_images
from devtools.sandbox import Engine
from imagesvc.config import Settings
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc


def _median_ms(fn: Callable[[], object], rounds: int) -> float:
    fn()  # warm connections and caches
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def run(docker_host: str | None, images: int, rounds: int) -> None:
    engine: Engine | None = None
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if docker_host is None:
        tmp = tempfile.TemporaryDirectory(prefix="imagesvc-bench-")
        engine = Engine(tmp.name)
        engine.start()
        docker_host = engine.host
    try:
        ensure_images(docker_host, engine, images)
        client = docker.APIClient(base_url=docker_host, version="1.41")
        high = docker.DockerClient(base_url=docker_host, version="1.41")
        server = ThreadedServer(
            Settings(
                grpc_address="127.0.0.1:0", http_address="127.0.0.1:0", docker_host=docker_host
            )
        )
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        stub = image_service_pb2_grpc.ImageServiceStub(channel)
        rest = httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}")
        total = len(client.images())
        one = client.images()[0]["Id"]

        def rest_get(path: str) -> None:
            rest.get(path).raise_for_status()

        rows = [
            ("docker-py api.images() (direct)", lambda: client.images()),
            (
                "imagesvc ListImages page_size=1000",
                lambda: stub.ListImages(pb.ListImagesRequest(page_size=1000)),
            ),
            (
                "imagesvc ListImages page_size=20",
                lambda: stub.ListImages(pb.ListImagesRequest(page_size=20)),
            ),
            (
                "imagesvc REST GET /v1/images?pageSize=1000",
                lambda: rest_get("/v1/images?pageSize=1000"),
            ),
            ("docker-py images.list() (N+1 inspects)", lambda: high.images.list()),
            (
                "docker image ls (CLI process)",
                lambda: subprocess.run(
                    ["docker", "-H", docker_host, "image", "ls", "-q"],
                    check=True,
                    capture_output=True,
                ),
            ),
            ("docker-py inspect_image (direct)", lambda: client.inspect_image(one)),
            ("imagesvc GetImage", lambda: stub.GetImage(pb.GetImageRequest(image=one))),
            ("imagesvc REST GET /v1/images/{id}", lambda: rest_get(f"/v1/images/{one}")),
        ]
        results = {name: _median_ms(fn, rounds) for name, fn in rows}
        # The first six rows list images, the last three inspect one: each group is
        # compared with its own direct docker-py call.
        baselines = [results[rows[0][0]]] * 6 + [results[rows[6][0]]] * 3
        print(f"{total} images on the daemon, {rounds} rounds each, median ms")
        print(f"{'call':44} {'median ms':>10} {'vs direct':>10}")
        for (name, _), base in zip(rows, baselines, strict=True):
            median = results[name]
            print(f"{name:44} {median:10.2f} {median / base:9.2f}x")
        rest.close()
        channel.close()
        server.stop()
    finally:
        if engine is not None:
            engine.stop()
        if tmp is not None:
            tmp.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docker-host", help="use this daemon instead of a sandboxed engine")
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    run(args.docker_host, args.images, args.rounds)


if __name__ == "__main__":
    main()
