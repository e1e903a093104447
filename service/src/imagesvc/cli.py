"""The `imagesvc` command."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from imagesvc.config import Settings
from imagesvc.logs import configure_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imagesvc", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the gRPC server against the Docker daemon at DOCKER_HOST",
        description="Every flag can also be set as IMAGESVC_<FLAG> (e.g. IMAGESVC_GRPC_ADDRESS).",
    )
    serve.add_argument("--grpc-address", help="host:port for gRPC (default 0.0.0.0:50051)")
    serve.add_argument(
        "--http-address", help="host:port for REST and /metrics (default 0.0.0.0:8080)"
    )
    serve.add_argument("--docker-host", help="Docker daemon socket (default: DOCKER_HOST)")
    serve.add_argument("--docker-workers", type=int, help="threads for quick Engine calls (16)")
    serve.add_argument(
        "--build-context-max-bytes", type=int, help="largest build context accepted (512 MiB)"
    )
    serve.add_argument("--build-spool-dir", help="where build contexts are spooled (TMPDIR)")
    serve.add_argument(
        "--shutdown-grace-seconds", type=float, help="time running RPCs get on SIGTERM (20)"
    )
    serve.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR (INFO)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = {key: value for key, value in vars(args).items() if key != "command"}
    try:
        settings = Settings.from_env(**overrides)
    except (ValueError, TypeError) as exc:
        print(f"imagesvc: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    from imagesvc.server import serve  # late: keeps `--help` fast

    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
