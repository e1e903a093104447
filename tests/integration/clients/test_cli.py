"""imagesvc-cli, run as a subprocess (the installed console script) against the live
server, the sandboxed Engine and the loopback registries: every verb, its JSON output
parsed, the plain and the terminal progress, and the exit codes of failures."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devtools.sandbox import BuiltImage, Engine, Registry
from tests.integration.builds import dockerfile, make_tar
from tests.integration.clients.closed_pipe import assert_ended_quietly, run_into_closed_pipe
from tests.integration.clients.conftest import ServedImage
from tests.integration.local_images import Throwaway, exists, inspect, unique_repo
from tests.integration.transfers import local_id, registry_manifest, remove_local, unique

CLI = Path(sys.executable).with_name("imagesvc-cli")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def cli(
    address: str,
    *args: str,
    stdin: str | bytes | None = None,
    env: dict[str, str] | None = None,
    code: int = 0,
) -> subprocess.CompletedProcess[str]:
    """Runs imagesvc-cli with IMAGESVC_SERVER=address; checks the exit code."""
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith("IMAGESVC_") and k != "TERM"
    }
    environment.update({"IMAGESVC_SERVER": address, **(env or {})})
    data = stdin.encode() if isinstance(stdin, str) else stdin
    ran = subprocess.run(
        [str(CLI), *args], input=data, capture_output=True, env=environment, timeout=180
    )
    result = subprocess.CompletedProcess(
        ran.args, ran.returncode, ran.stdout.decode(), ran.stderr.decode()
    )
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    return result


def cli_json(address: str, *args: str, **kwargs: Any) -> Any:
    return json.loads(cli(address, "--output", "json", *args, **kwargs).stdout)


def error_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The error document a failed command printed on stderr with --output json."""
    document: dict[str, Any] = json.loads(result.stderr)["error"]
    return document


def test_console_script_is_installed() -> None:
    assert CLI.is_file(), "imagesvc-cli is not installed in the venv (scripts/bootstrap)"


# Local images -----------------------------------------------------------------------


def test_ls(address: str, throwaway: Throwaway) -> None:
    repo = unique_repo("cli-ls")
    first = throwaway.build(f"{repo}:1")
    second = throwaway.build(f"{repo}:2", extra_lines=["RUN echo 2 > /two"])
    label = f"label={throwaway.label}"

    listed = cli_json(address, "ls", "--filter", label)
    quiet = cli(address, "ls", "-q", "--no-trunc", "--filter", label).stdout.split()
    table = cli(address, "ls", repo).stdout.splitlines()
    pattern = cli_json(address, "ls", f"{repo}:2")

    # Newest first; the Engine's list has whole seconds, so the two may tie.
    ids = [image["id"] for image in listed]
    assert sorted(ids) == sorted([first.id, second.id])
    assert [image["created"] for image in listed] == sorted(
        (image["created"] for image in listed), reverse=True
    )
    assert next(i for i in listed if i["id"] == second.id)["repoTags"] == [second.tag]
    assert int(listed[0]["size"]) > 0  # int64 in the protobuf JSON mapping: a string
    assert quiet == ids
    assert re.fullmatch(r"REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE", table[0])
    rows = sorted(line.split()[:3] for line in table[1:])
    assert rows == [[repo, "1", first.id[7:19]], [repo, "2", second.id[7:19]]]
    assert [image["id"] for image in pattern] == [second.id]
    assert cli_json(address, "ls", "--filter", "dangling=true", "--filter", label) == []
    usage = cli(address, "ls", "--filter", "color=blue", code=2)
    assert "invalid filter" in usage.stderr


def _before_created(table: str) -> list[str]:
    """The header, then the sorted rows, cut where the CREATED column starts (an age
    may tick between two commands); the columns before it must be laid out the same."""
    lines = table.splitlines()
    cut = lines[0].index("CREATED")
    return [lines[0][:cut], *sorted(line[:cut] for line in lines[1:])]


