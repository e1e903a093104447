"""The verbs of imagesvc-cli. Each takes the parsed arguments and returns the exit code;
failed calls raise ImagesvcError, which main() reports."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from imagesvc_client._base import FleetPullOptions
from imagesvc_client._common import RegistryAuth
from imagesvc_client.cli.render import (
    error_document,
    human_age,
    human_size,
    print_json,
    print_table,
    short_id,
    split_reference,
    to_json,
)
from imagesvc_client.cli.stdin_context import stdin_context
from imagesvc_client.client import ContextSource, ImageClient
from imagesvc_client.errors import ImagesvcError, Unavailable
from imagesvc_client.v1 import fleet_service_pb2 as fleet_pb
from imagesvc_client.v1 import image_pb2
from imagesvc_client.v1 import image_service_pb2 as pb

# Names of environment variables, not secrets.
PASSWORD_ENV = "IMAGESVC_REGISTRY_PASSWORD"  # noqa: S105
TOKEN_ENV = "IMAGESVC_TOKEN"  # noqa: S105


class UsageError(Exception):
    """The command line cannot work as given (exit code 2)."""


# Connection and credentials ---------------------------------------------------------


def connect(args: argparse.Namespace) -> ImageClient:
    if (args.tls_cert is None) != (args.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    token = _token(args.token_file)
    if token is not None and any(c in token for c in "\r\n"):
        raise UsageError(f"{TOKEN_ENV} must hold one line")
    files = {"--tls-ca": args.tls_ca, "--tls-cert": args.tls_cert, "--tls-key": args.tls_key}
    try:
        return ImageClient(
            args.server,
            tls=args.tls,
            root_certificates=args.tls_ca,
            client_certificate=args.tls_cert,
            client_key=args.tls_key,
            server_name=args.tls_server_name,
            token=token,
            timeout=args.timeout,
        )
    except OSError as error:
        flag = next((f for f, path in files.items() if path == error.filename), "a TLS file")
        raise UsageError(f"cannot read {flag} {error.filename}: {error.strerror}") from None


def _token(token_file: str | None) -> str | None:
    if token_file is not None:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise UsageError(f"cannot read the token file {token_file}: {error.strerror}") from None
        if not token or "\n" in token:
            raise UsageError(f"the token file {token_file} must hold one line")
        return token
    return os.environ.get(TOKEN_ENV) or None


def _password(args: argparse.Namespace, *, required: bool) -> str | None:
    """From stdin (--password-stdin), the environment, or a prompt that does not echo."""
    if args.password_stdin:
        password = sys.stdin.read().rstrip("\r\n")
        if not password:
            raise UsageError("--password-stdin: nothing on stdin")
        return password
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if not required:
        return None
    if sys.stdin.isatty():
        return getpass.getpass("Password: ")
    raise UsageError(f"no password: use --password-stdin or set {PASSWORD_ENV}")


def _registry_auth(args: argparse.Namespace, server_address: str = "") -> RegistryAuth | None:
    """Credentials for pull and push: only when a user name is given."""
    if not args.username:
        if args.password_stdin:
            raise UsageError("--password-stdin needs --username")
        return None
    password = _password(args, required=True)
    assert password is not None
    return RegistryAuth(args.username, password, server_address=server_address)


# Verbs ------------------------------------------------------------------------------


def _image_filter(conditions: list[str], *, event_types: bool = False) -> dict[str, Any]:
    """The keyword arguments of ImageClient.list / watch for ls-style --filter values."""
    query: dict[str, Any] = {"references": [], "labels": []}
    for condition in conditions:
        key, _, value = condition.partition("=")
        if key == "dangling" and value in ("true", "false"):
            query["dangling"] = value == "true"
        elif key == "label" and value:
            query["labels"].append(value)
        elif key == "reference" and value:
            query["references"].append(value)
        elif key in ("before", "since") and value:
            query[key] = value
        elif event_types and key == "type" and value == "image":
            pass  # `docker events --filter type=image`: only image events exist here
        else:
            raise UsageError(f"invalid filter {condition!r}")
    return query


def ls(args: argparse.Namespace) -> int:
    query = _image_filter(args.filter)
    query["all"] = args.all
    if args.reference:
        query["references"].append(args.reference)
    if not args.check_updates and (args.username or args.registry):
        raise UsageError("--username and --registry go with --check-updates")
    if args.check_updates and args.quiet:
        raise UsageError("--check-updates shows a column: not with --quiet")
    auth = _registry_auth(args, args.registry)
    if auth is not None and not args.registry:
        raise UsageError("--username needs --registry: the registry the credentials are for")
    with connect(args) as client:
        images = list(client.list(**query))
        updates = _updates(client, images, auth) if args.check_updates else None
    if args.output == "json":
        listed = [to_json(image) for image in images]
        if updates is not None:
            for image, document in zip(images, listed, strict=True):
                document["updates"] = [
                    to_json(updates[tag]) for tag in image.repo_tags if tag in updates
                ]
        print_json(listed)
        return 0
    if args.quiet:
        seen: set[str] = set()
        for image in images:
            shown = short_id(image.id, no_trunc=args.no_trunc)
            if shown not in seen:
                seen.add(shown)
                print(shown)
        return 0
    header = ["REPOSITORY", "TAG", *(["DIGEST"] if args.digests else []), "IMAGE ID"]
    rows = []
    for image in images:
        for repository, tag, digest in image_rows(image, digests=args.digests):
            rows.append(
                [
                    repository,
                    tag,
                    *([digest] if args.digests else []),
                    short_id(image.id, no_trunc=args.no_trunc),
                    human_age(image.created),
                    human_size(image.size),
                    *([update_text(updates, repository, tag)] if updates is not None else []),
                ]
            )
    print_table([*header, "CREATED", "SIZE", *(["UPDATE"] if updates is not None else [])], rows)
    return 0


# CheckImageUpdates takes at most this many references per call.
_UPDATE_CHECKS_PER_CALL = 100


def _updates(
    client: ImageClient, images: list[image_pb2.Image], auth: RegistryAuth | None
) -> dict[str, pb.ImageUpdate]:
    """The update check of every tag listed, by tag as the list names it."""
    tags = list(
        dict.fromkeys(tag for image in images for tag in image.repo_tags if "<none>" not in tag)
    )
    found: dict[str, pb.ImageUpdate] = {}
    for start in range(0, len(tags), _UPDATE_CHECKS_PER_CALL):
        batch = tags[start : start + _UPDATE_CHECKS_PER_CALL]
        answers = client.check_image_updates(batch, registry_auths=[auth] if auth else [])
        found.update(zip(batch, answers, strict=True))
    return found


_UPDATE_WORDS = {
    pb.UPDATE_STATUS_UP_TO_DATE: "up to date",
    pb.UPDATE_STATUS_UPDATE_AVAILABLE: "update available",
}


def update_text(updates: dict[str, pb.ImageUpdate], repository: str, tag: str) -> str:
    """The UPDATE column of one row: blank for an untagged row."""
    update = updates.get(f"{repository}:{tag}")
    if update is None:
        return ""
    return _UPDATE_WORDS.get(update.status) or f"unknown ({update.reason or 'no answer'})"


_CHANGE_NAMES = {
    pb.CHANGE_TYPE_ADDED: "added",
    pb.CHANGE_TYPE_UPDATED: "updated",
    pb.CHANGE_TYPE_DELETED: "deleted",
}


def events(args: argparse.Namespace) -> int:
    """Prints each change until interrupted (or the server ends the watch)."""
    query = _image_filter(args.filter, event_types=True)
    as_json = args.format == "json" or (args.format is None and args.output == "json")
    with connect(args) as client:
        watch = client.watch(
            **query, send_initial_images=args.initial, resume_token=args.since_token
        )
        try:
            with watch:
                for message in watch:
                    if as_json:
                        print(json.dumps(to_json(message), separators=(",", ":")), flush=True)
                    elif message.HasField("change"):
                        print(event_line(message.change), flush=True)
        finally:
            if not as_json and watch.resume_token:
                print(
                    f"imagesvc-cli: resume with --since-token {watch.resume_token}",
                    file=sys.stderr,
                )
    return 0


def event_line(change: pb.ImageChange, now: datetime | None = None) -> str:
    """One change as a human line, in the manner of `docker events`: time (when it was
    received), "image", what happened, the short id and the image's names."""
    at = (now or datetime.now(UTC)).isoformat(timespec="microseconds")
    names = ", ".join([*change.image.repo_tags, *change.image.repo_digests]) or "<none>"
    what = _CHANGE_NAMES.get(change.type, "changed")
    return f"{at} image {what} {short_id(change.image.id)} ({names})"


