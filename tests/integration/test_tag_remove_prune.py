"""TagImage, RemoveImage and PruneImages against the sandboxed engine; the docker CLI
confirms what changed. Every image here is a throwaway built for the test: the session
busybox image is never tagged, removed or pruned (tests check it survives)."""

from __future__ import annotations

import json
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2

from devtools.engine_kinds import EngineKind
from devtools.sandbox import BuiltImage, Engine
from imagesvc.v1 import image_service_pb2 as pb
from tests.integration.local_images import (
    Stub,
    Throwaway,
    assert_serving,
    exists,
    expect_error,
    inspect,
    tags_of,
    unique_repo,
)

# The API contract: runs once per engine kind (tests/integration/conftest.py).
pytestmark = pytest.mark.contract


@pytest.fixture
def throwaway(engine: Engine, busybox_image: BuiltImage) -> Iterator[Throwaway]:
    """Images and containers of one test, all removed afterwards; the busybox image
    must have survived the test."""
    made = Throwaway(engine)
    try:
        yield made
    finally:
        made.cleanup()
    assert inspect(engine, busybox_image.tag)["Id"] == busybox_image.id


def _parents(engine: Engine, image_id: str) -> list[str]:
    """The image's parent chain, nearest first."""
    chain = []
    parent = inspect(engine, image_id)["Parent"]
    while parent:
        chain.append(parent)
        parent = inspect(engine, parent)["Parent"]
    return chain


def _size(engine: Engine, image_id: str) -> int:
    size: int = inspect(engine, image_id)["Size"]
    return size


def _unique_bytes(engine: Engine, image_id: str, shared_with: str) -> int:
    """Bytes of the layers of ``image_id`` above its nearest ancestor shared with
    ``shared_with`` (or with that image itself)."""
    others = {shared_with, *_parents(engine, shared_with)}
    ancestor = next(p for p in _parents(engine, image_id) if p in others)
    return _size(engine, image_id) - _size(engine, ancestor)


def _blobs(engine: Engine, image_id: str) -> dict[str, int]:
    """Containerd store: the image's content blobs, digest -> size, as ``docker save``
    lays them out (OCI): its manifest first (its digest is the image id), then its config,
    then its layers."""
    with tempfile.TemporaryDirectory(prefix="isv-save-") as folder:
        archive = Path(folder, "image.tar")
        engine.docker("save", "--output", str(archive), image_id)
        with tarfile.open(archive) as saved:

            def document(name: str) -> dict[str, Any]:
                member = saved.extractfile(name)
                assert member is not None, name
                loaded: dict[str, Any] = json.load(member)
                return loaded

            [descriptor] = document("index.json")["manifests"]
            manifest = document("blobs/sha256/" + descriptor["digest"].removeprefix("sha256:"))
    return {
        descriptor["digest"]: descriptor["size"],
        **{d["digest"]: d["size"] for d in [manifest["config"], *manifest["layers"]]},
    }


def _content_blob(engine: Engine, digest: str) -> Path:
    """Containerd store: where the Engine's containerd keeps this content blob."""
    content = engine.data_root / "containerd" / "daemon" / "io.containerd.content.v1.content"
    return content / "blobs" / "sha256" / digest.removeprefix("sha256:")


def _assert_gone(engine: Engine, engine_kind: EngineKind, deleted: Iterable[str]) -> None:
    """Every id a prune says it deleted is gone: no image has it, and on the containerd
    store (where the ids are content digests) neither has the content store."""
    for digest in deleted:
        assert not exists(engine, digest), digest
        if engine_kind.containerd_store:
            assert not _content_blob(engine, digest).exists(), digest


def _remove_intermediates(engine: Engine, parents: Iterable[str]) -> None:
    """Containerd store: a scoped prune keeps the unlabelled step images of the builds;
    they go here, children first."""
    for parent in parents:
        engine.docker("image", "rm", parent, check=False)


# --------------------------------------------------------------------------- TagImage


