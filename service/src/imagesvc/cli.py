"""The `imagesvc` command."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from imagesvc.allocator import tune_allocator
from imagesvc.config import SETTINGS, Section, Settings, SettingsError, SettingSpec
from imagesvc.healthcheck import add_arguments as add_healthcheck_arguments
from imagesvc.healthcheck import main as healthcheck_main
from imagesvc.logs import configure_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imagesvc", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the gRPC server against the Docker daemon at DOCKER_HOST",
        description="Every flag can also be set as IMAGESVC_<FLAG> (e.g. IMAGESVC_GRPC_ADDRESS);"
        " docs/settings.md lists them all, with the settings that have only a variable.",
    )
    groups = {
        Section.SERVICE: serve,
        Section.SECURITY: serve.add_argument_group("authentication and TLS (see SECURITY.md)"),
        Section.POLICY: serve.add_argument_group(
            "registry policy, build restrictions and limits (see SECURITY.md)"
        ),
        Section.FLEET: serve.add_argument_group("the fleet (see docs/api.md, Fleet)"),
    }
    for spec in SETTINGS:
        if spec.flag is not None:
            _add_flag(groups[spec.doc.section], spec.flag, spec)
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


def _add_flag(group: argparse._ActionsContainer, flag: str, spec: SettingSpec) -> None:
    """The flag of a setting; None when not given, so that its variable or default holds."""
    default = spec.shown_default().replace("`", "")
    if spec.doc.fallback_env:
        default = f"${spec.doc.fallback_env}, else {default}"
    help_text = f"{spec.plain_help()} (default: {default})".replace("%", "%%")
    if spec.kind is bool:
        group.add_argument(flag, action="store_true", default=None, help=help_text)
    elif spec.kind is str:
        group.add_argument(flag, help=help_text)
    else:
        group.add_argument(flag, type=spec.kind, help=help_text)


def settings_of(args: argparse.Namespace, environ: dict[str, str] | None = None) -> Settings:
    """The settings of `imagesvc serve`: its flags (those given) over the variables."""
    overrides = {key: value for key, value in vars(args).items() if key != "command"}
    return Settings.from_env(environ, **overrides)


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
    try:
        settings = settings_of(args)
    except (ValueError, TypeError) as exc:
        print(f"imagesvc: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    tune_allocator()
    from imagesvc.server import serve  # late: keeps `--help` fast

    try:
        asyncio.run(serve(settings))
    except SettingsError as exc:
        print(f"imagesvc: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