def image_rows(image: image_pb2.Image, *, digests: bool) -> list[tuple[str, str, str]]:
    """(repository, tag, digest) rows of one image, as `docker image ls` makes them: a
    row per tag (per tag and digest with ``digests``), then a "<none>" tag row for each
    repository known only by digest (an image pulled by digest); "<none>" everywhere
    for a dangling image."""
    by_repository: dict[str, list[str]] = {}
    for entry in image.repo_digests:
        name, at, digest = entry.partition("@")
        if at and name != "<none>":
            by_repository.setdefault(name, []).append(digest)
    rows: list[tuple[str, str, str]] = []
    tagged: set[str] = set()
    for reference in image.repo_tags:
        repository, tag = split_reference(reference)
        if repository == "<none>":
            continue
        tagged.add(repository)
        for digest in (by_repository.get(repository) if digests else None) or ["<none>"]:
            rows.append((repository, tag, digest))
    for repository, repository_digests in by_repository.items():
        if repository not in tagged:
            for digest in repository_digests if digests else ["<none>"]:
                rows.append((repository, "<none>", digest))
    return rows or [("<none>", "<none>", "<none>")]


def nodes(args: argparse.Namespace) -> int:
    """Exit 1 when a node is not ready."""
    with connect(args) as client:
        listed = client.list_nodes()
    if args.output == "json":
        print_json([to_json(node) for node in listed])
    else:
        rows = [
            [
                node.name or "?",
                node.address,
                "ready" if node.ready else f"not ready: {node.error.reason}",
                node.engine_version,
                str(node.image_count) if node.ready else "",
                human_size(node.images_size_bytes) if node.ready else "",
                _kept_summary(node),
            ]
            for node in listed
        ]
        print_table(["NODE", "ADDRESS", "STATUS", "ENGINE", "IMAGES", "SIZE", "KEPT"], rows)
        for node in listed:
            if not node.ready:
                print(f"{node.address}: {node.error.message}", file=sys.stderr)
            for kept in node.kept_images:
                if kept.state == fleet_pb.KeptImage.STATE_FAILED:
                    print(
                        f"{node.name or node.address}: kept image {kept.reference}:"
                        f" {kept.error.reason}: {kept.error.message}",
                        file=sys.stderr,
                    )
    return 0 if all(node.ready for node in listed) else 1


