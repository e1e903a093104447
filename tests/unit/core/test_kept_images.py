"""Kept images: the keep file's format, and the keeper against an in-memory node."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from imagesvc.core.errors import (
    FailedPreconditionError,
    ImageServiceError,
    NotFoundError,
    Reason,
    UnavailableError,
)
from imagesvc.core.image_entries import IndexEntry
from imagesvc.core.kept_images import (
    KeepSettings,
    KeptImage,
    KeptImages,
    KeptState,
    parse_keep_list,
    prunable,
    retry_delay,
)
from imagesvc.core.models import Image, PruneOptions
from imagesvc.core.reloading import FileProblem

FAST = KeepSettings(
    check_interval_seconds=3600,
    retry_min_seconds=0.01,
    retry_max_seconds=0.04,
    file_poll_seconds=0.01,
)


class FakeNode:
    """Images by reference; pulls take them from `registry` (reference -> digest)."""

    def __init__(self) -> None:
        self.local: dict[str, Image] = {}
        self.registry: dict[str, str] = {}
        self.pulls: list[str] = []
        self.pull_failure: ImageServiceError | None = None
        self.resolve_failure: ImageServiceError | None = None

    async def local_image(self, reference: str) -> Image | None:
        return self.local.get(reference)

    async def pull(self, reference: str) -> str:
        self.pulls.append(reference)
        if self.pull_failure is not None:
            raise self.pull_failure
        if reference not in self.registry:
            raise NotFoundError(f"manifest for {reference} not found")
        digest = self.registry[reference]
        name = reference.rpartition(":")[0]
        image = Image(
            id=f"sha256:{digest[-8:]:0>64}",
            repo_tags=(reference,),
            repo_digests=(f"{name}@{digest}",),
        )
        self.local[reference] = image
        return image.id

    async def registry_digest(self, reference: str) -> str:
        if self.resolve_failure is not None:
            raise self.resolve_failure
        return self.registry[reference]


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[KeptImage, ...]] = []

    def kept_images_changed(self, images: Sequence[KeptImage]) -> None:
        self.seen.append(tuple(images))


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(2.0):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


def _run(
    node: FakeNode,
    references: Callable[[], Sequence[str]],
    body: Callable[[KeptImages], Awaitable[None]],
    settings: KeepSettings = FAST,
    observer: Recorder | None = None,
) -> None:
    async def main() -> None:
        kept = KeptImages(references, node, settings=settings, observer=observer)
        task = asyncio.create_task(kept.run())
        try:
            await body(kept)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())


def _state(kept: KeptImages, reference: str) -> KeptImage:
    """The reference's state (PULLING before the list was read)."""
    return next(
        (image for image in kept.images() if image.reference == reference), KeptImage(reference)
    )


def test_the_keep_file_has_one_reference_per_line_with_comments_and_blank_lines() -> None:
    text = (
        b"# kept on every node\n\n127.0.0.1:5000/app:1   # the app\n"
        b"  busybox\n127.0.0.1:5000/app:1\n"
    )
    assert parse_keep_list(text) == ("127.0.0.1:5000/app:1", "busybox")
    assert parse_keep_list(b"") == ()
    with pytest.raises(FileProblem):
        parse_keep_list(b"\xff\xfe")


def test_every_listed_reference_is_pulled_at_start_and_reported_present() -> None:
    node = FakeNode()
    node.registry = {"reg/a:1": "sha256:" + "a" * 64, "reg/b:1": "sha256:" + "b" * 64}
    recorder = Recorder()

    async def body(kept: KeptImages) -> None:
        await _until(kept.all_present)
        assert [image.state for image in kept.images()] == [KeptState.PRESENT] * 2
        assert _state(kept, "reg/a:1").image_id == node.local["reg/a:1"].id

    _run(node, lambda: ["reg/a:1", "reg/b:1"], body, observer=recorder)
    assert sorted(node.pulls) == ["reg/a:1", "reg/b:1"]
    assert any(KeptState.PULLING in {i.state for i in images} for images in recorder.seen)
    assert all(i.state is KeptState.PRESENT for i in recorder.seen[-1])


def test_an_image_already_present_is_not_pulled() -> None:
    node = FakeNode()
    node.registry = {"reg/a:1": "sha256:" + "a" * 64}
    node.local["reg/a:1"] = Image(
        id="sha256:" + "1" * 64, repo_tags=("reg/a:1",), repo_digests=("reg/a@sha256:" + "a" * 64,)
    )

    async def body(kept: KeptImages) -> None:
        await _until(kept.all_present)

    _run(node, lambda: ["reg/a:1"], body)
    assert node.pulls == []