def test_ls_shows_tags_and_digests_like_docker(
    address: str, engine: Engine, served_image: ServedImage
) -> None:
    repository = served_image.reference.rsplit(":", 1)[0]
    extra = f"{repository}:extra"
    cli(address, "pull", "-q", f"{repository}@{served_image.digest}")
    try:
        # Pulled by digest: a row with the repository and tag <none>, not a dangling one.
        for flags in ([], ["--digests"], ["--no-trunc"]):
            ours = cli(address, "ls", *flags, repository).stdout
            theirs = engine.docker("image", "ls", *flags, repository).stdout
            assert _before_created(ours) == _before_created(theirs), (ours, theirs)
            assert ours.splitlines()[1].startswith(f"{repository}   <none>")
        # Tagged too: the tag's row carries the digest; no separate digest row.
        cli(address, "tag", served_image.image_id, extra)
        for flags in ([], ["--digests"]):
            ours = cli(address, "ls", *flags, repository).stdout
            theirs = engine.docker("image", "ls", *flags, repository).stdout
            assert _before_created(ours) == _before_created(theirs), (ours, theirs)
            assert len(ours.splitlines()) == 2
    finally:
        remove_local(engine, extra)


def test_history_and_inspect(address: str, engine: Engine, busybox_image: BuiltImage) -> None:
    history = cli_json(address, "history", busybox_image.tag)
    inspected = cli_json(address, "inspect", busybox_image.tag)
    default = json.loads(cli(address, "inspect", busybox_image.tag).stdout)
    engine_documents = json.loads(cli(address, "inspect", "--engine", busybox_image.tag).stdout)
    table = cli(address, "inspect", "--output", "table", busybox_image.tag).stdout

    expected = engine.docker("history", "--no-trunc", "-q", busybox_image.tag).stdout.split()
    assert [entry["id"] for entry in history] == expected
    assert inspected == default  # inspect prints JSON unless told otherwise
    assert [image["id"] for image in inspected] == [busybox_image.id]
    assert inspected[0]["rootFsLayers"] == inspect(engine, busybox_image.tag)["RootFS"]["Layers"]
    assert engine_documents[0]["Id"] == busybox_image.id
    assert engine_documents[0]["RepoTags"] == [busybox_image.tag]
    assert busybox_image.id in table
    assert "RepoTags" in table


def test_unknown_images_fail_with_the_reason(address: str, busybox_image: BuiltImage) -> None:
    missing = f"{unique_repo('cli-missing')}:1"

    both = cli(address, "inspect", busybox_image.tag, missing, code=1)
    plain = cli(address, "history", missing, code=1)
    rm = cli(address, "--output", "json", "rm", missing, code=1)

    # What exists is still printed; the missing one is reported on stderr.
    assert [image["id"] for image in json.loads(both.stdout)] == [busybox_image.id]
    assert error_of(both)["reason"] == "IMAGE_NOT_FOUND"
    assert error_of(both)["code"] == "NOT_FOUND"
    assert missing in error_of(both)["message"]
    assert plain.stdout == ""
    assert plain.stderr.startswith("imagesvc-cli: ")
    assert "(IMAGE_NOT_FOUND)" in plain.stderr
    assert json.loads(rm.stdout) == []
    assert error_of(rm)["reason"] == "IMAGE_NOT_FOUND"
    malformed = cli(address, "--output", "json", "history", "UPPER/case", code=1)
    assert error_of(malformed)["code"] == "INVALID_ARGUMENT"


def test_tag_and_rm(address: str, engine: Engine, busybox_image: BuiltImage) -> None:
    target = f"{unique_repo('cli-tag')}:copy"
    try:
        tagged = cli_json(address, "tag", busybox_image.tag, target)
        assert tagged == {"id": busybox_image.id, "target": target}
        assert local_id(engine, target) == busybox_image.id
        assert cli(address, "tag", busybox_image.tag, target).stdout == ""  # moves: no news

        removed = cli(address, "rm", target)

        assert removed.stdout == f"Untagged: {target}\n"
        assert not exists(engine, target)
        assert exists(engine, busybox_image.tag)
    finally:
        remove_local(engine, target)


def test_prune(address: str, engine: Engine, throwaway: Throwaway) -> None:
    image = throwaway.build(f"{unique_repo('cli-prune')}:1", extra_lines=["RUN echo p > /p"])
    label = f"label={throwaway.label}"

    declined = cli(address, "prune", "--all", "--filter", label, stdin="n\n")
    assert "Are you sure you want to continue?" in declined.stderr
    assert exists(engine, image.id)

    pruned = cli_json(address, "prune", "--all", "--force", "--filter", label)

    assert image.id in pruned["deleted"]
    assert image.tag in pruned["untagged"]
    assert int(pruned["spaceReclaimedBytes"]) >= 0
    assert not exists(engine, image.id)
    again = cli(address, "prune", "-a", "-f", "--filter", label).stdout
    assert again == "Total reclaimed space: 0B\n"


