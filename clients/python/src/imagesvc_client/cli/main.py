"""Argument parsing and the entry point of imagesvc-cli; the verbs are in commands.py."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from imagesvc_client.cli.closed_pipe import EXIT_CLOSED_PIPE, silence_closed_streams

DEFAULT_SERVER = "127.0.0.1:50051"

# Exit codes: 1 a failed call (or a local error), 2 bad usage (argparse), 130 interrupted,
# 141 the reader of the output went away (closed_pipe.py).
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def _connection_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Options accepted before the verb and after it. Below a verb they default to
    SUPPRESS, so that a value given before the verb is not reset."""

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    group = parser.add_argument_group("connection")
    group.add_argument(
        "--server",
        default=default(os.environ.get("IMAGESVC_SERVER") or DEFAULT_SERVER),
        help="imagesvc address host:port (env IMAGESVC_SERVER, default %(default)s)"
        if top
        else "imagesvc address host:port (env IMAGESVC_SERVER)",
    )
    group.add_argument(
        "--token-file",
        default=default(None),
        help="file holding the bearer token (else env IMAGESVC_TOKEN)",
    )
    group.add_argument("--tls", action="store_true", default=default(False), help="use TLS")
    group.add_argument("--tls-ca", default=default(None), help="CA certificates (PEM); implies TLS")
    group.add_argument("--tls-cert", default=default(None), help="client certificate (PEM)")
    group.add_argument("--tls-key", default=default(None), help="client private key (PEM)")
    group.add_argument(
        "--tls-server-name", default=default(None), help="name expected in the server certificate"
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=default(60.0),
        help="seconds each quick call may take (pull, push and build have no limit)",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=("table", "json"),
        default=default(None),
        help="table (human; inspect: json) or json (the API's JSON mapping)",
    )