_DRIFT_NAMES = {
    fleet_pb.NodeImage.DRIFT_CURRENT: "current",
    fleet_pb.NodeImage.DRIFT_STALE: "stale",
    fleet_pb.NodeImage.DRIFT_UNKNOWN: "unknown",
}


def _kept_summary(node: fleet_pb.Node) -> str:
    """Kept images present out of those listed (empty when the node keeps none)."""
    if not node.kept_images:
        return ""
    present = sum(1 for k in node.kept_images if k.state == fleet_pb.KeptImage.STATE_PRESENT)
    return f"{present}/{len(node.kept_images)}"


def find(args: argparse.Namespace) -> int:
    """Exit 1 when a node could not answer (with --check-registry: or holds a stale image)."""
    auth = _registry_auth(args)
    if auth is not None and not args.check_registry:
        raise UsageError("--username goes with --check-registry")
    registry_digest = ""
    with connect(args) as client:
        if args.check_registry:
            answer = client.find_image_drift(args.image, auth=auth)
            found, registry_digest = list(answer.nodes), answer.registry_digest
        else:
            found = client.find_image(args.image)
    if args.output == "json":
        if args.check_registry:
            print_json(
                {"registryDigest": registry_digest, "nodes": [to_json(node) for node in found]}
            )
        else:
            print_json([to_json(node) for node in found])
    else:
        rows = []
        for node in found:
            if node.HasField("error"):
                state, image_id = f"error: {node.error.reason}", ""
            else:
                state = "present" if node.present else "absent"
                image_id = short_id(node.image_id, no_trunc=args.no_trunc) if node.present else ""
            digests = ", ".join(node.repo_digests)
            row = [node.node or "?", node.address, state, image_id]
            if args.check_registry:
                row.append(_DRIFT_NAMES.get(node.drift, ""))
            rows.append([*row, digests])
        headers = ["NODE", "ADDRESS", "IMAGE", "IMAGE ID"]
        if args.check_registry:
            print(f"Registry digest: {registry_digest}")
            headers.append("DRIFT")
        print_table([*headers, "DIGESTS"], rows)
        for node in found:
            if node.HasField("error"):
                print(f"{node.address}: {node.error.message}", file=sys.stderr)
    stale = any(node.drift == fleet_pb.NodeImage.DRIFT_STALE for node in found)
    return 1 if stale or any(node.HasField("error") for node in found) else 0