def test_an_unreachable_server_fails_with_a_message(address: str) -> None:
    failed = cli(address, "--server", "127.0.0.1:1", "--timeout", "5", "ls", code=1)
    # Says what it could not reach, not only gRPC's "failed to connect to all addresses".
    assert failed.stderr.startswith("imagesvc-cli: cannot reach the imagesvc server at 127.0.0.1:1")
    assert "Connection refused" in failed.stderr
    assert failed.stdout == ""
    # The flag also works after the verb, and wins over IMAGESVC_SERVER.
    after = cli(address, "ls", "--server", "127.0.0.1:1", "--timeout", "5", code=1)
    assert "127.0.0.1:1" in after.stderr
    # JSON: the error document, code UNAVAILABLE and no reason.
    document = error_of(cli(address, "-o", "json", "--server", "127.0.0.1:1", "ls", code=1))
    assert (document["code"], document["reason"]) == ("UNAVAILABLE", "")


# Pull, push, login ------------------------------------------------------------------


def test_pull_prints_layer_progress_then_the_result(
    address: str, engine: Engine, served_image: ServedImage
) -> None:
    reference = served_image.reference

    pulled = cli(address, "pull", reference).stdout.splitlines()
    again = cli_json(address, "pull", reference)
    quiet = cli(address, "pull", "-q", reference).stdout

    # Not a terminal: a plain line per layer state change, like `docker pull | cat`.
    assert pulled[0] == f"1: Pulling from {reference.split('/', 1)[1][:-2]}"
    layer_lines = [line for line in pulled if re.match(r"[0-9a-f]{12}: ", line)]
    assert any(line.endswith(": Downloading") for line in layer_lines)
    assert sum(line.endswith(": Pull complete") for line in layer_lines) >= 1
    assert len(layer_lines) == len(set(layer_lines))  # byte updates are not repeated
    assert pulled[-3:] == [
        f"Digest: {served_image.digest}",
        f"Status: Downloaded newer image for {reference}",
        reference,
    ]
    assert local_id(engine, reference) == served_image.image_id
    assert again["imageId"] == served_image.image_id
    assert again["status"] == f"Image is up to date for {reference}"
    assert quiet == f"{reference}\n"


def test_pull_draws_bars_on_a_terminal(address: str, served_image: ServedImage) -> None:
    screen = _run_on_a_terminal([str(CLI), "--server", address, "pull", served_image.reference])
    assert "━" in screen  # rich's bar
    assert "Pull complete" in screen
    assert "total: " in screen
    assert f"Digest: {served_image.digest}" in screen


def _run_on_a_terminal(command: list[str]) -> str:
    """Runs command with stdout and stderr on a pseudo-terminal; returns what it drew."""
    controller, terminal = pty.openpty()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("IMAGESVC_")}
    environment.update({"TERM": "xterm-256color", "COLUMNS": "120"})
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal, env=environment
    )
    os.close(terminal)
    output = bytearray()
    while True:
        try:
            piece = os.read(controller, 65536)
        except OSError:  # EIO: the terminal closed
            break
        if not piece:
            break
        output += piece
    os.close(controller)
    assert process.wait(timeout=120) == 0, output.decode(errors="replace")
    return output.decode(errors="replace")


def test_pull_of_a_missing_tag_fails(address: str, served_image: ServedImage) -> None:
    missing = served_image.reference[:-2] + ":absent"
    failed = cli(address, "--output", "json", "pull", missing, code=1)
    assert error_of(failed)["reason"] == "IMAGE_NOT_FOUND"
    assert failed.stdout == ""


def test_push(
    address: str, engine: Engine, open_registry: Registry, busybox_image: BuiltImage
) -> None:
    repository = unique("team/cli-push-")
    reference = f"{open_registry.address}/{repository}:1"
    cli(address, "tag", busybox_image.tag, reference)
    try:
        pushed = cli_json(address, "push", reference)
        again = cli(address, "push", reference).stdout.splitlines()

        served = registry_manifest(open_registry, repository, "1")
        assert pushed["digest"] == served.digest
        assert int(pushed["size"]) == served.size
        assert pushed["reference"] == reference
        assert again[0] == f"The push refers to repository [{reference[:-2]}]"
        assert any(line.endswith(": Layer already exists") for line in again)
        assert again[-1] == f"1: digest: {served.digest} size: {served.size}"
    finally:
        remove_local(engine, reference)


