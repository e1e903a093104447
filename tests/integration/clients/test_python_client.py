"""ImageClient (the blocking Python client) against the live server, the sandboxed
Engine and the loopback registries: every method, its typed errors, and the progress
streams of pull, push and build."""

from __future__ import annotations

import io
import itertools
import json
import re
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devtools.sandbox import BuiltImage, Engine, Registry
from imagesvc_client import (
    ContextError,
    FailedPrecondition,
    ImageClient,
    ImagesvcError,
    InvalidArgument,
    NotFound,
    RegistryAuth,
    Unauthenticated,
    Unavailable,
)
from imagesvc_client.v1 import image_pb2
from tests.integration.builds import dockerfile, make_tar
from tests.integration.clients.conftest import ServedImage
from tests.integration.local_images import (
    Throwaway,
    cli_list_ids,
    exists,
    inspect,
    tags_of,
    unique_repo,
)
from tests.integration.transfers import local_id, registry_manifest, remove_local, unique

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def _check_progress(progress: list[image_pb2.TransferProgress], layers: int) -> None:
    """Counters only grow, and the last message counts every layer done."""
    assert progress, "no progress message"
    for before, after in itertools.pairwise(progress):
        assert after.layers_done >= before.layers_done
        assert after.bytes_done >= before.bytes_done
    assert progress[-1].layers_done == progress[-1].layers_total == layers


# Local images -----------------------------------------------------------------------


def test_list_iterates_every_page(client: ImageClient, throwaway: Throwaway) -> None:
    built = [
        throwaway.build(f"{unique_repo('list')}:1", extra_lines=[f"RUN echo {i} > /i"])
        for i in range(5)
    ]

    listed = list(client.list(labels=[throwaway.label], page_size=2))

    # Five images in pages of two: the client followed the page tokens to the end.
    assert len(listed) == 5
    assert {image.id for image in listed} == {b.id for b in built}
    assert {image.id for image in listed} == cli_list_ids(
        throwaway.engine, f"label={throwaway.label}"
    )
    created = [image.created.ToDatetime() for image in listed]
    assert created == sorted(created, reverse=True)  # newest first
    tagged = {image.id: list(image.repo_tags) for image in listed}
    assert all(tagged[b.id] == [b.tag] for b in built)


def test_list_filters(client: ImageClient, throwaway: Throwaway) -> None:
    repo = unique_repo("filter")
    throwaway.build(f"{repo}:a", labels={"org.example.kind": "a"})
    b = throwaway.build(
        f"{repo}:b", extra_lines=["RUN echo b > /b"], labels={"org.example.kind": "b"}
    )

    by_label = list(client.list(labels=[throwaway.label, "org.example.kind=b"]))
    by_reference = list(client.list(references=[f"{repo}:b"]))

    assert [image.id for image in by_label] == [b.id]
    assert [image.id for image in by_reference] == [b.id]
    assert list(client.list(references=[f"{repo}:nothing"])) == []


def test_get_and_history(client: ImageClient, engine: Engine, busybox_image: BuiltImage) -> None:
    image = client.get(busybox_image.tag)
    history = client.history(busybox_image.tag)

    document = inspect(engine, busybox_image.tag)
    assert image.id == busybox_image.id
    assert busybox_image.tag in image.repo_tags
    assert image.size == document["Size"]
    assert list(image.root_fs_layers) == document["RootFS"]["Layers"]
    assert image.inspect_json  # the Engine's whole document came along
    cli_history = engine.docker(
        "history", "--no-trunc", "--quiet", busybox_image.tag
    ).stdout.split()
    assert [entry.id for entry in history] == cli_history
    assert history[0].id == busybox_image.id
    assert "busybox" in history[-1].created_by or history[-1].created_by


def test_tag_then_remove(client: ImageClient, engine: Engine, busybox_image: BuiltImage) -> None:
    target = f"{unique_repo('tag')}:copy"
    try:
        tagged = client.tag(busybox_image.tag, target)
        assert tagged.id == busybox_image.id
        assert tagged.target == target
        assert client.get(target).id == busybox_image.id

        removed = client.remove(target)

        assert list(removed.untagged) == [target]
        assert list(removed.deleted) == []  # the busybox tag still holds the image
        assert not exists(engine, target)
        assert tags_of(engine, busybox_image.id) == [busybox_image.tag]
    finally:
        remove_local(engine, target)


def test_prune_removes_only_what_the_filter_selects(
    client: ImageClient, engine: Engine, throwaway: Throwaway, busybox_image: BuiltImage
) -> None:
    old = throwaway.build(f"{unique_repo('prune')}:1", extra_lines=["RUN echo p > /p"])

    kept = client.prune(
        all=True, labels=[throwaway.label], until=datetime.now(UTC) - timedelta(days=1)
    )
    assert old.id not in kept.deleted
    assert exists(engine, old.id)

    pruned = client.prune(all=True, labels=[throwaway.label])

    assert old.id in pruned.deleted
    assert old.tag in pruned.untagged
    assert pruned.space_reclaimed_bytes >= 0
    assert not exists(engine, old.id)
    assert exists(engine, busybox_image.tag)