def history(args: argparse.Namespace) -> int:
    with connect(args) as client:
        entries = client.history(args.image)
    if args.output == "json":
        print_json([to_json(entry) for entry in entries])
        return 0
    if args.quiet:
        for entry in entries:
            print(short_id(entry.id, no_trunc=args.no_trunc))
        return 0
    rows = []
    for entry in entries:
        created_by = entry.created_by
        if not args.no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        rows.append(
            [
                short_id(entry.id, no_trunc=args.no_trunc),
                human_age(entry.created),
                created_by,
                human_size(entry.size),
                entry.comment,
            ]
        )
    print_table(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], rows)
    return 0


def save(args: argparse.Namespace) -> int:
    if args.output_file is None and sys.stdout.isatty():
        raise UsageError("refusing to write a tar archive to a terminal: use -o FILE or a pipe")
    with connect(args) as client:
        if args.output_file is not None:
            client.export(args.images, args.output_file)
        else:
            sys.stdout.flush()
            client.export(args.images, sys.stdout.buffer)
            sys.stdout.buffer.flush()
    return 0


def _known_size(message: pb.ImageDiskUsage, field: str) -> str:
    return human_size(getattr(message, field)) if message.HasField(field) else "N/A"


def df(args: argparse.Namespace) -> int:
    with connect(args) as client:
        usage = client.disk_usage()
    if args.output == "json":
        print_json(to_json(usage))
        return 0
    known = usage.HasField("total_size_bytes")
    total, reclaimable = usage.total_size_bytes, usage.reclaimable_bytes
    share = f" ({reclaimable * 100 // total}%)" if known and total else ""
    print_table(
        ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
        [
            [
                "Images",
                str(usage.image_count),
                str(usage.active_image_count),
                human_size(total) if known else "N/A",
                human_size(reclaimable) + share if known else "N/A",
            ]
        ],
    )
    if not args.verbose:
        return 0
    rows = []
    for image in usage.images:
        names = [split_reference(tag) for tag in image.repo_tags] or [("<none>", "<none>")]
        for repository, tag in names:
            rows.append(
                [
                    repository,
                    tag,
                    short_id(image.id),
                    human_age(image.create_time),
                    human_size(image.size_bytes),
                    _known_size(image, "shared_size_bytes"),
                    _known_size(image, "unique_size_bytes"),
                    str(image.containers) if image.HasField("containers") else "N/A",
                ]
            )
    print("\nImages space usage:\n")
    headers = ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE"]
    print_table([*headers, "CONTAINERS"], rows)
    return 0


def inspect(args: argparse.Namespace) -> int:
    found: list[image_pb2.Image] = []
    failed = False
    with connect(args) as client:
        for name in args.images:
            try:
                found.append(client.get(name))
            except ImagesvcError as error:
                failed = True
                report(args, error)
    if args.engine:
        print_json([json.loads(image.inspect_json) for image in found])
    elif args.output == "json":
        print_json([to_json(image) for image in found])
    else:
        for image in found:
            _print_image(image)
    return 1 if failed else 0


def _print_image(image: image_pb2.Image) -> None:
    config = image.config
    fields = [
        ("Id", image.id),
        ("RepoTags", ", ".join(image.repo_tags)),
        ("RepoDigests", ", ".join(image.repo_digests)),
        ("Created", image.created.ToJsonString() if image.HasField("created") else ""),
        ("Size", f"{human_size(image.size)} ({image.size} bytes)"),
        ("Platform", "/".join(p for p in (image.os, image.architecture, image.variant) if p)),
        ("Author", image.author),
        ("Entrypoint", json.dumps(list(config.entrypoint)) if config.entrypoint else ""),
        ("Cmd", json.dumps(list(config.cmd)) if config.cmd else ""),
        ("WorkingDir", config.working_dir),
        ("User", config.user),
        ("Env", ", ".join(config.env)),
        ("Labels", ", ".join(f"{k}={v}" for k, v in sorted(image.labels.items()))),
        ("Layers", str(len(image.root_fs_layers))),
    ]
    print_table(["FIELD", "VALUE"], [[k, v] for k, v in fields if v])