def test_a_removed_image_is_pulled_again_when_the_index_says_it_lost_the_name() -> None:
    node = FakeNode()
    node.registry = {"reg/a:1": "sha256:" + "a" * 64}

    async def body(kept: KeptImages) -> None:
        await _until(kept.all_present)
        removed = node.local.pop("reg/a:1")
        kept.publish(IndexEntry({}, removed), None)
        await _until(lambda: len(node.pulls) == 2 and kept.all_present())

    _run(node, lambda: ["reg/a:1"], body)


def test_a_change_that_keeps_the_name_wakes_nothing() -> None:
    node = FakeNode()
    node.registry = {"reg/a:1": "sha256:" + "a" * 64}

    async def body(kept: KeptImages) -> None:
        await _until(kept.all_present)
        image = node.local["reg/a:1"]
        other = Image(id="sha256:" + "9" * 64, repo_tags=("reg/other:1",))
        kept.publish(IndexEntry({}, image), IndexEntry({}, image))
        kept.publish(IndexEntry({}, other), None)
        node.local.pop("reg/a:1")  # gone, but nobody said so: no pull until the next look
        await asyncio.sleep(0.1)

    _run(node, lambda: ["reg/a:1"], body)
    assert node.pulls == ["reg/a:1"]


def test_a_failing_reference_is_failed_with_its_reason_and_retried_with_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    node = FakeNode()
    node.registry = {"reg/a:1": "sha256:" + "a" * 64}

    async def body(kept: KeptImages) -> None:
        await _until(lambda: len(node.pulls) >= 4)
        missing = _state(kept, "reg/missing:1")
        assert missing.state is KeptState.FAILED
        assert missing.reason == str(Reason.IMAGE_NOT_FOUND)
        assert "not found" in missing.message
        assert _state(kept, "reg/a:1").state is KeptState.PRESENT
        assert not kept.all_present()
        node.registry["reg/missing:1"] = "sha256:" + "c" * 64  # pushed at last
        await _until(kept.all_present)

    with caplog.at_level(logging.WARNING, logger="imagesvc.core.kept_images"):
        _run(node, lambda: ["reg/a:1", "reg/missing:1"], body)
    retries = [r for r in caplog.records if r.getMessage() == "keeping an image failed; retrying"]
    assert retries
    assert all(r.__dict__["reason"] == "IMAGE_NOT_FOUND" for r in retries)
    assert [r.__dict__["attempt"] for r in retries][:3] == [1, 2, 3]


def test_a_bug_of_ours_fails_the_image_and_is_retried_not_the_end_of_its_keeper() -> None:
    node = FakeNode()
    node.registry = {"reg/a:1": "sha256:" + "a" * 64}
    broken = {"left": 2}
    pull = node.pull

    async def flaky_pull(reference: str) -> str:
        if broken["left"]:
            broken["left"] -= 1
            raise RuntimeError("a bug")
        return await pull(reference)

    node.pull = flaky_pull  # type: ignore[method-assign]

    async def body(kept: KeptImages) -> None:
        await _until(lambda: _state(kept, "reg/a:1").reason == "INTERNAL")
        assert _state(kept, "reg/a:1").state is KeptState.FAILED
        await _until(kept.all_present)

    _run(node, lambda: ["reg/a:1"], body)


def test_backoff_doubles_up_to_its_cap_with_jitter() -> None:
    settings = KeepSettings(retry_min_seconds=1, retry_max_seconds=30)
    for failures, base in ((1, 1), (2, 2), (3, 4), (5, 16), (6, 30), (40, 30)):
        assert base * 0.8 <= retry_delay(failures, settings) <= base * 1.2


def test_an_invalid_reference_fails_alone_and_is_not_retried() -> None:
    node = FakeNode()
    node.registry = {"reg/a:1": "sha256:" + "a" * 64}

    async def body(kept: KeptImages) -> None:
        await _until(lambda: _state(kept, "reg/a:1").state is KeptState.PRESENT)
        await _until(lambda: _state(kept, "Not A Reference").state is KeptState.FAILED)
        assert _state(kept, "Not A Reference").reason == str(Reason.INVALID_REFERENCE)
        await asyncio.sleep(0.05)

    _run(node, lambda: ["reg/a:1", "Not A Reference"], body)
    assert node.pulls == ["reg/a:1"]


