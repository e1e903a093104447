"""Benchmark: PullImage, PushImage and BuildImage through imagesvc (gRPC and REST) against the same
calls made directly with docker-py, side by side in one run on the sandboxed engine and
a local registry. Prints medians and the ratio to the direct call.

    .venv/bin/python -m bench.transfers --layer-mb 32 --rounds 7
"""

from __future__ import annotations

import argparse
import io
import statistics
import tarfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import docker
import grpc
import httpx

from devtools.sandbox import Sandbox, build_busybox_image
from imagesvc.config import Settings
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc

BASE = "imagesvc-bench/base:1"


def _median_s(prepare: Callable[[], None], run: Callable[[], object], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        prepare()
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _context(dockerfile: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        data = dockerfile.encode()
        member = tarfile.TarInfo("Dockerfile")
        member.size = len(data)
        archive.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


def _consume(stream: Iterator[dict[str, object]]) -> None:
    for message in stream:
        if "error" in message:
            raise RuntimeError(str(message["error"]))


def run(layer_mb: int, rounds: int) -> None:
    with Sandbox() as sandbox:
        engine = sandbox.engine
        registry = sandbox.open_registry.address
        build_busybox_image(engine, BASE)
        big = f"{registry}/bench/big:1"
        build_busybox_image(
            engine,
            big,
            extra_lines=(f"RUN dd if=/dev/urandom of=/blob bs=1M count={layer_mb} 2>/dev/null",),
        )
        client = docker.APIClient(base_url=engine.host, version="1.41")
        _consume(client.push(f"{registry}/bench/big", "1", stream=True, decode=True))
        server = ThreadedServer(
            Settings(
                grpc_address="127.0.0.1:0", http_address="127.0.0.1:0", docker_host=engine.host
            )
        )
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        stub = image_service_pb2_grpc.ImageServiceStub(channel)
        rest = httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=300)

        def rest_stream(path: str, **kwargs: Any) -> None:
            """Reads a REST stream to its end; fails on an {"error": ...} line."""
            with rest.stream("POST", path, **kwargs) as response:
                response.raise_for_status()
                for line in response.iter_lines():
                    if line.startswith('{"error"'):
                        raise RuntimeError(line)

        def drop_local() -> None:
            client.remove_image(big, force=True)

        def nothing() -> None:
            pass

        dockerfile = f"FROM {BASE}\nRUN echo built > /built\nLABEL bench=1\n"
        context = _context(dockerfile)

        def build_requests() -> Iterator[pb.BuildImageRequest]:
            yield pb.BuildImageRequest(
                options=pb.BuildOptions(tags=["imagesvc-bench/built:1"], no_cache=True)
            )
            yield pb.BuildImageRequest(context_chunk=context)

        rows: list[tuple[str, Callable[[], None], Callable[[], object]]] = [
            (
                f"pull {layer_mb} MB: docker-py (direct)",
                drop_local,
                lambda: _consume(
                    client.pull(f"{registry}/bench/big", "1", stream=True, decode=True)
                ),
            ),
            (
                f"pull {layer_mb} MB: imagesvc PullImage",
                drop_local,
                lambda: list(stub.PullImage(pb.PullImageRequest(reference=big))),
            ),
            (
                f"pull {layer_mb} MB: imagesvc REST :pull",
                drop_local,
                lambda: rest_stream("/v1/images:pull", json={"reference": big}),
            ),
            (
                "push, layers present: docker-py (direct)",
                nothing,
                lambda: _consume(
                    client.push(f"{registry}/bench/big", "1", stream=True, decode=True)
                ),
            ),
            (
                "push, layers present: imagesvc PushImage",
                nothing,
                lambda: list(stub.PushImage(pb.PushImageRequest(reference=big))),
            ),
            (
                "push, layers present: imagesvc REST :push",
                nothing,
                lambda: rest_stream("/v1/images:push", json={"reference": big}),
            ),
            (
                "build, no cache: docker-py (direct)",
                nothing,
                lambda: _consume(
                    client.build(
                        fileobj=io.BytesIO(context),
                        custom_context=True,
                        tag="imagesvc-bench/built:1",
                        nocache=True,
                        rm=True,
                        decode=True,
                    )
                ),
            ),
            (
                "build, no cache: imagesvc BuildImage",
                nothing,
                lambda: list(stub.BuildImage(build_requests())),
            ),
            (
                "build, no cache: imagesvc REST :build (tar)",
                nothing,
                lambda: rest_stream(
                    "/v1/images:build?tags=imagesvc-bench/built:1&noCache=true",
                    content=context,
                    headers={"Content-Type": "application/x-tar"},
                ),
            ),
        ]
        results = [(name, _median_s(prepare, fn, rounds)) for name, prepare, fn in rows]
        print(f"median of {rounds} rounds, seconds; ratio to the direct docker-py call")
        for index, (name, median) in enumerate(results):
            direct = results[index - index % 3][1]  # each group: direct, gRPC, REST
            print(f"{name:44} {median:8.3f} {median / direct:7.2f}x")
        rest.close()
        channel.close()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer-mb", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    run(args.layer_mb, args.rounds)


if __name__ == "__main__":
    main()