def report(args: argparse.Namespace, error: ImagesvcError) -> None:
    """Prints a failed call on stderr: the JSON error document, or one line."""
    if args.output == "json":
        print_json(error_document(error), sys.stderr)
    elif isinstance(error, Unavailable) and not error.reason:
        # No reason: gRPC itself could not reach the server (down, wrong port, TLS on
        # one side only); its message alone does not say what was being reached.
        print(
            f"imagesvc-cli: cannot reach the imagesvc server at {args.server} (is it "
            f"running, and using TLS only if --tls/--tls-ca is given?): {error.message}",
            file=sys.stderr,
        )
    else:
        print(f"imagesvc-cli: {error}", file=sys.stderr)


def pull(args: argparse.Namespace) -> int:
    auth = _registry_auth(args)
    shown: list[str] = []
    with (
        connect(args) as client,
        client.pull(args.reference, platform=args.platform, auth=auth) as operation,
    ):
        if args.quiet or args.output == "json":
            result = operation.wait()
        else:
            # Imported here: rich is for progress only (not for -q or json).
            from imagesvc_client.cli.progress import TransferView, stdout_console

            with TransferView(stdout_console()) as view:
                view.show_all(operation)
            result = operation.result
            shown = view.statuses
    if args.output == "json":
        print_json(to_json(result))
    elif args.quiet:
        print(result.reference)
    else:
        # Like docker pull's last lines, unless the Engine's own status lines said them.
        closing = [f"Digest: {result.digest}", f"Status: {result.status}", result.reference]
        for line in closing:
            if line not in shown:
                print(line)
    return 0


def fleet_pull(args: argparse.Namespace) -> int:
    """One line per node whose phase changes, then a table of every node; exit 1 unless
    the image is on every selected node."""
    options = FleetPullOptions(
        platform=args.platform,
        auth=_registry_auth(args),
        nodes=_node_list(args.nodes),
        parallelism=args.parallelism,
        node_timeout_seconds=args.node_timeout,
        stall_timeout_seconds=args.stall_timeout,
        retries=args.retries,
        stop_on_first_failure=args.stop_on_failure,
    )
    phases: dict[str, int] = {}
    with connect(args) as client, client.pull_on_nodes(args.reference, options) as operation:
        for node in operation:
            key = node.address or node.node
            if args.quiet or args.output == "json" or phases.get(key) == node.phase:
                continue
            phases[key] = node.phase
            print(f"{node.node or node.address}: {_phase(node)}")
        summary = operation.result
    if args.output == "json":
        print_json(to_json(summary))
        return 0 if summary.complete else 1
    rows = [
        [n.node or "?", n.address, _phase(n), f"{n.percent:.0f}%", str(n.attempt)]
        for n in (*summary.succeeded, *summary.skipped, *summary.failed, *summary.cancelled)
    ]
    print_table(["NODE", "ADDRESS", "RESULT", "PROGRESS", "ATTEMPTS"], rows)
    for n in (*summary.failed, *summary.cancelled):
        print(f"{n.node or n.address}: {n.error.reason}: {n.error.message}", file=sys.stderr)
    print(
        f"{summary.desired} nodes: {len(summary.succeeded)} pulled, {len(summary.skipped)}"
        f" already present, {len(summary.failed)} failed, {len(summary.cancelled)} not started"
    )
    return 0 if summary.complete else 1


def _phase(node: fleet_pb.NodePull) -> str:
    name = fleet_pb.NodePullPhase.Name(node.phase).removeprefix("NODE_PULL_PHASE_").lower()
    if node.HasField("error"):
        return f"{name} ({node.error.reason})"
    return name


def push(args: argparse.Namespace) -> int:
    auth = _registry_auth(args)
    shown: list[str] = []
    with connect(args) as client, client.push(args.reference, auth=auth) as operation:
        if args.quiet or args.output == "json":
            result = operation.wait()
        else:
            # Imported here: rich is for progress only (not for -q or json).
            from imagesvc_client.cli.progress import TransferView, stdout_console

            with TransferView(stdout_console()) as view:
                view.show_all(operation)
            result = operation.result
            shown = view.statuses
    if args.output == "json":
        print_json(to_json(result))
    elif args.quiet:
        print(result.reference)
    else:
        closing = f"{result.tag}: digest: {result.digest} size: {result.size}"
        if closing not in shown:
            print(closing)
    return 0


