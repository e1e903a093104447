"""The benchmarks' images: tiny busybox images, each with its own label (so its own
id), built on the sandboxed engine until the daemon holds the number asked for."""

from __future__ import annotations

import docker

from devtools.sandbox import Engine, build_busybox_image

BENCH_LABEL = "imagesvc-bench"


def ensure_images(engine_host: str, engine: Engine | None, count: int) -> None:
    """Builds bench images on `engine` until `count` carry the bench label (the base
    image included). An outside daemon (`engine` None) is left as it is."""
    client = docker.APIClient(base_url=engine_host, version="1.41")
    existing = len(client.images(filters={"label": BENCH_LABEL}))
    if existing >= count or engine is None:
        return
    if existing == 0:
        build_busybox_image(engine, "imagesvc-bench/base:1", labels={BENCH_LABEL: "base"})
        existing = 1
    for index in range(existing, count):
        build_busybox_image(
            engine,
            f"imagesvc-bench/img{index}:1",
            extra_lines=(f"LABEL n={index}",),
            labels={BENCH_LABEL: str(index)},
        )