def test_a_tag_that_moved_at_the_registry_is_pulled_again_on_the_interval() -> None:
    node = FakeNode()
    node.registry = {"reg/a:1": "sha256:" + "a" * 64}
    settings = KeepSettings(
        check_interval_seconds=0.05,
        retry_min_seconds=0.01,
        retry_max_seconds=0.02,
        file_poll_seconds=0.01,
    )

    async def body(kept: KeptImages) -> None:
        await _until(kept.all_present)
        first = _state(kept, "reg/a:1").image_id
        await asyncio.sleep(0.15)
        assert node.pulls == ["reg/a:1"]  # unchanged at the registry: no pull
        node.registry["reg/a:1"] = "sha256:" + "b" * 64
        await _until(lambda: _state(kept, "reg/a:1").image_id not in ("", first))
        assert node.pulls == ["reg/a:1", "reg/a:1"]

    _run(node, lambda: ["reg/a:1"], body, settings=settings)


def test_an_engine_that_cannot_resolve_pulls_instead_and_a_registry_down_keeps_the_image() -> None:
    node = FakeNode()
    node.registry = {"reg/a:1": "sha256:" + "a" * 64}
    settings = KeepSettings(
        check_interval_seconds=0.03,
        retry_min_seconds=0.01,
        retry_max_seconds=0.02,
        file_poll_seconds=0.01,
    )

    async def body(kept: KeptImages) -> None:
        await _until(kept.all_present)
        node.resolve_failure = FailedPreconditionError("Podman has no registry inspect")
        await _until(lambda: len(node.pulls) >= 2)
        node.resolve_failure = UnavailableError("registry down", reason=Reason.REGISTRY_UNAVAILABLE)
        await _until(lambda: _state(kept, "reg/a:1").reason == "REGISTRY_UNAVAILABLE")
        # The image is still there: present (the refresh failed), health stays serving;
        # the registry is asked again, with backoff, until it answers.
        assert _state(kept, "reg/a:1").state is KeptState.PRESENT
        assert kept.all_present()
        await asyncio.sleep(0.1)
        assert _state(kept, "reg/a:1").reason == "REGISTRY_UNAVAILABLE"
        node.resolve_failure = None
        await _until(lambda: _state(kept, "reg/a:1").reason == "")

    _run(node, lambda: ["reg/a:1"], body, settings=settings)


def test_the_list_is_followed_as_it_changes() -> None:
    node = FakeNode()
    node.registry = {"reg/a:1": "sha256:" + "a" * 64, "reg/b:1": "sha256:" + "b" * 64}
    listed = ["reg/a:1"]

    async def body(kept: KeptImages) -> None:
        await _until(kept.all_present)
        listed.append("reg/b:1")
        await _until(lambda: len(kept.images()) == 2 and kept.all_present())
        listed.remove("reg/a:1")
        await _until(lambda: [i.reference for i in kept.images()] == ["reg/b:1"])

    _run(node, lambda: list(listed), body)
    assert node.pulls == ["reg/a:1", "reg/b:1"]


def test_an_empty_list_is_all_present_once_read() -> None:
    kept = KeptImages(lambda: [], FakeNode(), settings=FAST)
    assert not kept.all_present()

    async def body(kept: KeptImages) -> None:
        await _until(kept.all_present)

    _run(FakeNode(), lambda: [], body)


def test_a_prune_that_could_remove_a_kept_image_is_refused() -> None:
    node = FakeNode()
    node.registry = {"reg/a:1": "sha256:" + "a" * 64}

    async def body(kept: KeptImages) -> None:
        await _until(kept.all_present)
        await kept.check_prune(PruneOptions(all=False))  # kept images are tagged
        with pytest.raises(FailedPreconditionError) as refused:
            await kept.check_prune(PruneOptions(all=True))
        assert refused.value.reason is Reason.IMAGE_KEPT
        assert "reg/a:1" in refused.value.message
        await kept.check_prune(PruneOptions(all=True, labels=("team=web",)))

    _run(node, lambda: ["reg/a:1"], body)


def test_prunable_follows_the_engines_filters() -> None:
    created = datetime(2024, 1, 1, tzinfo=UTC)
    tagged = Image(id="sha256:1", repo_tags=("a:1",), labels={"team": "web"}, created=created)
    digest_only = Image(id="sha256:2", repo_digests=("a@sha256:x",), created=created)
    assert not prunable(tagged, PruneOptions())
    assert prunable(digest_only, PruneOptions())
    assert prunable(tagged, PruneOptions(all=True))
    assert prunable(tagged, PruneOptions(all=True, labels=("team",)))
    assert prunable(tagged, PruneOptions(all=True, labels=("team=web",)))
    assert not prunable(tagged, PruneOptions(all=True, labels=("team=db",)))
    assert not prunable(tagged, PruneOptions(all=True, exclude_labels=("team=web",)))
    assert prunable(tagged, PruneOptions(all=True, exclude_labels=("team=db",)))
    assert not prunable(tagged, PruneOptions(all=True, until=created))
    assert prunable(tagged, PruneOptions(all=True, until=datetime(2025, 1, 1, tzinfo=UTC)))


