"""Kept images (kube-fledged's ImageCache idea, per node): references listed in a file
that this node keeps present. Each node reconciles itself; there is no coordinator.

- Every listed reference is pulled at start, and again whenever it disappears: the live
  image index's changes wake the reference's keeper (`publish`, a ChangeSink), which
  looks the reference up and pulls it when it is gone.
- Every `check_interval_seconds` a tag is resolved at its registry; when the registry
  serves another digest than the local image's, it is pulled again. An Engine that
  cannot resolve (Podman) gets the pull itself, which compares.
- A failure is kept as the reference's state (reason and message, never a secret) and
  retried with exponential backoff, never in a hot loop.
- The file is re-read when it changes (a ConfigMap shared by every node): keepers start
  for new references and stop for removed ones (their images stay).

The pulls go through the normal pull path (`ImageCore.pull_image`: allowlist, limits,
metrics) as the server's own identity (`KEEPER_IDENTITY`), audited like a caller's pull.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol

from imagesvc.core.audit import AuditEvent
from imagesvc.core.errors import (
    FailedPreconditionError,
    ImageServiceError,
    InternalError,
    NotFoundError,
    Reason,
)
from imagesvc.core.identity import CallOrigin, Identity, current_identity, current_origin
from imagesvc.core.image_core import ImageCore
from imagesvc.core.image_entries import IndexEntry
from imagesvc.core.models import Image, PruneOptions, PullResult
from imagesvc.core.redaction import without_userinfo
from imagesvc.core.references import Reference, familiar, parse_reference
from imagesvc.core.registry_images import digests_in_repository
from imagesvc.core.reloading import FileProblem

log = logging.getLogger(__name__)

# Who kept-image pulls are audited as: the server itself, no caller.
KEEPER_IDENTITY = Identity("imagesvc-kept-images", frozenset(), "server")


class KeptState(StrEnum):
    PRESENT = "present"
    PULLING = "pulling"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class KeptImage:
    """One kept reference's state. `reason` and `message` say why the last attempt
    failed (also while PRESENT: an older image is there, its refresh failed)."""

    reference: str
    state: KeptState = KeptState.PULLING
    image_id: str = ""
    reason: str = ""
    message: str = ""


def parse_keep_list(data: bytes) -> tuple[str, ...]:
    """The keep file: one reference per line; `#` starts a comment (no reference holds
    one); blank lines are ignored; a reference listed twice is kept once."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise FileProblem("it is not UTF-8 text") from None
    references: list[str] = []
    for line in text.splitlines():
        reference = line.partition("#")[0].strip()
        if reference and reference not in references:
            references.append(reference)
    return tuple(references)


class KeeperPort(Protocol):
    """What keeping images needs of the node (ImageCore's operations, see `CoreKeeperPort`)."""

    async def local_image(self, reference: str) -> Image | None:
        """The local image the reference names, None when there is none."""
        ...

    async def pull(self, reference: str) -> str:
        """Pulls the reference; its image id."""
        ...

    async def registry_digest(self, reference: str) -> str:
        """The digest the reference's registry serves for it now."""
        ...


class KeptImagesObserver(Protocol):
    """Told of every change of a kept image's state (metrics, health)."""

    def kept_images_changed(self, images: Sequence[KeptImage]) -> None: ...


class _NoObserver:
    def kept_images_changed(self, images: Sequence[KeptImage]) -> None:
        pass


@dataclass(frozen=True, slots=True)
class KeepSettings:
    check_interval_seconds: float = 300.0
    retry_min_seconds: float = 1.0
    retry_max_seconds: float = 120.0
    # How often the keep file is looked at (one stat() when it did not change).
    file_poll_seconds: float = 1.0
    # Kept images pulled at once: a long list must not fill the server's pull queue
    # (--max-queued-calls) and crowd out callers' pulls.
    pulls_at_once: int = 2


def retry_delay(failures: int, settings: KeepSettings) -> float:
    """Exponential backoff from retry_min_seconds, capped, with +-20 % jitter so that the
    nodes sharing a registry do not retry in step."""
    delay = min(settings.retry_min_seconds * 2 ** max(failures - 1, 0), settings.retry_max_seconds)
    return float(delay * random.uniform(0.8, 1.2))  # noqa: S311 (jitter, not a secret)


def _event_names(reference: Reference) -> set[str]:
    """The names an index entry shows for this reference (familiar, as the index has them)."""
    names = {familiar(reference.normalized())}
    if reference.digest:
        names.add(familiar(f"{reference.full_name}@{reference.digest}"))
    return names


class _Keeper:
    """One kept reference: its state, and the task that keeps it."""

    def __init__(self, text: str) -> None:
        self.text = text
        # A line written `user:password@registry/app` (not a reference) shows no password.
        self.status = KeptImage(without_userinfo(text))
        self.wake = asyncio.Event()
        self.failures = 0
        self.next_check = 0.0
        self.names: set[str] = set()
        self.task: asyncio.Task[None] | None = None


