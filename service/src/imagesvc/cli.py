"""The `imagesvc` command."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from imagesvc.config import Settings, SettingsError
from imagesvc.healthcheck import add_arguments as add_healthcheck_arguments
from imagesvc.healthcheck import main as healthcheck_main
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
    security = serve.add_argument_group("authentication and TLS (see SECURITY.md)")
    security.add_argument("--tls-cert-file", help="server certificate (PEM): TLS on both ports")
    security.add_argument("--tls-key-file", help="private key of --tls-cert-file (PEM)")
    security.add_argument(
        "--tls-client-ca-file", help="CA of client certificates (PEM): turns on mutual TLS"
    )
    security.add_argument("--tokens-file", help="JSON bearer tokens -> identity and roles")
    security.add_argument(
        "--client-cert-roles-file", help="JSON client-certificate names -> identity and roles"
    )
    security.add_argument(
        "--insecure-allow-unauthenticated",
        action="store_true",
        default=None,
        help="listen beyond loopback without authentication (only behind something that"
        " authenticates callers)",
    )
    policy = serve.add_argument_group(
        "registry policy, build restrictions and limits (see SECURITY.md)"
    )
    policy.add_argument(
        "--pull-allowlist",
        help="repositories images may be pulled from (also a build's base images), e.g."
        " '127.0.0.1:5000/**,docker.io/library/*' (default: any, with a warning)",
    )
    policy.add_argument(
        "--push-allowlist",
        help="repositories images may be tagged as, built as and pushed to (default: any)",
    )
    policy.add_argument(
        "--build-memory-bytes", type=int, help="memory of a build's RUN steps (2 GiB; 0: none)"
    )
    policy.add_argument("--build-cpus", type=float, help="CPUs of a build's RUN steps (0: none)")
    policy.add_argument("--build-cpu-shares", type=int, help="CPU shares of RUN steps (0: none)")
    policy.add_argument("--build-cpuset-cpus", help="CPUs RUN steps may use, e.g. 0-1")
    policy.add_argument(
        "--build-timeout-seconds", type=float, help="time a build may take (3600; 0: none)"
    )
    policy.add_argument(
        "--build-arg-allowlist", help="build-argument names allowed (default: any not denied)"
    )
    policy.add_argument(
        "--build-arg-denylist",
        help="build-argument names refused ('none' for none; default: secret-looking names)",
    )
    policy.add_argument(
        "--build-allow-remote-add",
        action="store_true",
        default=None,
        help="let ADD download URLs (the daemon fetches them from its own network)",
    )
    policy.add_argument("--max-concurrent-pulls", type=int, help="pulls at once (8; 0: no limit)")
    policy.add_argument("--max-concurrent-pushes", type=int, help="pushes at once (8; 0: no limit)")
    policy.add_argument("--max-concurrent-builds", type=int, help="builds at once (4; 0: no limit)")
    policy.add_argument(
        "--rate-limit-per-second", type=float, help="requests per second per caller (0: off)"
    )
    policy.add_argument("--rate-limit-burst", type=int, help="requests at once per caller (50)")
    commands.add_parser(
        "hash-token",
        help="print the sha256 of a bearer token read from stdin, for the tokens file",
        description='Reads one token from stdin (e.g. `printf %%s "$TOKEN" | imagesvc'
        " hash-token`) and prints the value of the tokens file's sha256 field.",
    )
    healthcheck = commands.add_parser(
        "healthcheck",
        help="ask the server's gRPC health service once: exit 0 SERVING, 1 otherwise",
        description="For the container image's HEALTHCHECK. Reads the flags and IMAGESVC_*"
        " variables of serve (address, TLS); client-only options also as"
        " IMAGESVC_HEALTHCHECK_<FLAG>.",
    )
    add_healthcheck_arguments(healthcheck)
    return parser


def _hash_token() -> int:
    from imagesvc.core.credential_files import hash_token, valid_token

    token = sys.stdin.read().strip()
    if not valid_token(token):
        print(
            "imagesvc: a token must be 16-4096 characters of A-Z a-z 0-9 - . _ ~ + /"
            " (then optional =); generate one with: python3 -c"
            " 'import secrets; print(secrets.token_urlsafe(32))'",
            file=sys.stderr,
        )
        return 2
    print(hash_token(token))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "hash-token":
        return _hash_token()
    if args.command == "healthcheck":
        return healthcheck_main(args)
    overrides = {key: value for key, value in vars(args).items() if key != "command"}
    try:
        settings = Settings.from_env(**overrides)
    except (ValueError, TypeError) as exc:
        print(f"imagesvc: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    from imagesvc.server import serve  # late: keeps `--help` fast

    try:
        asyncio.run(serve(settings))
    except SettingsError as exc:
        print(f"imagesvc: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