def tag(args: argparse.Namespace) -> int:
    with connect(args) as client:
        reply = client.tag(args.source, args.target)
    if args.output == "json":
        print_json(to_json(reply))
    return 0


def build(args: argparse.Namespace) -> int:
    context: ContextSource
    dockerfile: str | Path | None
    if args.context == "-":
        # A tar archive on stdin (-f names the Dockerfile inside it), or a Dockerfile.
        context, dockerfile = stdin_context(sys.stdin.buffer, args.file)
    else:
        # Like docker: -f is relative to the current directory, not the context.
        context = args.context
        dockerfile = Path(args.file).absolute() if args.file is not None else None
    with (
        connect(args) as client,
        client.build(
            context,
            tags=args.tag,
            dockerfile=dockerfile,
            build_args=_build_args(args.build_arg),
            labels=_pairs(args.label, "--label"),
            target=args.target,
            no_cache=args.no_cache,
            pull=args.pull,
            platform=args.platform,
            network_mode=args.network,
        ) as operation,
    ):
        if args.quiet or args.output == "json":
            result = operation.wait()
        else:
            from imagesvc_client.cli.progress import BuildView, stdout_console

            with BuildView(stdout_console()) as view:
                for text in operation:
                    view.show(text)
            result = operation.result
    if args.output == "json":
        print_json(to_json(result))
    elif args.quiet:
        print(result.image_id)
    return 0


def load(args: argparse.Namespace) -> int:
    """Like ``docker load``: the archive from -i FILE or stdin; prints each loaded name
    (or id, for an untagged image) as "Loaded image: ..." lines."""
    if args.input is None and sys.stdin.isatty():
        raise UsageError("no archive: give -i FILE or send it on stdin")
    archive = sys.stdin.buffer if args.input in (None, "-") else args.input
    with connect(args) as client, client.import_images(archive) as operation:
        if args.quiet or args.output == "json":
            result = operation.wait()
        else:
            for text in operation:
                if not text.startswith("Loaded image"):
                    print(text, flush=True)
            result = operation.result
    if args.output == "json":
        print_json(to_json(result))
        return 0
    for image in result.images:
        for name in image.tags:
            print(f"Loaded image: {name}")
        if not image.tags:
            print(f"Loaded image ID: {image.id}")
    return 0


def _build_args(values: list[str]) -> dict[str, str]:
    """KEY=VALUE, or KEY alone to take the value from the environment (as docker does)."""
    result: dict[str, str] = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not key:
            raise UsageError(f"invalid --build-arg {value!r}")
        if sep:
            result[key] = text
        elif key in os.environ:
            result[key] = os.environ[key]
    return result


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for value in values:
        key, _, text = value.partition("=")
        if not key:
            raise UsageError(f"invalid {flag} {value!r}")
        result[key] = text
    return result


def rm(args: argparse.Namespace) -> int:
    failed = False
    removed: list[dict[str, Any]] = []
    with connect(args) as client:
        for name in args.images:
            try:
                reply = client.remove(name, force=args.force, no_prune=args.no_prune)
            except ImagesvcError as error:
                failed = True
                report(args, error)
                continue
            if args.output == "json":
                removed.append({"image": name, **to_json(reply)})
            else:
                for reference in reply.untagged:
                    print(f"Untagged: {reference}")
                for image_id in reply.deleted:
                    print(f"Deleted: {image_id}")
    if args.output == "json":
        print_json(removed)
    return 1 if failed else 0


_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def _until(value: str) -> datetime:
    """A Unix time, an RFC 3339 time (UTC when no zone), or a duration ago ("24h", "90m")."""
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return datetime.fromtimestamp(float(value), UTC)
    duration = _DURATION.fullmatch(value)
    if duration is not None and any(duration.groups()):
        hours, minutes, seconds = (int(part or 0) for part in duration.groups())
        return datetime.now(UTC) - timedelta(hours=hours, minutes=minutes, seconds=seconds)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"invalid until={value!r}: a timestamp or a duration like 24h") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _prune_filters(conditions: list[str]) -> tuple[list[str], list[str], datetime | None]:
    """prune's --filter values: labels, excluded labels, until."""
    labels: list[str] = []
    exclude: list[str] = []
    until: datetime | None = None
    for condition in conditions:
        if condition.startswith("label!="):
            exclude.append(condition.removeprefix("label!="))
        elif condition.startswith("label="):
            labels.append(condition.removeprefix("label="))
        elif condition.startswith("until="):
            until = _until(condition.removeprefix("until="))
        else:
            raise UsageError(f"invalid filter {condition!r}")
    return labels, exclude, until


