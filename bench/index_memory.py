"""Benchmark: the server's resident memory with an empty live image index and with
5,000 images (issue 14: growth at most 50 MB RSS).

On a sandboxed engine (or the daemon at --docker-host, which must hold no images), the
service (bench/read_server.py, as `imagesvc serve` runs it) starts once with no images,
and once more after one `docker load` of 5,000 distinct tiny images (bench/loaded_images.py).
Each time, once its index is live, every page of ListImages (page_size 1000) and a
GetImage of every image run (so the index holds every inspect document and the
transport every message it caches), then its RSS (VmRSS) is read.

    .venv/bin/python -m bench.index_memory [--images 5000] [--docker-host URL]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import grpc

from bench.loaded_images import image_archive
from bench.reads import EngineConnection, service
from devtools.sandbox import Engine
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc

TARGET_MB = 50.0


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _read_everything(port: int, pid: int) -> tuple[int, float]:
    """Every page of ListImages, then a GetImage of each image listed: the count, and
    the RSS between the two (MB)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = image_service_pb2_grpc.ImageServiceStub(channel)
        ids: list[str] = []
        token = ""
        while True:
            page = stub.ListImages(pb.ListImagesRequest(page_size=1000, page_token=token))
            ids += [image.id for image in page.images]
            token = page.next_page_token
            if not token:
                break
        listed_mb = _rss_mb(pid)
        for image_id in ids:
            stub.GetImage(pb.GetImageRequest(image=image_id))
        return len(ids), listed_mb


def _measure(docker_host: str) -> tuple[int, float, float, float]:
    """The image count and the RSS (MB): index live, after the lists, after the gets."""
    with service(docker_host) as ports:
        live_mb = _rss_mb(ports["pid"])
        count, listed_mb = _read_everything(ports["grpc_port"], ports["pid"])
        return count, live_mb, listed_mb, _rss_mb(ports["pid"])


def _load(docker_host: str, count: int) -> None:
    engine = EngineConnection(docker_host)
    engine.timeout = 600
    engine.request(
        "POST",
        "/images/load?quiet=1",
        body=image_archive(count),
        headers={"Content-Type": "application/x-tar"},
    )
    response = engine.getresponse()
    body = response.read()
    engine.close()
    if response.status != 200 or b'"error' in body:
        raise RuntimeError(f"load: {response.status} {body[-300:]!r}")


def run(args: argparse.Namespace) -> int:
    engine: Engine | None = None
    tmp: tempfile.TemporaryDirectory[str] | None = None
    docker_host = args.docker_host
    if docker_host is None:
        tmp = tempfile.TemporaryDirectory(prefix="imagesvc-bench-")
        engine = Engine(tmp.name)
        engine.start()
        docker_host = engine.host
    try:
        if json.loads(EngineConnection(docker_host).get("/images/json?all=1")):
            raise SystemExit("the daemon must hold no images")
        empty = _measure(docker_host)
        _load(docker_host, args.images)
        full = _measure(docker_host)
    finally:
        if engine is not None:
            engine.stop()
        if tmp is not None:
            tmp.cleanup()
    growth = full[3] - empty[3]
    passed = growth <= TARGET_MB
    print("imagesvc server RSS (MB): index live; after ListImages (every page);")
    print("after a GetImage of each image")
    print(f"{'images':>6}  {'live':>8}  {'listed':>8}  {'got':>8}")
    for count, *rss in (empty, full):
        print(f"{count:>6}  " + "  ".join(f"{mb:>8.1f}" for mb in rss))
    print(
        f"growth {growth:.1f} MB ({growth * 1024 / max(full[0], 1):.1f} KB an image);"
        f" target <= {TARGET_MB:.0f} MB: {'pass' if passed else 'FAIL'}"
    )
    return 0 if passed else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docker-host", help="use this daemon (unix socket or loopback)")
    parser.add_argument("--images", type=int, default=5000)
    args = parser.parse_args()
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    sys.exit(run(args))


if __name__ == "__main__":
    main()
