"""The service as the read benchmarks run it: `imagesvc serve`'s server and JSON access
logging (to stdout; the benchmarks send it to /dev/null) in a process of its own, on
loopback ports the kernel picks, which it writes to --ready-file as JSON once the live
image index is live (so the reads measured answer from it). With --without-index every
read goes to the Engine, the path the service had before the index (issue 14's
"today's").

    .venv/bin/python -m bench.read_server --docker-host unix:///... --ready-file F [--without-index]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from pathlib import Path

from imagesvc.config import Settings
from imagesvc.logs import configure_logging
from imagesvc.server import ImageServer


async def _index_live(server: ImageServer) -> None:
    """Returns once the index is live (polled: it has no event to wait on)."""
    deadline = asyncio.get_running_loop().time() + 600
    while server.index is None or not server.index.live:
        if asyncio.get_running_loop().time() > deadline:
            raise SystemExit("the image index did not become live")
        await asyncio.sleep(0.05)


async def _serve(docker_host: str, ready_file: Path, *, without_index: bool) -> None:
    settings = Settings(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        docker_host=docker_host,
        disable_image_index=without_index,
    )
    server = ImageServer(settings)
    await server.start()
    if not without_index:
        await _index_live(server)
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
    parser.add_argument(
        "--without-index",
        action="store_true",
        help="every read asks the Engine, as the service did before the live index",
    )
    args = parser.parse_args()
    configure_logging("INFO")
    asyncio.run(_serve(args.docker_host, args.ready_file, without_index=args.without_index))


if __name__ == "__main__":
    main()