def _registry_credentials(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-u", "--username", default="", help="registry user name")
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the registry password from stdin (else env IMAGESVC_REGISTRY_PASSWORD)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser; each verb's ``run`` names its function in commands.py, imported only
    once the command line is parsed (--help and usage errors need neither gRPC nor the
    verbs)."""
    parser = argparse.ArgumentParser(
        prog="imagesvc-cli",
        description="Manage the images of a Docker daemon through imagesvc, like `docker image`.",
    )
    _connection_options(parser, top=True)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")

    def verb(
        name: str, help: str, *, aliases: Sequence[str] = (), conflict_handler: str = "error"
    ) -> argparse.ArgumentParser:
        sub = verbs.add_parser(
            name,
            help=help,
            description=help,
            aliases=list(aliases),
            conflict_handler=conflict_handler,
        )
        _connection_options(sub, top=False)
        return sub

    ls = verb("ls", "List images", aliases=["list"])
    ls.add_argument("reference", nargs="?", help="REPOSITORY[:TAG] pattern")
    ls.add_argument("-a", "--all", action="store_true", help="show intermediate images too")
    ls.add_argument(
        "-f",
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dangling=true|false, label=KEY[=VALUE], reference=PATTERN, before=IMAGE, "
        "since=IMAGE (repeatable)",
    )
    ls.add_argument("-q", "--quiet", action="store_true", help="only image ids")
    ls.add_argument("--no-trunc", action="store_true", help="full image ids")
    ls.add_argument("--digests", action="store_true", help="show digests")
    ls.add_argument(
        "--check-updates",
        action="store_true",
        help="ask each tag's registry whether it still serves the local image (an UPDATE"
        " column: up to date, update available, unknown (reason))",
    )
    ls.add_argument(
        "--registry",
        default="",
        help="with --check-updates and --username: the registry host[:port] of the credentials",
    )
    _registry_credentials(ls)
    ls.set_defaults(run="ls")

    events = verb(
        "events", "Stream changes to the images, like `docker events --filter type=image`"
    )
    events.add_argument(
        "-f",
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="as ls takes them: dangling=, label=, reference=, before=, since= (repeatable;"
        " type=image is accepted)",
    )
    events.add_argument(
        "--format",
        choices=("human", "json"),
        default=None,
        help="human lines (default), or json: one JSON message per line as the API sends it",
    )
    events.add_argument(
        "--initial",
        action="store_true",
        help="first print every matching image as added, then watch",
    )
    events.add_argument(
        "--since-token",
        default="",
        metavar="TOKEN",
        help="resume after the change this token came with (printed with each change in"
        " json, and on stderr when a human stream ends)",
    )
    events.set_defaults(run="events")

    nodes = verb("nodes", "List every node of the fleet (FleetService; the fleet role)")
    nodes.set_defaults(run="nodes")

    find = verb("find", "Show which nodes of the fleet hold an image, with its id on each")
    find.add_argument("image", help="a reference, an image id or NAME@DIGEST")
    find.add_argument("--no-trunc", action="store_true", help="full image ids")
    find.add_argument(
        "--check-registry",
        action="store_true",
        help="also resolve the reference at its registry and show which nodes are stale",
    )
    _registry_credentials(find)
    find.set_defaults(run="find")

    history = verb("history", "Show the layers of an image")
    history.add_argument("image")
    history.add_argument("-q", "--quiet", action="store_true", help="only layer ids")
    history.add_argument("--no-trunc", action="store_true", help="full ids and commands")
    history.set_defaults(run="history")

    inspect = verb("inspect", "Show everything about images (JSON unless --output table)")
    inspect.add_argument("images", nargs="+", metavar="IMAGE")
    inspect.add_argument(
        "--engine",
        action="store_true",
        help="print the Engine's own inspect documents, as `docker image inspect` does",
    )
    inspect.set_defaults(run="inspect", output_default="json")

    pull = verb("pull", "Pull an image from a registry")
    pull.add_argument("reference", help="[REGISTRY/]REPOSITORY[:TAG|@DIGEST]")
    pull.add_argument("--platform", default="", help="os/arch[/variant]")
    pull.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    _registry_credentials(pull)
    pull.set_defaults(run="pull")

    fleet_pull = verb(
        "fleet-pull",
        "Pull an image on every node of the fleet, or on some (FleetService; the fleet role)",
    )
    fleet_pull.add_argument("reference", help="[REGISTRY/]REPOSITORY[:TAG|@DIGEST]")
    fleet_pull.add_argument("--platform", default="", help="os/arch[/variant]")
    fleet_pull.add_argument(
        "--nodes", default="", help="comma-separated node names or host:port (default: every node)"
    )
    fleet_pull.add_argument(
        "--parallelism", default="", help='nodes pulling at once: a count or a share ("25%%")'
    )
    fleet_pull.add_argument(
        "--node-timeout",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="time each node gets, every retry included (default: the server's)",
    )
    fleet_pull.add_argument(
        "--stall-timeout",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="a node's attempt without progress this long is STALLED (default 60)",
    )
    fleet_pull.add_argument(
        "--retries", type=int, default=None, help="retries of a retryable failure (default 2)"
    )
    fleet_pull.add_argument(
        "--stop-on-failure",
        action="store_true",
        help="start no further node after the first failure (default: best effort)",
    )
    fleet_pull.add_argument("-q", "--quiet", action="store_true", help="only the summary")
    _registry_credentials(fleet_pull)
    fleet_pull.set_defaults(run="fleet_pull")

    push = verb("push", "Push an image to a registry")
    push.add_argument("reference", help="REGISTRY/REPOSITORY[:TAG]")
    push.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    _registry_credentials(push)
    push.set_defaults(run="push")

    tag = verb("tag", "Create a tag TARGET that refers to SOURCE")
    tag.add_argument("source")
    tag.add_argument("target")
    tag.set_defaults(run="tag")

    build = verb("build", "Build an image from a context directory (or stdin: -)")
    build.add_argument(
        "context", help="directory, or - for a tar archive (or a lone Dockerfile) on stdin"
    )
    build.add_argument("-t", "--tag", action="append", default=[], help="name[:tag] (repeatable)")
    build.add_argument("-f", "--file", default=None, help="Dockerfile (default CONTEXT/Dockerfile)")
    build.add_argument("--build-arg", action="append", default=[], metavar="KEY[=VALUE]")
    build.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    build.add_argument("--target", default="", help="build stage to stop at")
    build.add_argument("--no-cache", action="store_true")
    build.add_argument("--pull", action="store_true", help="always pull newer base images")
    build.add_argument("--platform", default="")
    build.add_argument("--network", default="", help="network mode of RUN steps")
    build.add_argument("-q", "--quiet", action="store_true", help="print only the image id")
    build.set_defaults(run="build")

    load = verb("load", "Load images from a tar archive (docker save or OCI), like docker load")
    load.add_argument("-i", "--input", default=None, help="archive file (default: stdin)")
    load.add_argument("-q", "--quiet", action="store_true", help="print only the loaded names")
    load.set_defaults(run="load")

    rm = verb("rm", "Remove images", aliases=["remove"])
    rm.add_argument("images", nargs="+", metavar="IMAGE")
    rm.add_argument("-f", "--force", action="store_true")
    rm.add_argument("--no-prune", action="store_true", help="keep untagged parents")
    rm.set_defaults(run="rm")

    prune = verb("prune", "Remove unused images")
    prune.add_argument("-a", "--all", action="store_true", help="all unused, not only dangling")
    prune.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="label=KEY[=VALUE], label!=KEY[=VALUE], until=TIMESTAMP (repeatable)",
    )
    prune.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    prune.set_defaults(run="prune")

    fleet_rm = verb("fleet-rm", "Remove an image on every node of the fleet, or on some (admin)")
    fleet_rm.add_argument("image", metavar="IMAGE")
    fleet_rm.add_argument("-f", "--force", action="store_true")
    fleet_rm.add_argument("--no-prune", action="store_true", help="keep untagged parents")
    fleet_rm.add_argument(
        "--nodes", default="", help="comma-separated node names or host:port (default: every node)"
    )
    fleet_rm.set_defaults(run="fleet_rm")

    fleet_prune = verb("fleet-prune", "Remove unused images on every node of the fleet (admin)")
    fleet_prune.add_argument(
        "-a", "--all", action="store_true", help="all unused, not only dangling"
    )
    fleet_prune.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="label=KEY[=VALUE], label!=KEY[=VALUE], until=TIMESTAMP (repeatable)",
    )
    fleet_prune.add_argument(
        "--nodes", default="", help="comma-separated node names or host:port (default: every node)"
    )
    fleet_prune.add_argument(
        "-f", "--force", action="store_true", help="do not ask for confirmation"
    )
    fleet_prune.set_defaults(run="fleet_prune")

    manifest = verb("manifest", "Inspect images at their registry, without pulling")
    manifest_verbs = manifest.add_subparsers(dest="manifest_verb", required=True, metavar="COMMAND")
    manifest_inspect = manifest_verbs.add_parser(
        "inspect",
        help="Digest, media type, size and platforms the registry serves for a reference",
        description="What the registry serves for REFERENCE, like `docker manifest inspect`.",
    )
    _connection_options(manifest_inspect, top=False)
    manifest_inspect.add_argument("reference", help="[REGISTRY/]REPOSITORY[:TAG|@DIGEST]")
    _registry_credentials(manifest_inspect)
    manifest_inspect.set_defaults(run="manifest_inspect")

    # -o is the file here, as for `docker save` (the output format stays --output).
    save = verb(
        "save",
        "Save images to a tar archive (stdout by default), like `docker save`",
        conflict_handler="resolve",
    )
    save.add_argument("images", nargs="+", metavar="IMAGE", help="references or ids")
    save.add_argument(
        "-o", "--output-file", dest="output_file", metavar="FILE", help="write to FILE, not stdout"
    )
    save.set_defaults(run="save")

    df = verb("df", "Show the disk space images take, like `docker system df`")
    df.add_argument("-v", "--verbose", action="store_true", help="per image too")
    df.set_defaults(run="df")

    login = verb("login", "Check registry credentials (nothing is stored)")
    login.add_argument("registry", help="registry host[:port]")
    _registry_credentials(login)
    login.set_defaults(run="login")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; its exit code. Every command, --help included, ends quietly
    when the reader of its output goes away."""
    try:
        try:
            return _main(argv)
        finally:
            # Here, where a closed pipe can still be handled, not at the interpreter's exit.
            sys.stdout.flush()
    except BrokenPipeError:
        silence_closed_streams()
        return EXIT_CLOSED_PIPE


def run() -> NoReturn:
    """The console script (and `python -m imagesvc_client.cli`): `main`, then an exit
    without the interpreter's teardown once the output is flushed. That teardown (grpc's
    shutdown, every module freed) takes 20-50 ms: a visible share of a short command, and
    more than the docker CLI takes to start and stop. Help and usage errors (SystemExit)
    leave the usual way."""
    code = main()
    silence_closed_streams()  # flushes both streams; one whose reader is gone is dropped
    os._exit(code)


# Commands that stream image archives (1 MiB messages): cli/allocator.py.
_ARCHIVE_COMMANDS = frozenset({"save", "load", "build"})


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.output is None:
        args.output = getattr(args, "output_default", "table")
    if args.run in _ARCHIVE_COMMANDS:
        from imagesvc_client.cli.allocator import keep_transfer_buffers

        keep_transfer_buffers()
    from imagesvc_client.cli import commands
    from imagesvc_client.errors import ImagesvcError

    try:
        code: int = getattr(commands, args.run)(args)
    except ImagesvcError as error:
        commands.report(args, error)
        return EXIT_FAILED
    except commands.UsageError as error:
        parser.exit(2, f"imagesvc-cli: {error}\n")
    except KeyboardInterrupt:
        print("imagesvc-cli: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code