def test_login_and_credentials(
    address: str, engine: Engine, auth_registry: Registry, busybox_image: BuiltImage
) -> None:
    assert auth_registry.username is not None
    assert auth_registry.password is not None
    user, password = auth_registry.username, auth_registry.password
    registry = auth_registry.address

    by_stdin = cli(address, "login", registry, "-u", user, "--password-stdin", stdin=password)
    by_env = cli(
        address, "login", registry, "-u", user, env={"IMAGESVC_REGISTRY_PASSWORD": password}
    )
    refused = cli(
        address, "--output", "json", "login", registry, "-u", user, "--password-stdin",
        stdin="wrong-password", code=1,
    )  # fmt: skip
    no_password = cli(address, "login", registry, "-u", user, stdin="", code=2)

    assert by_stdin.stdout == "Login Succeeded\n"
    assert by_env.stdout == "Login Succeeded\n"
    assert error_of(refused)["code"] == "UNAUTHENTICATED"
    assert error_of(refused)["reason"] == "REGISTRY_UNAUTHENTICATED"
    assert "--password-stdin" in no_password.stderr
    for result in (by_stdin, by_env, refused):
        assert password not in result.stdout + result.stderr
        assert "wrong-password" not in result.stdout + result.stderr
    assert "--password " not in cli(address, "login", "--help").stdout

    reference = f"{registry}/{unique('team/cli-auth-')}:1"
    cli(address, "tag", busybox_image.tag, reference)
    try:
        denied = cli(address, "--output", "json", "push", reference, code=1)
        assert error_of(denied)["reason"] == "REGISTRY_UNAUTHENTICATED"
        pushed = cli_json(
            address, "push", reference, "-u", user, "--password-stdin", stdin=password
        )
        assert DIGEST.fullmatch(pushed["digest"])
        cli(address, "rm", reference)
        pulled = cli_json(
            address, "pull", reference, "-u", user, env={"IMAGESVC_REGISTRY_PASSWORD": password}
        )
        assert pulled["imageId"] == busybox_image.id
    finally:
        remove_local(engine, reference)


# Build ------------------------------------------------------------------------------