def test_tag_adds_a_tag_the_cli_sees(
    stub: Stub, engine: Engine, throwaway: Throwaway, busybox_image: BuiltImage
) -> None:
    source = throwaway.build(unique_repo("tag-src") + ":1")
    target = unique_repo("tag-dst") + ":v2"
    reply = stub.TagImage(pb.TagImageRequest(source=source.tag, target=target), timeout=20)
    assert reply.id == source.id
    assert reply.target == target
    assert tags_of(engine, source.id) == sorted([source.tag, target])
    assert inspect(engine, target)["Id"] == source.id

    # By id, to a name without a tag: ":latest".
    bare = unique_repo("tag-bare")
    reply = stub.TagImage(pb.TagImageRequest(source=source.id, target=bare), timeout=20)
    assert reply.id == source.id
    assert reply.target == f"{bare}:latest"
    assert inspect(engine, f"{bare}:latest")["Id"] == source.id
    assert tags_of(engine, source.id) == sorted([source.tag, target, f"{bare}:latest"])

    # By short id, into a registry-qualified name.
    qualified = f"127.0.0.1:5999/{unique_repo('tag-reg')}:1"
    short = source.id.removeprefix("sha256:")[:12]
    reply = stub.TagImage(pb.TagImageRequest(source=short, target=qualified), timeout=20)
    assert reply.id == source.id
    assert reply.target == qualified
    assert qualified in tags_of(engine, source.id)
    assert inspect(engine, busybox_image.id)["RepoTags"] == [busybox_image.tag]


def test_retagging_moves_an_existing_tag(stub: Stub, engine: Engine, throwaway: Throwaway) -> None:
    repo = unique_repo("tag-move")
    first = throwaway.build(f"{repo}:first", extra_lines=["ENV WHICH=first"])
    second = throwaway.build(f"{repo}:second", extra_lines=["ENV WHICH=second"])
    moving = f"{repo}:current"

    reply = stub.TagImage(pb.TagImageRequest(source=first.tag, target=moving), timeout=20)
    assert reply.id == first.id
    assert inspect(engine, moving)["Id"] == first.id

    reply = stub.TagImage(pb.TagImageRequest(source=second.id, target=moving), timeout=20)
    assert reply.id == second.id
    assert inspect(engine, moving)["Id"] == second.id
    assert tags_of(engine, first.id) == [first.tag]
    assert tags_of(engine, second.id) == sorted([second.tag, moving])


def test_tag_of_unknown_source_is_not_found(
    stub: Stub, engine: Engine, busybox_image: BuiltImage
) -> None:
    missing = unique_repo("tag-missing") + ":1"
    target = unique_repo("tag-never") + ":1"
    error = expect_error(
        stub.TagImage,
        pb.TagImageRequest(source=missing, target=target),
        grpc.StatusCode.NOT_FOUND,
        "IMAGE_NOT_FOUND",
    )
    assert missing in (error.details() or "")
    assert not exists(engine, target)
    assert_serving(stub, busybox_image)


@pytest.mark.parametrize(
    "target",
    [
        "UPPER/case",  # Engine 26 would take it, see local_images.MALFORMED
        "Upper",
        "a b",
        "x:",
        "x:-tag",
        "x:" + "t" * 129,
        "x@sha256:" + "a" * 64,  # a digest is not a tag
        "x:1@sha256:" + "a" * 64,
    ],
)
def test_tag_to_a_bad_target_is_invalid(
    stub: Stub, engine: Engine, throwaway: Throwaway, busybox_image: BuiltImage, target: str
) -> None:
    source = throwaway.build(unique_repo("tag-bad") + ":1")
    error = expect_error(
        stub.TagImage,
        pb.TagImageRequest(source=source.tag, target=target),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REFERENCE",
    )
    assert "reference" in (error.details() or "").lower()
    assert tags_of(engine, source.id) == [source.tag]
    assert_serving(stub, busybox_image)