def test_each_pull_is_audited_as_the_servers_own(caplog: pytest.LogCaptureFixture) -> None:
    node = FakeNode()
    node.registry = {"reg/a:1": "sha256:" + "a" * 64}

    async def body(kept: KeptImages) -> None:
        await _until(lambda: _state(kept, "reg/missing:1").state is KeptState.FAILED)
        await _until(lambda: _state(kept, "reg/a:1").state is KeptState.PRESENT)

    with caplog.at_level(logging.INFO, logger="imagesvc.audit"):
        _run(node, lambda: ["reg/a:1", "reg/missing:1"], body)
    lines = {
        r.__dict__["subject"]["reference"]: r.__dict__
        for r in caplog.records
        if r.name == "imagesvc.audit"
    }
    assert lines["reg/a:1"]["rpc"] == "PullImage"
    assert (lines["reg/a:1"]["identity"], lines["reg/a:1"]["via"]) == (
        "imagesvc-kept-images",
        "server",
    )
    assert lines["reg/a:1"]["transport"] == "kept-images"
    assert lines["reg/a:1"]["outcome"] == "ok"
    assert lines["reg/a:1"]["result"]["image_id"] == node.local["reg/a:1"].id
    assert (lines["reg/missing:1"]["outcome"], lines["reg/missing:1"]["reason"]) == (
        "failed",
        "IMAGE_NOT_FOUND",
    )


def test_a_long_list_is_pulled_a_few_at_a_time() -> None:
    node = FakeNode()
    references = [f"reg/app{n}:1" for n in range(6)]
    node.registry = {reference: "sha256:" + f"{n}" * 64 for n, reference in enumerate(references)}
    running = {"now": 0, "most": 0}
    pull = node.pull

    async def slow_pull(reference: str) -> str:
        running["now"] += 1
        running["most"] = max(running["most"], running["now"])
        await asyncio.sleep(0.02)
        running["now"] -= 1
        return await pull(reference)

    node.pull = slow_pull  # type: ignore[method-assign]

    async def body(kept: KeptImages) -> None:
        await _until(kept.all_present)

    _run(node, lambda: references, body, settings=replace(FAST, pulls_at_once=2))
    assert running["most"] == 2
    assert sorted(node.pulls) == sorted(references)


def test_a_reference_with_tag_and_digest_is_never_checked_and_never_spins() -> None:
    node = FakeNode()
    digest = "sha256:" + "d" * 64
    reference = f"reg/a:1@{digest}"
    node.local[reference] = Image(id="sha256:" + "1" * 64, repo_digests=(f"reg/a@{digest}",))
    looks = {"count": 0}
    local_image = node.local_image

    async def counted(reference: str) -> Image | None:
        looks["count"] += 1
        return await local_image(reference)

    node.local_image = counted  # type: ignore[method-assign]

    async def body(kept: KeptImages) -> None:
        await _until(kept.all_present)
        await asyncio.sleep(0.1)

    _run(node, lambda: [reference], body)
    assert looks["count"] == 1  # looked up once, then asleep until the interval
    assert node.pulls == []


def test_a_refresh_of_a_moved_tag_keeps_the_node_warm() -> None:
    node = FakeNode()
    node.registry = {"reg/a:1": "sha256:" + "a" * 64}
    settings = replace(FAST, check_interval_seconds=0.05)
    recorder = Recorder()

    async def body(kept: KeptImages) -> None:
        await _until(kept.all_present)
        seen = len(recorder.seen)
        node.registry["reg/a:1"] = "sha256:" + "b" * 64
        await _until(lambda: len(node.pulls) == 2 and kept.all_present())
        await asyncio.sleep(0.05)
        refreshed = recorder.seen[seen:]
        assert refreshed
        assert all(i.state is KeptState.PRESENT for images in refreshed for i in images)

    _run(node, lambda: ["reg/a:1"], body, settings=settings, observer=recorder)


def test_a_line_with_a_password_never_shows_it(caplog: pytest.LogCaptureFixture) -> None:
    line = "user:hunter2-secret@reg.example/app:1"

    async def body(kept: KeptImages) -> None:
        await _until(lambda: bool(kept.images()) and kept.images()[0].state is KeptState.FAILED)
        [image] = kept.images()
        assert "hunter2-secret" not in f"{image.reference} {image.message}"

    with caplog.at_level(logging.DEBUG):
        _run(FakeNode(), lambda: [line], body)
    assert "hunter2-secret" not in caplog.text
    assert all("hunter2-secret" not in str(r.__dict__) for r in caplog.records)