def test_build(address: str, engine: Engine, busybox_image: BuiltImage, tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(
        dockerfile(
            f"FROM {busybox_image.tag}", "ARG WORD", "COPY . /ctx", "RUN ls /ctx; echo w=$WORD"
        )
    )
    (context / ".dockerignore").write_text("*.secret\n")
    (context / "kept.txt").write_text("kept")
    (context / "key.secret").write_text("never sent")
    other = tmp_path / "Other.dockerfile"
    other.write_text(dockerfile(f"FROM {busybox_image.tag}", "RUN echo from-the-other-file"))
    tags = [f"{unique_repo('cli-build')}:{n}" for n in ("json", "plain", "quiet", "other", "tar")]
    try:
        built = cli_json(address, "build", "-t", tags[0], "--build-arg", "WORD=xyzzy", str(context))
        plain = cli(address, "build", "-t", tags[1], "--build-arg", "WORD=plain", str(context))
        quiet = cli(address, "build", "-q", "-t", tags[2], "--label", "a=b", str(context))
        outside = cli(address, "build", "-t", tags[3], "-f", str(other), str(context))
        archive = make_tar({"Dockerfile": dockerfile(f"FROM {busybox_image.tag}", "RUN echo tar")})
        piped = cli(address, "build", "-t", tags[4], "-", stdin=archive)

        assert built["imageId"] == local_id(engine, tags[0])
        assert built["tags"] == [tags[0]]
        assert "Step 1/" in plain.stdout
        assert "kept.txt" in plain.stdout
        assert "key.secret" not in plain.stdout
        assert "w=plain" in plain.stdout
        assert f"Successfully tagged {tags[1]}" in plain.stdout
        assert quiet.stdout == f"{local_id(engine, tags[2])}\n"
        assert inspect(engine, tags[2])["Config"]["Labels"]["a"] == "b"
        assert "from-the-other-file" in outside.stdout
        assert "tar" in piped.stdout
        assert exists(engine, tags[4])
    finally:
        remove_local(engine, *tags)


def test_build_reads_a_dockerfile_from_stdin(
    address: str, engine: Engine, busybox_image: BuiltImage
) -> None:
    # `docker build - < Dockerfile`: not an archive, so a Dockerfile without a context.
    tag = f"{unique_repo('cli-build-stdin')}:1"
    text = dockerfile(f"FROM {busybox_image.tag}", "RUN echo dockerfile-on-stdin")
    try:
        built = cli(address, "build", "--no-cache", "-t", tag, "-", stdin=text)
        assert "dockerfile-on-stdin" in built.stdout
        assert exists(engine, tag)
    finally:
        remove_local(engine, tag)


def test_build_failures(address: str, busybox_image: BuiltImage, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(dockerfile(f"FROM {busybox_image.tag}", "RUN exit 4"))
    failed = cli(address, "build", str(tmp_path), code=1)
    as_json = cli(address, "--output", "json", "build", str(tmp_path), code=1)
    no_context = cli(address, "build", str(tmp_path / "nowhere"), code=1)

    assert "RUN exit 4" in failed.stderr
    assert "(BUILD_FAILED)" in failed.stderr
    assert "Step 2/2 : RUN exit 4" in failed.stdout  # the output up to the failure
    assert error_of(as_json)["reason"] == "BUILD_FAILED"
    assert as_json.stdout == ""
    assert "not a directory" in no_context.stderr


@pytest.mark.parametrize(
    "verb", ["ls", "history", "inspect", "pull", "push", "tag", "build", "rm", "prune", "login"]
)
def test_every_verb_has_help(verb: str) -> None:
    shown = subprocess.run([str(CLI), verb, "--help"], capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0
    assert f"usage: imagesvc-cli {verb}" in shown.stdout
    assert "--server" in shown.stdout


# A reader that goes away (`imagesvc-cli ls | head -3`) --------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["ls"],
        ["ls", "-q", "--no-trunc"],
        ["--output", "json", "ls"],
        ["history", "{image}"],
        ["inspect", "{image}"],
        ["inspect", "--output", "table", "{image}"],
        ["ls", "--help"],
    ],
    ids=" ".join,
)
def test_a_pipe_closed_before_the_output_ends_the_command_quietly(
    address: str, busybox_image: BuiltImage, command: list[str]
) -> None:
    args = [arg.format(image=busybox_image.tag) for arg in command]
    assert_ended_quietly(run_into_closed_pipe([str(CLI)], address, *args))


def test_a_pull_whose_reader_goes_away_ends_quietly(
    address: str, served_image: ServedImage
) -> None:
    """The reader takes the first progress line and goes; the pull (throttled, about
    0.5 s) still has lines to print."""
    ended = run_into_closed_pipe([str(CLI)], address, "pull", served_image.reference, read_lines=1)
    assert ended.lines_read[0].startswith(b"1: Pulling from ")
    assert_ended_quietly(ended)


def test_an_error_message_into_a_closed_pipe_ends_quietly(address: str) -> None:
    missing = f"{unique_repo('cli-missing')}:1"
    ended = run_into_closed_pipe([str(CLI)], address, "inspect", missing, stream="stderr")
    assert_ended_quietly(ended)


def test_save_writes_a_loadable_archive_to_a_file_or_stdout(
    address: str, engine: Engine, busybox_image: BuiltImage, tmp_path: Path
) -> None:
    path = tmp_path / "busybox.tar"
    assert cli(address, "save", "-o", str(path), busybox_image.tag).stdout == ""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("IMAGESVC_")}
    piped = subprocess.run(
        [str(CLI), "save", busybox_image.tag],
        capture_output=True,
        env={**environment, "IMAGESVC_SERVER": address},
        timeout=180,
        check=True,
    )
    assert piped.stdout == path.read_bytes()
    assert busybox_image.tag in engine.docker("load", "--input", str(path)).stdout
    missing = cli(address, "save", "-o", str(tmp_path / "none.tar"), "imagesvc-test/no:1", code=1)
    assert "not found" in missing.stderr
    assert not (tmp_path / "none.tar").exists()


def test_df_shows_totals_and_per_image_sizes(address: str, busybox_image: BuiltImage) -> None:
    summary = cli(address, "df").stdout.splitlines()
    assert summary[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert summary[1].startswith("Images")
    verbose = cli(address, "df", "-v").stdout
    assert "SHARED SIZE" in verbose
    repository, tag = busybox_image.tag.rsplit(":", 1)
    assert any(line.split()[:2] == [repository, tag] for line in verbose.splitlines())
    document = cli_json(address, "df")
    [busybox] = [i for i in document["images"] if i["id"] == busybox_image.id]
    assert int(busybox["sizeBytes"]) > 0