def _node_list(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _print_images_summary(args: argparse.Namespace, summary: fleet_pb.ImagesOnNodesSummary) -> int:
    """A row per node (done, skipped, failed); exit 1 unless every node succeeded or had
    nothing to do."""
    if args.output == "json":
        print_json(to_json(summary))
        return 0 if summary.complete else 1
    rows = []
    for result, changes in (
        ("done", summary.succeeded),
        ("skipped", summary.skipped),
        ("failed", summary.failed),
    ):
        for change in changes:
            state = f"{result} ({change.error.reason})" if change.HasField("error") else result
            freed = human_size(change.space_reclaimed_bytes)
            rows.append(
                [change.node or "?", change.address, state, str(len(change.deleted)), freed]
            )
    print_table(["NODE", "ADDRESS", "RESULT", "DELETED", "RECLAIMED"], rows)
    for change in summary.failed:
        print(f"{change.node or change.address}: {change.error.message}", file=sys.stderr)
    print(f"Total reclaimed space: {human_size(summary.space_reclaimed_bytes)}")
    return 0 if summary.complete else 1


def fleet_rm(args: argparse.Namespace) -> int:
    with connect(args) as client:
        summary = client.remove_on_nodes(
            args.image, force=args.force, no_prune=args.no_prune, nodes=_node_list(args.nodes)
        )
    return _print_images_summary(args, summary)


def fleet_prune(args: argparse.Namespace) -> int:
    labels, exclude, until = _prune_filters(args.filter)
    if not args.force and not _confirm(args.all):
        return 0
    with connect(args) as client:
        summary = client.prune_on_nodes(
            all=args.all,
            labels=labels,
            exclude_labels=exclude,
            until=until,
            nodes=_node_list(args.nodes),
        )
    return _print_images_summary(args, summary)


def prune(args: argparse.Namespace) -> int:
    labels, exclude, until = _prune_filters(args.filter)
    if not args.force and not _confirm(args.all):
        return 0
    with connect(args) as client:
        reply = client.prune(all=args.all, labels=labels, exclude_labels=exclude, until=until)
    if args.output == "json":
        print_json(to_json(reply))
        return 0
    if reply.untagged or reply.deleted:
        print("Deleted Images:")
        for reference in reply.untagged:
            print(f"untagged: {reference}")
        for image_id in reply.deleted:
            print(f"deleted: {image_id}")
        print()
    print(f"Total reclaimed space: {human_size(reply.space_reclaimed_bytes)}")
    return 0


def _confirm(all_unused: bool) -> bool:
    what = (
        "all images without at least one container associated to them"
        if all_unused
        else ("all dangling images")
    )
    sys.stderr.write(
        f"WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] "
    )
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def login(args: argparse.Namespace) -> int:
    username = args.username
    if not username:
        if args.password_stdin or not sys.stdin.isatty():
            raise UsageError("--username is required")
        username = input("Username: ").strip()
    password = _password(args, required=True)
    assert password is not None
    auth = RegistryAuth(username, password, server_address=args.registry)
    with connect(args) as client:
        reply = client.check_auth(auth)
    if args.output == "json":
        print_json(to_json(reply))
    else:
        print(reply.status or "Login Succeeded")
    return 0


def manifest_inspect(args: argparse.Namespace) -> int:
    auth = _registry_auth(args)
    with connect(args) as client:
        found = client.inspect_registry_image(args.reference, auth=auth)
    if args.output == "json":
        print_json(to_json(found))
        return 0
    platforms = [
        "/".join(p for p in (x.os, x.architecture, x.variant) if p) for x in found.platforms
    ]
    print(f"Name:       {found.reference}")
    print(f"Digest:     {found.digest}")
    print(f"MediaType:  {found.media_type}")
    print(f"Size:       {found.size_bytes}")
    print(f"Platforms:  {', '.join(platforms) or '(not reported)'}")
    return 0