def test_tag_needs_source_and_target(stub: Stub, busybox_image: BuiltImage) -> None:
    for request in (
        pb.TagImageRequest(target="imagesvc-test/never:1"),
        pb.TagImageRequest(source=busybox_image.tag),
    ):
        expect_error(stub.TagImage, request, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert_serving(stub, busybox_image)


# --------------------------------------------------------------------------- RemoveImage


def test_remove_untags_then_deletes(stub: Stub, engine: Engine, throwaway: Throwaway) -> None:
    repo = unique_repo("rm")
    image = throwaway.build(f"{repo}:1", extra_lines=[f"ENV UNIQUE={throwaway.scope}"])
    parent = inspect(engine, image.id)["Parent"]
    extra = f"{repo}:2"
    engine.docker("tag", image.tag, extra)

    # Another tag is left: only the tag goes.
    reply = stub.RemoveImage(pb.RemoveImageRequest(image=extra), timeout=20)
    assert list(reply.untagged) == [extra]
    assert list(reply.deleted) == []
    assert tags_of(engine, image.id) == [image.tag]

    # The last tag: the image and its own untagged parent go too.
    reply = stub.RemoveImage(pb.RemoveImageRequest(image=image.tag), timeout=20)
    assert list(reply.untagged) == [image.tag]
    assert reply.deleted[0] == image.id
    assert parent in reply.deleted
    assert not exists(engine, image.id)
    assert not exists(engine, parent)


def test_remove_with_no_prune_keeps_the_parent(
    stub: Stub, engine: Engine, throwaway: Throwaway
) -> None:
    image = throwaway.build(
        unique_repo("rm-noprune") + ":1", extra_lines=[f"ENV UNIQUE={throwaway.scope}"]
    )
    parent = inspect(engine, image.id)["Parent"]
    try:
        reply = stub.RemoveImage(pb.RemoveImageRequest(image=image.tag, no_prune=True), timeout=20)
        assert list(reply.untagged) == [image.tag]
        assert list(reply.deleted) == [image.id]
        assert not exists(engine, image.id)
        assert exists(engine, parent)
        assert inspect(engine, parent)["RepoTags"] == []
    finally:
        # The parent carries no scope label (the --label step was the image itself).
        engine.docker("image", "rm", parent, check=False)


def test_remove_unknown_image_is_not_found(stub: Stub, busybox_image: BuiltImage) -> None:
    missing = unique_repo("rm-missing") + ":1"
    error = expect_error(
        stub.RemoveImage,
        pb.RemoveImageRequest(image=missing),
        grpc.StatusCode.NOT_FOUND,
        "IMAGE_NOT_FOUND",
    )
    assert missing in (error.details() or "")
    assert_serving(stub, busybox_image)


def test_remove_image_used_by_a_container(
    stub: Stub,
    engine: Engine,
    engine_kind: EngineKind,
    throwaway: Throwaway,
    busybox_image: BuiltImage,
) -> None:
    image = throwaway.build(unique_repo("rm-used") + ":1")
    container = throwaway.create_container(image.tag)

    for request in (
        pb.RemoveImageRequest(image=image.tag),
        pb.RemoveImageRequest(image=image.id),
    ):
        error = expect_error(
            stub.RemoveImage, request, grpc.StatusCode.FAILED_PRECONDITION, "IMAGE_IN_USE"
        )
        assert container[:12] in (error.details() or ""), error.details()
        assert tags_of(engine, image.id) == [image.tag]
    assert_serving(stub, busybox_image)

    reply = stub.RemoveImage(pb.RemoveImageRequest(image=image.tag, force=True), timeout=20)
    assert list(reply.untagged) == [image.tag]
    if engine_kind.containerd_store:
        # The containerd store keeps the image, untagged, for its container: the reply
        # says it deleted nothing, and that is the truth.
        assert list(reply.deleted) == []
        assert inspect(engine, image.id)["RepoTags"] == []
    else:
        assert image.id in reply.deleted
        assert not exists(engine, image.id)
    throwaway.remove_container(container)


def test_force_removes_every_tag_of_an_id(
    stub: Stub, engine: Engine, throwaway: Throwaway, busybox_image: BuiltImage
) -> None:
    image = throwaway.build(unique_repo("rm-id") + ":1")
    other = unique_repo("rm-id-other") + ":1"
    engine.docker("tag", image.tag, other)

    # Tags in two repositories: removing the id needs force.
    error = expect_error(
        stub.RemoveImage,
        pb.RemoveImageRequest(image=image.id),
        grpc.StatusCode.FAILED_PRECONDITION,
        "IMAGE_IN_USE",
    )
    assert "force" in (error.details() or "")
    assert tags_of(engine, image.id) == sorted([image.tag, other])

    reply = stub.RemoveImage(pb.RemoveImageRequest(image=image.id, force=True), timeout=20)
    assert sorted(reply.untagged) == sorted([image.tag, other])
    assert image.id in reply.deleted
    assert not exists(engine, image.id)
    assert_serving(stub, busybox_image)


# --------------------------------------------------------------------------- PruneImages


# On the classic store a prune deletes an image and, like RemoveImage, the untagged step
# images below it that no other image needs; the space reclaimed is their layers'. On the
# containerd store (Engine 26.1, daemon/containerd/image_prune.go) it deletes only the
# images its filters select: an image's manifest and config, and of its layers only those
# no other image holds. The classic builder's step images carry no --label there, so a
# label-scoped prune keeps them and with them the layers; the space reclaimed is the size
# of the content blobs it deleted, as the Engine's own prune reports it.


def test_prune_dangling_removes_the_replaced_image(
    stub: Stub,
    engine: Engine,
    engine_kind: EngineKind,
    throwaway: Throwaway,
    busybox_image: BuiltImage,
) -> None:
    tag = unique_repo("prune-dangling") + ":1"
    # 64 KiB of random data make the first build's own layer; the second replaces the tag.
    old = throwaway.build(tag, extra_lines=["RUN head -c 65536 /dev/urandom > /blob"])
    new = throwaway.build(tag, extra_lines=["RUN head -c 1024 /dev/urandom > /blob"])
    assert old.id != new.id
    assert inspect(engine, old.id)["RepoTags"] == []
    old_parents = _parents(engine, old.id)
    if engine_kind.containerd_store:
        blobs = _blobs(engine, old.id)
        manifest, config = list(blobs)[:2]
        assert manifest == old.id
        assert _content_blob(engine, config).exists()
        expected_deleted = [manifest, config]
        expected_bytes = blobs[manifest] + blobs[config]
    else:
        expected_bytes = _unique_bytes(engine, old.id, shared_with=new.id)
        assert expected_bytes >= 65536

    try:
        reply = stub.PruneImages(pb.PruneImagesRequest(labels=[throwaway.label]), timeout=30)

        assert old.id in reply.deleted
        assert new.id not in reply.deleted
        assert list(reply.untagged) == []
        assert reply.space_reclaimed_bytes == expected_bytes
        _assert_gone(engine, engine_kind, reply.deleted)
        if engine_kind.containerd_store:
            assert sorted(reply.deleted) == sorted(expected_deleted)
            # The RUN step's image, unlabelled, is not the prune's: it keeps the 64 KiB.
            assert exists(engine, old_parents[0])
            assert inspect(engine, old_parents[0])["RepoTags"] == []
        else:
            assert old_parents[0] in reply.deleted  # the RUN step's image was its alone
        assert inspect(engine, tag)["Id"] == new.id
        assert exists(engine, busybox_image.tag)

        # Nothing dangling is left in this scope: a second prune reclaims nothing.
        again = stub.PruneImages(pb.PruneImagesRequest(labels=[throwaway.label]), timeout=30)
        assert list(again.deleted) == []
        assert list(again.untagged) == []
        assert again.space_reclaimed_bytes == 0
    finally:
        if engine_kind.containerd_store:
            _remove_intermediates(engine, old_parents[:1])


def test_prune_all_with_label_filters(
    stub: Stub,
    engine: Engine,
    engine_kind: EngineKind,
    throwaway: Throwaway,
    busybox_image: BuiltImage,
) -> None:
    repo = unique_repo("prune-all")
    group = {"org.imagesvc-test.group": "prune"}
    doomed = [
        throwaway.build(
            f"{repo}:doomed-{n}",
            extra_lines=[f"RUN head -c {4096 * n} /dev/urandom > /blob"],
            labels=group,
        )
        for n in (1, 2)
    ]
    kept = throwaway.build(
        f"{repo}:kept",
        extra_lines=["RUN head -c 2048 /dev/urandom > /blob"],
        labels={**group, "org.imagesvc-test.keep": "yes"},
    )
    in_use = throwaway.build(
        f"{repo}:in-use", extra_lines=["RUN head -c 512 /dev/urandom > /b"], labels=group
    )
    container = throwaway.create_container(in_use.tag)
    outsider = throwaway.build(
        unique_repo("prune-outsider") + ":1", labels={"org.imagesvc-test.group": "other"}
    )
    # The RUN step's image below each doomed one (its random layer's).
    doomed_steps = [_parents(engine, image.id)[0] for image in doomed]
    if engine_kind.containerd_store:
        expected_deleted, expected_bytes = [], 0
        for image in doomed:
            blobs = _blobs(engine, image.id)
            manifest, config = list(blobs)[:2]
            assert manifest == image.id
            expected_deleted += [manifest, config]
            expected_bytes += blobs[manifest] + blobs[config]
    else:
        expected_bytes = sum(
            _unique_bytes(engine, i.id, shared_with=busybox_image.id) for i in doomed
        )
    labels = [throwaway.label, "org.imagesvc-test.group=prune"]

    try:
        # Only images created before an hour ago: none of these.
        hour_ago = timestamp_pb2.Timestamp()
        hour_ago.FromDatetime(datetime.now(UTC) - timedelta(hours=1))
        none = stub.PruneImages(
            pb.PruneImagesRequest(all=True, labels=labels, until=hour_ago), timeout=30
        )
        assert list(none.deleted) == []
        assert list(none.untagged) == []
        assert none.space_reclaimed_bytes == 0

        # Every label must match, and no image has both of these: nothing.
        nothing = stub.PruneImages(
            pb.PruneImagesRequest(all=True, labels=[throwaway.label, "org.imagesvc-test.group=x"]),
            timeout=30,
        )
        assert list(nothing.deleted) == []
        assert nothing.space_reclaimed_bytes == 0
        for image in (*doomed, kept, in_use, outsider):
            assert exists(engine, image.id)

        reply = stub.PruneImages(
            pb.PruneImagesRequest(
                all=True, labels=labels, exclude_labels=["org.imagesvc-test.keep"]
            ),
            timeout=30,
        )
        for image in doomed:
            assert image.id in reply.deleted
        assert sorted(reply.untagged) == sorted(i.tag for i in doomed)
        assert reply.space_reclaimed_bytes == expected_bytes
        _assert_gone(engine, engine_kind, reply.deleted)
        if engine_kind.containerd_store:
            assert sorted(reply.deleted) == sorted(expected_deleted)
            for step in doomed_steps:  # unlabelled: not the prune's
                assert exists(engine, step)
        else:
            for step in doomed_steps:
                assert step in reply.deleted
        # Excluded by label, used by a container, not in the group, not in the scope.
        for survivor in (kept, in_use, outsider, busybox_image):
            assert survivor.id not in reply.deleted
            assert tags_of(engine, survivor.id) == [survivor.tag]
        throwaway.remove_container(container)
    finally:
        if engine_kind.containerd_store:
            _remove_intermediates(engine, doomed_steps)


def test_prune_exclude_label_with_value(
    stub: Stub, engine: Engine, throwaway: Throwaway, busybox_image: BuiltImage
) -> None:
    repo = unique_repo("prune-exclude")
    keep = throwaway.build(f"{repo}:keep", labels={"org.imagesvc-test.tier": "keep"})
    drop = throwaway.build(f"{repo}:drop", labels={"org.imagesvc-test.tier": "drop"})
    reply = stub.PruneImages(
        pb.PruneImagesRequest(
            all=True, labels=[throwaway.label], exclude_labels=["org.imagesvc-test.tier=keep"]
        ),
        timeout=30,
    )
    assert list(reply.untagged) == [drop.tag]
    assert drop.id in reply.deleted
    assert keep.id not in reply.deleted
    assert not exists(engine, drop.id)
    assert tags_of(engine, keep.id) == [keep.tag]
    assert tags_of(engine, busybox_image.id) == [busybox_image.tag]


def test_prune_needs_nothing_and_keeps_the_session_image(
    stub: Stub, engine: Engine, busybox_image: BuiltImage
) -> None:
    """A label filter no image matches: nothing goes, in either mode."""
    absent = f"org.imagesvc-test.absent={unique_repo('label')}"
    for prune_all in (False, True):
        reply = stub.PruneImages(pb.PruneImagesRequest(all=prune_all, labels=[absent]), timeout=30)
        assert list(reply.deleted) == []
        assert list(reply.untagged) == []
        assert reply.space_reclaimed_bytes == 0
    assert tags_of(engine, busybox_image.id) == [busybox_image.tag]