def test_errors_are_typed_and_carry_the_reason(client: ImageClient) -> None:
    missing = f"{unique_repo('missing')}:1"
    with pytest.raises(NotFound) as not_found:
        client.get(missing)
    assert not_found.value.reason == "IMAGE_NOT_FOUND"
    assert missing in not_found.value.message
    assert not_found.value.domain == "imagesvc"

    with pytest.raises(NotFound):
        client.history(missing)
    with pytest.raises(NotFound):
        client.remove(missing)
    with pytest.raises(NotFound):
        client.tag(missing, f"{unique_repo('x')}:1")
    with pytest.raises(InvalidArgument) as malformed:
        client.get("UPPER/case")
    assert malformed.value.reason == "INVALID_REFERENCE"
    assert isinstance(malformed.value, ImagesvcError)


def test_an_unreachable_server_is_unavailable() -> None:
    with ImageClient("127.0.0.1:1", timeout=10) as nowhere, pytest.raises(Unavailable):
        nowhere.get("anything")


# Registries -------------------------------------------------------------------------


def test_push_then_pull_with_progress(
    client: ImageClient, engine: Engine, open_registry: Registry, busybox_image: BuiltImage
) -> None:
    repository = unique("team/sync-")
    reference = f"{open_registry.address}/{repository}:1"
    client.tag(busybox_image.tag, reference)
    try:
        push = client.push(reference)
        pushed_progress = list(push)
        pushed = push.result

        layers = len(client.get(reference).root_fs_layers)
        _check_progress(pushed_progress, layers)
        assert DIGEST.fullmatch(pushed.digest)
        assert pushed.digest == registry_manifest(open_registry, repository, "1").digest
        assert pushed.reference == reference
        assert push.done

        client.remove(reference)
        assert exists(engine, busybox_image.id)  # only the tag went away
        pull = client.pull(reference)
        pulled_progress = list(pull)

        # Every layer is still on the Engine: only status lines, nothing downloaded.
        assert pulled_progress[0].status == f"1: Pulling from {repository}"
        assert not [layer for message in pulled_progress for layer in message.layers]
        assert pull.result.image_id == busybox_image.id
        assert pull.result.digest == pushed.digest
        assert pull.result.reference == reference
    finally:
        remove_local(engine, reference)


def test_pull_result_waits_for_the_whole_stream(
    client: ImageClient, engine: Engine, served_image: ServedImage
) -> None:
    result = client.pull(served_image.reference, timeout=60).result

    assert result.image_id == served_image.image_id == local_id(engine, served_image.reference)
    assert result.digest == served_image.digest
    assert result.status == f"Downloaded newer image for {served_image.reference}"


def test_pull_progress_shows_the_layer_being_downloaded(
    client: ImageClient, served_image: ServedImage
) -> None:
    with client.pull(served_image.reference) as pull:
        states = {layer.state for message in pull for layer in message.layers}
    assert {"Downloading", "Pull complete"} <= states
    assert pull.result.image_id == served_image.image_id


def test_pull_of_a_missing_tag_is_not_found(client: ImageClient, served_image: ServedImage) -> None:
    missing = served_image.reference[:-2] + ":no-such-tag"
    pull = client.pull(missing)
    with pytest.raises(NotFound) as caught:
        list(pull)
    assert caught.value.reason == "IMAGE_NOT_FOUND"
    with pytest.raises(NotFound):
        pull.wait()  # the result is the same error


def test_registry_credentials(
    client: ImageClient, engine: Engine, auth_registry: Registry, busybox_image: BuiltImage
) -> None:
    assert auth_registry.username is not None
    assert auth_registry.password is not None
    good = RegistryAuth(auth_registry.username, auth_registry.password, auth_registry.address)
    bad = RegistryAuth(auth_registry.username, "not-the-password", auth_registry.address)
    assert "not-the-password" not in repr(bad)

    assert client.check_auth(good).status == "Login Succeeded"
    with pytest.raises(Unauthenticated) as refused:
        client.check_auth(bad)
    assert refused.value.reason == "REGISTRY_UNAUTHENTICATED"
    assert "not-the-password" not in str(refused.value)

    reference = f"{auth_registry.address}/{unique('team/cred-')}:1"
    client.tag(busybox_image.tag, reference)
    try:
        with pytest.raises(Unauthenticated):
            client.push(reference, auth=bad).wait()
        assert DIGEST.fullmatch(client.push(reference, auth=good).wait().digest)
        client.remove(reference)
        with pytest.raises(Unauthenticated):
            client.pull(reference).wait()  # no credentials at all
        assert client.pull(reference, auth=good).wait().image_id == busybox_image.id
    finally:
        remove_local(engine, reference)


# Build ------------------------------------------------------------------------------