class KeptImages:
    """Keeps the references of `references()` present (see the module's docstring).
    `run()` until cancelled; `publish` is the live index's ChangeSink."""

    def __init__(
        self,
        references: Callable[[], Sequence[str]],
        port: KeeperPort,
        *,
        settings: KeepSettings | None = None,
        observer: KeptImagesObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._references = references
        self._port = port
        self._settings = settings or KeepSettings()
        self._observer: KeptImagesObserver = observer or _NoObserver()
        self._clock = clock
        self._keepers: dict[str, _Keeper] = {}
        self._followed = False  # the list was read once
        self._pull_slots = asyncio.Semaphore(max(self._settings.pulls_at_once, 1))

    # Reads ---------------------------------------------------------------------------

    def images(self) -> tuple[KeptImage, ...]:
        """Every kept reference's state, in the file's order."""
        return tuple(keeper.status for keeper in self._keepers.values())

    def all_present(self) -> bool:
        """Every kept image is present (False until the list was first read)."""
        return self._followed and all(
            keeper.status.state is KeptState.PRESENT for keeper in self._keepers.values()
        )

    # Lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Follows the keep file; each reference's keeper runs in a task of its own."""
        try:
            while True:
                self._follow(self._references())
                await asyncio.sleep(self._settings.file_poll_seconds)
        finally:
            for keeper in self._keepers.values():
                if keeper.task is not None:
                    keeper.task.cancel()
            await asyncio.gather(
                *(k.task for k in self._keepers.values() if k.task is not None),
                return_exceptions=True,
            )

    def _follow(self, references: Sequence[str]) -> None:
        if self._followed and list(references) == list(self._keepers):
            return
        self._followed = True
        wanted = set(references)
        for text, keeper in list(self._keepers.items()):
            if text not in wanted:
                log.info("no longer keeping an image", extra={"reference": text})
                if keeper.task is not None:
                    keeper.task.cancel()
        keepers: dict[str, _Keeper] = {}
        for text in references:
            known = self._keepers.get(text)
            if known is None:
                known = _Keeper(text)
                known.task = asyncio.create_task(self._keep(known), name=f"keep {text}")
            keepers[text] = known
        self._keepers = keepers
        self._changed()

    # The live index's ChangeSink ---------------------------------------------------------

    def publish(self, previous: IndexEntry | None, current: IndexEntry | None) -> None:
        """An image lost names (untagged, removed): wake the keepers of those names."""
        if previous is None:
            return
        before = {*previous.image.repo_tags, *previous.image.repo_digests}
        after = {*current.image.repo_tags, *current.image.repo_digests} if current else set()
        lost = before - after
        if not lost:
            return
        for keeper in self._keepers.values():
            if keeper.names & lost:
                keeper.wake.set()

    # One reference -----------------------------------------------------------------------

    async def _keep(self, keeper: _Keeper) -> None:
        # This task's context: its pulls are the server's own, never a caller's.
        current_identity.set(KEEPER_IDENTITY)
        try:
            reference = parse_reference(keeper.text).with_default_tag()
        except ImageServiceError as error:
            # Nothing to retry: the file must change. The other references go on.
            self._set(keeper, KeptState.FAILED, error=error)
            log.error(
                "a kept image's reference is not valid",
                extra={
                    "reference": keeper.status.reference,
                    "problem": without_userinfo(error.message),
                },
            )
            return
        keeper.names = _event_names(reference)
        while True:
            keeper.wake.clear()
            delay = await self._reconcile(keeper, reference)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await keeper.wake.wait()

    async def _reconcile(self, keeper: _Keeper, reference: Reference) -> float:
        """Brings the reference's image back or up to date; the time until the next look."""
        try:
            return await self._reconcile_once(keeper, reference)
        except Exception:
            # A bug of ours must not end the keeper: logged with its traceback, retried.
            log.exception("keeping an image failed", extra={"reference": keeper.status.reference})
            keeper.failures += 1
            self._set(keeper, KeptState.FAILED, error=InternalError("internal error"))
            return retry_delay(keeper.failures, self._settings)

    async def _reconcile_once(self, keeper: _Keeper, reference: Reference) -> float:
        interval = self._settings.check_interval_seconds
        # A digest never moves: only a tag alone is checked at its registry.
        checked = bool(reference.tag and not reference.digest)
        image: Image | None = None
        try:
            image = await self._port.local_image(str(reference))
            if image is None:
                await self._pull(keeper, reference, "the image is not on this node")
            elif checked and self._clock() >= keeper.next_check:
                keeper.next_check = self._clock() + interval
                if await self._moved(reference, image):
                    # The older image stays meanwhile: still PRESENT (health stays warm).
                    await self._pull(keeper, reference, "the tag moved at its registry", image)
                else:
                    self._set(keeper, KeptState.PRESENT, image_id=image.id)
            else:
                self._set(keeper, KeptState.PRESENT, image_id=image.id)
        except ImageServiceError as error:
            keeper.failures += 1
            delay = retry_delay(keeper.failures, self._settings)
            log.warning(
                "keeping an image failed; retrying",
                extra={
                    "reference": keeper.status.reference,
                    "reason": str(error.reason),
                    "problem": without_userinfo(error.message),
                    "attempt": keeper.failures,
                    "retry_in_seconds": round(delay, 2),
                },
            )
            if image is not None:  # an older image is there: present, its refresh failed
                keeper.next_check = 0.0  # the registry is asked again at the retry
                self._set(keeper, KeptState.PRESENT, image_id=image.id, error=error)
            else:
                self._set(keeper, KeptState.FAILED, error=error)
            return delay
        keeper.failures = 0
        return max(keeper.next_check - self._clock(), 0.0) if checked else interval

    async def _moved(self, reference: Reference, image: Image) -> bool:
        """Whether the registry serves another image for the tag now. An Engine that
        cannot ask (Podman: FAILED_PRECONDITION) pulls, and the pull compares."""
        try:
            served = await self._port.registry_digest(str(reference))
        except FailedPreconditionError:
            return True
        return served not in digests_in_repository(reference, image.repo_digests)

    async def _pull(
        self, keeper: _Keeper, reference: Reference, why: str, present: Image | None = None
    ) -> None:
        log.info("pulling a kept image", extra={"reference": keeper.status.reference, "why": why})
        if present is None:
            self._set(keeper, KeptState.PULLING)
        async with self._pull_slots:
            image_id = await _audited_pull(reference, self._port.pull)
        keeper.next_check = self._clock() + self._settings.check_interval_seconds
        self._set(keeper, KeptState.PRESENT, image_id=image_id)

    def _set(
        self,
        keeper: _Keeper,
        state: KeptState,
        *,
        image_id: str = "",
        error: ImageServiceError | None = None,
    ) -> None:
        status = replace(
            keeper.status,
            state=state,
            image_id=image_id,
            reason=str(error.reason) if error else "",
            message=without_userinfo(error.message) if error else "",
        )
        if status != keeper.status:
            keeper.status = status
            self._changed()

    def _changed(self) -> None:
        self._observer.kept_images_changed(self.images())

    # PruneImages' guard ------------------------------------------------------------------

    async def check_prune(self, options: PruneOptions) -> None:
        """Refuses a prune that could remove a kept image: the Engine's prune cannot be
        told to spare some images, so a prune runs only when no kept image on this node
        is among its candidates (dangling ones for a plain prune, any for `all`, each
        narrowed by the prune's label and `until` filters)."""
        at_risk: list[str] = []
        for keeper in list(self._keepers.values()):
            try:
                image = await self._port.local_image(keeper.text)
            except ImageServiceError:
                image = None
            if image is not None and prunable(image, options):
                at_risk.append(keeper.text)
        if at_risk:
            raise FailedPreconditionError(
                f"this prune could remove {len(at_risk)} kept image(s) ({', '.join(at_risk[:5])})"
                " listed in --keep-images-file; narrow it with labels or `until` so that no"
                " kept image matches, or remove images by name",
                reason=Reason.IMAGE_KEPT,
            )


def prunable(image: Image, options: PruneOptions) -> bool:
    """Whether the Engine's prune with these options may pick the image (in use or not:
    a kept image is never risked)."""
    if not options.all and image.repo_tags:
        return False
    for wanted in options.labels:
        key, equals, value = wanted.partition("=")
        if key not in image.labels or (equals and image.labels[key] != value):
            return False
    if options.exclude_labels and all(
        key in image.labels and (not equals or image.labels[key] == value)
        for key, equals, value in (label.partition("=") for label in options.exclude_labels)
    ):
        return False
    return not (
        options.until is not None and image.created is not None and image.created >= options.until
    )


async def _audited_pull(reference: Reference, pull: Callable[[str], Awaitable[str]]) -> str:
    """One pull, audited as the server's own (who: KEEPER_IDENTITY)."""
    origin = CallOrigin("kept-images", uuid.uuid4().hex, "")
    current_origin.set(origin)
    event = AuditEvent("PullImage", KEEPER_IDENTITY, origin, {"reference": str(reference)})
    started = time.monotonic()
    outcome, reason = "failed", str(Reason.INTERNAL)
    try:
        image_id = await pull(str(reference))
        event.result["image_id"] = image_id
        outcome, reason = "ok", ""
        return image_id
    except ImageServiceError as error:
        reason = str(error.reason)
        raise
    except asyncio.CancelledError:  # the server stops, or the reference left the file
        outcome, reason = "cancelled", ""
        raise
    finally:
        event.write(outcome, reason=reason, duration_ms=(time.monotonic() - started) * 1000)


class CoreKeeperPort:
    """KeeperPort on ImageCore's operations (its allowlist, limits and pull flights)."""

    def __init__(self, core: ImageCore) -> None:
        self._core = core

    async def local_image(self, reference: str) -> Image | None:
        try:
            return await self._core.get_image(reference)
        except NotFoundError:
            return None

    async def pull(self, reference: str) -> str:
        image_id = ""
        items = self._core.pull_image(reference, platform="", auth=None)
        async with contextlib.aclosing(items) as pulling:
            async for item in pulling:
                if isinstance(item, PullResult):
                    image_id = item.image_id
        return image_id

    async def registry_digest(self, reference: str) -> str:
        return (await self._core.inspect_registry_image(reference, auth=None)).digest
