"""The service as the read benchmark runs it: `imagesvc serve`'s server and JSON access
logging (to stdout; the benchmark sends it to /dev/null) in a process of its own, on
loopback ports the kernel picks, which it writes to --ready-file as JSON.

With --snapshot, ListImages, GetImage and GetImageHistory answer from a snapshot of the
daemon's images taken at start (one Image object per image, kept, as the live index
keeps them), without an Engine call or a thread-pool hop: a stand-in for the index
that measures what the transport costs when the core answers from memory. Queries the
snapshot does not hold (filters, pages, `all`, unknown names) still go to the Engine.

    .venv/bin/python -m bench.read_server --docker-host unix:///... --ready-file F [--snapshot]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

from imagesvc.config import Settings
from imagesvc.core.image_core import ImageCore
from imagesvc.core.models import HistoryEntry, Image, ImageFilter, ImagePage
from imagesvc.core.references import validate_image_identifier
from imagesvc.logs import configure_logging
from imagesvc.server import ImageServer


class SnapshotReads:
    """The core's reads answered from memory; everything else is `core`'s."""

    def __init__(self, core: ImageCore) -> None:
        self._core = core
        self._page: ImagePage | None = None
        self._images: dict[str, Image] = {}
        self._histories: dict[str, tuple[HistoryEntry, ...]] = {}

    def __getattr__(self, name: str) -> object:
        return getattr(self._core, name)

    async def load(self) -> None:
        page = await self._core.list_images(ImageFilter(), all=False, page_size=1000, page_token="")
        if page.next_page_token:
            raise SystemExit("--snapshot holds at most 1000 images")
        self._page = page
        for listed in page.images:
            image = await self._core.get_image(listed.id)
            history = await self._core.image_history(listed.id)
            for name in (image.id, *image.repo_tags):
                self._images[name] = image
                self._histories[name] = history

    def _admit(self) -> None:
        self._core._admit()  # the stand-in keeps the core's rate limit

    async def list_images(
        self, image_filter: ImageFilter, *, all: bool, page_size: int, page_token: str
    ) -> ImagePage:
        page = self._page
        if (
            page is None
            or image_filter != ImageFilter()
            or all
            or page_token
            or page_size < page.total_size
        ):
            return await self._core.list_images(
                image_filter, all=all, page_size=page_size, page_token=page_token
            )
        self._admit()
        return ImagePage(page.images, "", page.total_size)

    async def get_image(self, image: str) -> Image:
        found = self._images.get(validate_image_identifier(image))
        if found is None:
            return await self._core.get_image(image)
        self._admit()
        return found

    async def image_history(self, image: str) -> tuple[HistoryEntry, ...]:
        found = self._histories.get(validate_image_identifier(image))
        if found is None:
            return await self._core.image_history(image)
        self._admit()
        return found


async def _serve(docker_host: str, ready_file: Path, *, snapshot: bool) -> None:
    settings = Settings(
        grpc_address="127.0.0.1:0", http_address="127.0.0.1:0", docker_host=docker_host
    )
    server = ImageServer(settings)
    await server.start()
    if snapshot:
        reads = SnapshotReads(server.core)
        await reads.load()
        # The servicer both ports call (behind the guard) holds the core it reads from.
        guarded: Any = server.servicer
        guarded._inner._core = reads
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    ready = {"grpc_port": server.port, "http_port": server.http_port, "pid": os.getpid()}
    await asyncio.to_thread(ready_file.write_text, json.dumps(ready))
    await stopping.wait()
    await server.stop(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docker-host", required=True)
    parser.add_argument("--ready-file", type=Path, required=True)
    parser.add_argument("--snapshot", action="store_true")
    args = parser.parse_args()
    configure_logging("INFO")
    asyncio.run(_serve(args.docker_host, args.ready_file, snapshot=args.snapshot))


if __name__ == "__main__":
    main()