def _context_dir(root: Path, busybox_tag: str) -> Path:
    """A context whose .dockerignore leaves out some files, brings one back, and even
    names the Dockerfile and itself (which are sent anyway)."""
    files = {
        "Dockerfile": dockerfile(
            f"FROM {busybox_tag}", "COPY . /ctx", "RUN cd /ctx && find . -type f | sort"
        ),
        ".dockerignore": (
            "# output and secrets\nsecret.txt\nlogs\n**/*.tmp\ndocs\n!docs/keep.md\n"
            "Dockerfile\n.dockerignore\n"
        ),
        "app.txt": "app",
        "secret.txt": "do not send",
        "logs/app.log": "noise",
        "src/main.txt": "main",
        "src/deep/cache.tmp": "cache",
        "docs/keep.md": "keep",
        "docs/drop.md": "drop",
    }
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


# What COPY finds. The Dockerfile and .dockerignore were sent too (the build could not
# run otherwise), but the Engine drops them from the context when .dockerignore names them.
SENT = ["./app.txt", "./docs/keep.md", "./src/main.txt"]


def test_build_a_directory_honouring_dockerignore(
    client: ImageClient, engine: Engine, busybox_image: BuiltImage, tmp_path: Path
) -> None:
    context = _context_dir(tmp_path, busybox_image.tag)
    tag = f"{unique_repo('build')}:1"
    try:
        build = client.build(
            context, tags=[tag], labels={"org.example.client": "sync"}, chunk_size=700
        )
        text = "".join(build)

        result = build.result
        assert result.image_id == local_id(engine, tag)
        assert list(result.tags) == [tag]
        assert "Step 2/4 : COPY . /ctx" in text  # step 4 is the LABEL the server adds
        listing = [line for line in text.splitlines() if line.startswith("./")]
        assert listing == SENT
        assert inspect(engine, tag)["Config"]["Labels"]["org.example.client"] == "sync"
    finally:
        remove_local(engine, tag)


def test_build_from_a_tar_file_with_args_and_a_dockerfile_path(
    client: ImageClient, engine: Engine, busybox_image: BuiltImage
) -> None:
    archive = make_tar(
        {
            "build/Custom": dockerfile(
                f"FROM {busybox_image.tag}", "ARG WORD", "RUN echo word=$WORD"
            ),
        },
        compress=True,
    )
    tag = f"{unique_repo('tar')}:1"
    try:
        build = client.build(
            io.BytesIO(archive), tags=[tag], dockerfile="build/Custom", build_args={"WORD": "xyzzy"}
        )
        text = "".join(build)
        assert "word=xyzzy" in text
        assert build.result.image_id == local_id(engine, tag)
    finally:
        remove_local(engine, tag)


def test_build_failures(client: ImageClient, busybox_image: BuiltImage, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(dockerfile(f"FROM {busybox_image.tag}", "RUN exit 3"))
    build = client.build(tmp_path)
    with pytest.raises(FailedPrecondition) as failed:
        for _ in build:
            pass
    assert failed.value.reason == "BUILD_FAILED"
    assert "RUN exit 3" in failed.value.message

    # Found before anything is sent.
    with pytest.raises(ContextError) as no_dockerfile:
        client.build(tmp_path, dockerfile="Missing")
    assert isinstance(no_dockerfile.value, InvalidArgument)
    assert no_dockerfile.value.reason == "INVALID_BUILD_CONTEXT"
    # The server's own check of a context without a Dockerfile.
    with pytest.raises(InvalidArgument) as server_side:
        client.build(make_tar({"other": "x"})).wait()
    assert server_side.value.reason == "INVALID_BUILD_OPTIONS"
    assert "Dockerfile" in server_side.value.message


def test_export_writes_a_loadable_archive_to_a_path_or_a_file(
    client: ImageClient, engine: Engine, busybox_image: BuiltImage, tmp_path: Path
) -> None:
    path = tmp_path / "busybox.tar"
    written = client.export(busybox_image.tag, path)
    assert path.stat().st_size == written
    with tarfile.open(path) as tar:
        manifest = tar.extractfile("manifest.json")
        assert manifest is not None
        [entry] = json.load(manifest)
    assert entry["RepoTags"] == [busybox_image.tag]
    buffer = io.BytesIO()
    assert client.export([busybox_image.tag], buffer) == written
    assert buffer.getvalue() == path.read_bytes()
    loaded = engine.docker("load", "--input", str(path)).stdout
    assert busybox_image.tag in loaded


def test_a_failed_export_leaves_no_file(client: ImageClient, tmp_path: Path) -> None:
    path = tmp_path / "missing.tar"
    with pytest.raises(NotFound):
        client.export(f"{unique_repo('missing')}:1", path)
    assert list(tmp_path.iterdir()) == []


def test_disk_usage_lists_the_images_with_their_shared_and_unique_bytes(
    client: ImageClient, busybox_image: BuiltImage
) -> None:
    usage = client.disk_usage()
    [busybox] = [image for image in usage.images if image.id == busybox_image.id]
    assert busybox_image.tag in busybox.repo_tags
    assert busybox.size_bytes > 0
    assert usage.image_count == len(usage.images)
    assert usage.total_size_bytes > 0
