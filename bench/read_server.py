"""The service as the read benchmarks run it: `imagesvc serve`'s server and JSON access
logging (to stdout; the benchmarks send it to /dev/null) in a process of its own, on
loopback ports the kernel picks, which it writes to --ready-file as JSON once the live
image index is live (so the reads measured answer from it).

    .venv/bin/python -m bench.read_server --docker-host unix:///... --ready-file F
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


async def _serve(docker_host: str, ready_file: Path) -> None:
    settings = Settings(
        grpc_address="127.0.0.1:0", http_address="127.0.0.1:0", docker_host=docker_host
    )
    server = ImageServer(settings)
    await server.start()
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
    args = parser.parse_args()
    configure_logging("INFO")
    asyncio.run(_serve(args.docker_host, args.ready_file))


if __name__ == "__main__":
    main()
