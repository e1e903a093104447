"""ImageCore: every image operation, transport-neutral and asynchronous.

Blocking Engine calls run in a bounded thread pool so one process can serve gRPC,
REST and metrics on one event loop. Streams (pull, push, build) are read one
message per pool hop, which gives natural back-pressure, and their Engine response
is closed whenever the consumer stops early (cancellation, deadline, error), which
makes the daemon stop the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import re
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    Sequence,
)
from concurrent.futures import Executor
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from imagesvc.core import documents
from imagesvc.core.build_context import CheckedContext, ContextLimits, receive_context
from imagesvc.core.build_log import BuildLog
from imagesvc.core.build_options import validate_build_options
from imagesvc.core.build_policy import BuildRestrictions
from imagesvc.core.disk_usage import disk_usage
from imagesvc.core.dockerfile_sources import dockerfile_sources
from imagesvc.core.errors import (
    DeadlineExceededError,
    EngineError,
    ImageServiceError,
    InvalidArgumentError,
    NotFoundError,
    Reason,
    UnavailableError,
)
from imagesvc.core.image_archive import (
    IMAGE_ARCHIVE,
    KEPT_FILES,
    LoadedNames,
    LoadProgress,
    archive_names,
    loaded_names,
)
from imagesvc.core.image_changes import ImageChangeLog, Snapshot, WatchEvent
from imagesvc.core.image_entries import IndexEntry
from imagesvc.core.image_filters import has_labels, matching_names, select_images
from imagesvc.core.image_index import ImageIndex
from imagesvc.core.limits import Limits
from imagesvc.core.listing_cache import Listing, ListingCache
from imagesvc.core.models import (
    AuthCheckResult,
    BuildOptions,
    BuildResult,
    DiskUsage,
    HistoryEntry,
    Image,
    ImageFilter,
    ImagePage,
    ImageUpdate,
    ImportedImage,
    ImportResult,
    PruneOptions,
    PruneResult,
    PullResult,
    PushResult,
    RegistryAuth,
    RegistryImage,
    RemoveResult,
    TagResult,
    TransferProgress,
)
from imagesvc.core.paging import page_window, query_fingerprint, sort_key
from imagesvc.core.port import DockerPort, EngineStream, JsonDocument
from imagesvc.core.progress import TransferTracker
from imagesvc.core.pull_flights import PullFlights
from imagesvc.core.redaction import redacting_errors
from imagesvc.core.references import (
    Reference,
    familiar,
    parse_reference,
    parse_tag_target,
    reference_pattern,
    validate_image_identifier,
    validate_platform,
)
from imagesvc.core.registry_images import compare as compare_digests
from imagesvc.core.registry_images import local_digests, registry_image
from imagesvc.core.registry_images import unknown as update_unknown
from imagesvc.core.registry_policy import RegistryPolicy, registry_of_server_address
from imagesvc.core.tar_check import (
    ArchivePipe,
    PipeClosedError,
    RewrittenArchive,
    UploadChunk,
    receive_archive,
)
from imagesvc.core.transfer_stall import StallWatch

T = TypeVar("T")

_PUSH_DIGEST_LINE = re.compile(
    r"(?P<tag>\S+): digest: (?P<digest>sha256:[0-9a-f]{64}) size: (?P<size>\d+)"
)
_PULL_DIGEST_LINE = re.compile(r"Digest: (?P<digest>sha256:[0-9a-f]{64})")
# The containerd image store names a dangling image it prunes by its id ("Untagged":
# "sha256:<id>"), though no reference was untagged; the classic store names none.
_DANGLING_IMAGE_NAME = re.compile(r"sha256:[0-9a-f]{64}")
_END = object()
# CheckImageUpdates: references per call, and registry requests at once.
MAX_UPDATE_CHECKS = 100
UPDATE_CHECKS_AT_ONCE = 4
# ExportImages' chunks: each message costs the server and the client a fixed CPU time
# (about a third of both processes' CPU at 256 KiB: bench.save), and 1 MiB stays well
# under gRPC's default 4 MiB receive limit, so default clients read them. Larger was no
# cheaper (2 and 3.5 MiB measured).
EXPORT_CHUNK_BYTES = 1024 * 1024
# More names than any `docker save` command line holds; bounds the Engine request.
MAX_EXPORT_IMAGES = 256


@dataclass(frozen=True, slots=True)
class CoreSettings:
    build_context: ContextLimits
    # Image archives for ImportImages: their own size cap, the build context's spool.
    import_archive: ContextLimits = field(
        default_factory=lambda: ContextLimits(max_bytes=4 * 1024**3)
    )
    progress_interval_seconds: float = 0.1
    # A pull or push that moves nothing this long ends TRANSFER_STALLED (0: never).
    transfer_stall_timeout_seconds: float = 300.0
    # Security (SECURITY.md): which repositories, what builds may do, how much at once.
    # The defaults allow everything; the server configures them from its settings.
    registry_policy: RegistryPolicy = field(default_factory=RegistryPolicy)
    build_restrictions: BuildRestrictions = field(default_factory=BuildRestrictions)
    limits: Limits = field(default_factory=Limits)
    # Identical pulls running at once share one Engine pull.
    pull_flights: PullFlights = field(default_factory=PullFlights)


@dataclass(frozen=True, slots=True)
class _Deadline:
    """When a build must be done (event-loop time), from the build time limit."""

    at: float
    seconds: float

    def error(self) -> DeadlineExceededError:
        return DeadlineExceededError(
            f"the build ran longer than this service's build time limit of {self.seconds:g}"
            " seconds and was stopped",
            reason=Reason.BUILD_TIMEOUT,
            metadata={"limit_seconds": f"{self.seconds:g}"},
        )


@contextlib.asynccontextmanager
async def _before(deadline: _Deadline) -> AsyncIterator[None]:
    """The awaits in the block must finish before the deadline. Only for blocks that do
    not yield to a consumer (the timeout cancels the running task)."""
    try:
        async with asyncio.timeout_at(deadline.at):
            yield
    except TimeoutError:
        raise deadline.error() from None


def _enforced(deadline: _Deadline | None) -> AbstractAsyncContextManager[None]:
    return _before(deadline) if deadline is not None else contextlib.nullcontext()


def _narrowing_filters(filters: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """The list filters sent to the Engine: at most one reference and one label, which
    only narrow what the service then matches itself. Engines disagree on several:
    Docker matches any of the references and all of the labels; Podman 4.3 matches no
    image for two references or two labels."""
    sent = dict(filters)
    for key in ("reference", "label"):
        if key not in sent:
            continue
        if key == "label" or len(sent[key]) == 1:
            sent[key] = sent[key][:1]
        else:
            del sent[key]  # any of several: one alone would drop the others' images
    return sent


def _only_digest_of(document: JsonDocument, reference: Reference) -> str:
    """The pulled image's digest in its repository, for Engines whose pull stream has no
    "Digest:" line (Podman): only when the image has exactly one there, else unknown."""
    image = documents.image_from_inspect(document)
    repository = familiar(reference.full_name)
    digests = {d.partition("@")[2] for d in image.repo_digests if d.partition("@")[0] == repository}
    return digests.pop() if len(digests) == 1 else ""


def _retrieved(done: asyncio.Future[Any]) -> None:
    """Marks a future's outcome as seen (nobody waits for it any more)."""
    if not done.cancelled():
        done.exception()


def _sorted_listing(listed: Sequence[tuple[JsonDocument, Image]]) -> Listing:
    """Newest first, then by id (core/paging.py's order)."""
    ordered = sorted(
        ((sort_key(documents.created_unix(s), str(s.get("Id", ""))), i) for s, i in listed),
        key=lambda pair: pair[0],
    )
    return Listing(tuple(key for key, _ in ordered), tuple(image for _, image in ordered))


class ImageCore:
    def __init__(
        self,
        engine: DockerPort,
        executor: Executor,
        settings: CoreSettings,
        *,
        stream_executor: Executor | None = None,
        health_executor: Executor | None = None,
        image_changes: ImageChangeLog | None = None,
        image_snapshot: Snapshot | None = None,
        index: ImageIndex | None = None,
    ) -> None:
        """`engine` is the Docker Engine; `executor` runs its unary calls. Reads of long
        pulls, pushes and builds can go to `stream_executor` and pings to
        `health_executor`, so that many slow streams neither starve quick calls nor make
        a busy service look unhealthy. Reads answer from `index` while it is live, and
        writes return once it shows their effect (read-your-writes). WatchImages reads
        `image_changes`, the change log the live image index publishes to, and
        `image_snapshot`, the index's entries (it may raise UNAVAILABLE while the index is
        not in step); without both it answers UNAVAILABLE."""
        self._engine = engine
        self._index = index
        self._image_changes = image_changes
        self._image_snapshot = image_snapshot
        self._executor = executor
        self._stream_executor = stream_executor or executor
        self._health_executor = health_executor or executor
        self._settings = settings
        self._prune_guard: Callable[[PruneOptions], Awaitable[None]] | None = None
        self._listings = ListingCache()

    def guard_prunes(self, guard: Callable[[PruneOptions], Awaitable[None]]) -> None:
        """`guard(options)` runs before every prune and may refuse it (kept images)."""
        self._prune_guard = guard

    async def _call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        return await self._call_in(self._executor, fn, *args, **kwargs)

    @staticmethod
    async def _call_in(executor: Executor, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, functools.partial(fn, *args, **kwargs))

    def _admit(self) -> None:
        """The caller's rate limit, first thing in every operation."""
        self._settings.limits.admit()

    async def _messages(
        self,
        stream: EngineStream,
        deadline: _Deadline | None = None,
        stall: StallWatch | None = None,
    ) -> AsyncGenerator[JsonDocument, None]:
        """The stream's messages; closes the Engine response however iteration ends
        (which aborts the work on the daemon, also when the deadline passes or the
        transfer stalls)."""
        try:
            while True:
                async with (
                    _enforced(deadline),
                    stall.waiting() if stall else contextlib.nullcontext(),
                ):
                    message = await self._call_in(self._stream_executor, next, stream, _END)
                if message is _END:
                    return
                yield message
        finally:
            stream.close()

    async def _transfer(
        self, stream: EngineStream, tracker: TransferTracker, operation: str
    ) -> AsyncGenerator[TransferProgress, None]:
        """Coalesced progress of a pull or push (a failure line is raised by the stream);
        ends TRANSFER_STALLED when it stops moving."""
        stall = StallWatch(self._settings.transfer_stall_timeout_seconds, operation)
        async with contextlib.aclosing(self._messages(stream, stall=stall)) as messages:
            async for message in messages:
                moves = tracker.moves
                progress = tracker.feed(message)
                if tracker.moves != moves:
                    stall.moved()
                if progress is not None:
                    yield progress
        final = tracker.finish()
        if final is not None:
            yield final

    # Health -------------------------------------------------------------------------

    async def ping(self) -> bool:
        return await self._call_in(self._health_executor, self._engine.ping)

    # Reads --------------------------------------------------------------------------

    async def list_images(
        self, image_filter: ImageFilter, *, all: bool, page_size: int, page_token: str
    ) -> ImagePage:
        self._admit()
        index = self._index
        live = index is not None and index.live
        if live:
            assert index is not None
            self._listings.at(index.generation)
            kept = self._listings.page((image_filter, all, page_size, page_token))
            if kept is not None:
                return kept
        filters: dict[str, list[str]] = {}
        if image_filter.references:
            filters["reference"] = list(image_filter.references)
        if image_filter.labels:
            filters["label"] = list(image_filter.labels)
        if image_filter.dangling is not None:
            filters["dangling"] = ["true" if image_filter.dangling else "false"]
        for key, value in (("before", image_filter.before), ("since", image_filter.since)):
            if value:
                filters[key] = [validate_image_identifier(value)]
        fingerprint = query_fingerprint(filters, all)
        # Validate the token before spending an Engine call on the list.
        page_window((), page_size=page_size, page_token=page_token, fingerprint=fingerprint)
        listing = self._listing_from_index(image_filter, all=all) if live else None
        if listing is None:
            patterns = [reference_pattern(p) for p in image_filter.references]
            listing = _sorted_listing(
                await self._listed_from_engine(image_filter, filters, all=all, patterns=patterns)
            )
            live = False  # the Engine's answer is not the index's: not kept
        window = page_window(
            listing.keys, page_size=page_size, page_token=page_token, fingerprint=fingerprint
        )
        page = ImagePage(
            listing.images[window.start : window.stop], window.next_token, len(listing.keys)
        )
        if live:  # computed from this generation, without awaiting anything since
            self._listings.keep_page((image_filter, all, page_size, page_token), page)
        return page

    def _listing_from_index(self, image_filter: ImageFilter, *, all: bool) -> Listing | None:
        """The listing from memory (kept for the index's generation), or None when the
        index cannot answer (a filter it does not evaluate): then the Engine answers."""
        assert self._index is not None
        kept = self._listings.listing((image_filter, all))
        if kept is not None:
            return kept
        try:
            selected: list[IndexEntry] = select_images(self._index.entries(), image_filter, all=all)
        except NotImplementedError:
            return None
        # select_images shows each image as the list does (only the names a reference
        # filter matches).
        listing = _sorted_listing([(entry.summary, entry.image) for entry in selected])
        self._listings.keep_listing((image_filter, all), listing)
        return listing

    async def _listed_from_engine(
        self,
        image_filter: ImageFilter,
        filters: dict[str, list[str]],
        *,
        all: bool,
        patterns: list[re.Pattern[str]],
    ) -> list[tuple[JsonDocument, Image]]:
        summaries = await self._call(
            self._engine.list_images, all=all, filters=_narrowing_filters(filters)
        )
        listed: list[tuple[JsonDocument, Image]] = []
        for summary in summaries:
            if not has_labels(summary, image_filter.labels):
                continue
            image: Image | None = documents.image_from_summary(summary)
            if patterns and image is not None:
                # The Engine filtered already; Docker's rule on Docker's familiar names
                # makes every Engine agree (Podman also matches "tiny" to "acc/tiny:1").
                image = matching_names(image, patterns)
            if image is not None:
                listed.append((summary, image))
        return listed

    def _indexed_id(self, text: str) -> tuple[ImageIndex, str] | None:
        """The live index and the id it knows `text` by; None when the index is off, not
        live (never stale: the Engine answers then) or cannot say for sure."""
        index = self._index
        if index is None or not index.live:
            return None
        image_id = index.lookup(text)
        return None if image_id is None else (index, image_id)

    async def get_image(self, image: str) -> Image:
        self._admit()
        text = validate_image_identifier(image)
        if (indexed := self._indexed_id(text)) is not None:
            index, image_id = indexed
            cached = index.inspected(image_id)
            if cached is not None:
                return cached
            with contextlib.suppress(NotFoundError):  # gone meanwhile: as the Engine says
                return await index.inspect(image_id)
        document = await self._call(self._engine.inspect_image, text)
        return documents.image_from_inspect(document)

    async def image_history(self, image: str) -> tuple[HistoryEntry, ...]:
        self._admit()
        text = validate_image_identifier(image)
        if (indexed := self._indexed_id(text)) is not None:
            index, image_id = indexed
            cached = index.history(image_id)
            if cached is not None:
                return cached
            with contextlib.suppress(NotFoundError):
                return await index.load_history(image_id)
        entries = await self._call(self._engine.image_history, text)
        return documents.history_from_engine(entries)

    async def disk_usage(self) -> DiskUsage:
        """The images' disk usage, like `docker system df -v` (core/disk_usage.py)."""
        self._admit()
        return disk_usage(await self._call(self._engine.disk_usage))

    async def export_images(self, images: Sequence[str]) -> AsyncGenerator[bytes, None]:
        """The images as one tar archive (`docker save`), in chunks as the Engine writes
        it, one chunk read ahead (the consumer's pace is the Engine's: nothing piles
        up). Every image is looked up first, so that one not found is NOT_FOUND before
        any byte. Closing the generator closes the Engine response, which stops the
        export on the daemon."""
        self._admit()
        if not images:
            raise InvalidArgumentError(
                "images is required: name at least one image to export",
                metadata={"field": "images"},
            )
        if len(images) > MAX_EXPORT_IMAGES:
            raise InvalidArgumentError(
                f"at most {MAX_EXPORT_IMAGES} images can be exported at once ({len(images)} named)",
                metadata={"field": "images"},
            )
        names = list(dict.fromkeys(validate_image_identifier(image) for image in images))
        for name in names:
            await self._call(self._engine.inspect_image, name)
        archive = self._engine.export_images(names, chunk_size=EXPORT_CHUNK_BYTES)
        # One read ahead, on the event loop (no thread hands chunks over): the next
        # chunk comes from the Engine while this one is sent, so the two overlap; at most
        # two chunks are held, and a consumer that stops reading stops the reads (flow
        # control reaches the Engine).
        ahead = asyncio.ensure_future(archive.read())
        try:
            while chunk := await ahead:
                ahead = asyncio.ensure_future(archive.read())
                yield chunk
        finally:
            if not ahead.done():
                ahead.cancel()
            elif not ahead.cancelled():
                ahead.exception()  # retrieved: a read failing after the close is moot
            archive.close()  # at once, also under a read still running ahead

    async def watch_images(
        self, image_filter: ImageFilter, *, send_initial: bool, resume_token: str
    ) -> AsyncGenerator[WatchEvent, None]:
        """The changes of the images matching `image_filter` (ImageChangeLog.watch)."""
        self._admit()
        # A malformed request is refused as such, whether or not the index runs.
        for value in (image_filter.before, image_filter.since):
            if value:
                validate_image_identifier(value)
        for pattern in image_filter.references:
            reference_pattern(pattern)
        if self._image_changes is None or self._image_snapshot is None:
            raise UnavailableError(
                "WatchImages needs the live image index, which this server does not run",
                reason=Reason.WATCH_UNAVAILABLE,
            )
        events = self._image_changes.watch(
            image_filter,
            send_initial=send_initial,
            resume_token=resume_token,
            snapshot=self._image_snapshot,
        )
        async with contextlib.aclosing(events):
            async for event in events:
                yield event

    async def _index_shows(self, ids: Sequence[str] = (), names: Sequence[str] = ()) -> None:
        """Returns once the index shows what a write changed (read-your-writes)."""
        if self._index is not None:
            await self._index.refreshed(ids, names)

    # Writes -------------------------------------------------------------------------

    async def tag_image(self, source: str, target: str) -> TagResult:
        self._admit()
        validate_image_identifier(source)
        reference = parse_tag_target(target)
        self._settings.registry_policy.check_target(reference, what=f"tagging as {target!r}")
        await self._call(self._engine.tag, source, reference.name, reference.tag)
        document = await self._call(self._engine.inspect_image, str(reference))
        image_id = documents.image_id(document.get("Id"))
        await self._index_shows([image_id], [str(reference)])
        return TagResult(id=str(document.get("Id", "")), target=str(reference))

    async def remove_image(self, image: str, *, force: bool, no_prune: bool) -> RemoveResult:
        self._admit()
        items = await self._call(
            self._engine.remove_image,
            validate_image_identifier(image),
            force=force,
            no_prune=no_prune,
        )
        result = RemoveResult(
            untagged=tuple(familiar(str(i["Untagged"])) for i in items if i.get("Untagged")),
            deleted=tuple(documents.image_id(i["Deleted"]) for i in items if i.get("Deleted")),
        )
        await self._index_shows(result.deleted, result.untagged)
        return result

    async def prune_images(self, options: PruneOptions) -> PruneResult:
        self._admit()
        filters: dict[str, list[str]] = {"dangling": ["false" if options.all else "true"]}
        if options.labels:
            filters["label"] = list(options.labels)
        if options.exclude_labels:
            filters["label!"] = list(options.exclude_labels)
        if options.until is not None:
            seconds = int(options.until.timestamp())
            # The Engine cannot parse a negative Unix time (and no image is that old).
            if seconds < 0:
                raise InvalidArgumentError(
                    f"until {options.until.isoformat()} is before 1970-01-01T00:00:00Z",
                    metadata={"field": "until"},
                )
            filters["until"] = [str(seconds)]
        if self._prune_guard is not None:
            await self._prune_guard(options)
        report = await self._call(self._engine.prune_images, filters)
        items = report.get("ImagesDeleted") or []
        await self._index_shows(
            [documents.image_id(i["Deleted"]) for i in items if i.get("Deleted")],
            [str(i["Untagged"]) for i in items if i.get("Untagged")],
        )
        return PruneResult(
            deleted=tuple(documents.image_id(i["Deleted"]) for i in items if i.get("Deleted")),
            # The containerd store "untags" a dangling image by its bare id: no reference.
            untagged=tuple(
                familiar(str(i["Untagged"]))
                for i in items
                if i.get("Untagged")
                and not _DANGLING_IMAGE_NAME.fullmatch(documents.image_id(i["Untagged"]))
            ),
            space_reclaimed_bytes=int(report.get("SpaceReclaimed") or 0),
        )

    async def check_registry_auth(self, auth: RegistryAuth) -> AuthCheckResult:
        self._admit()
        with redacting_errors(auth.secrets()):
            if auth.is_empty:
                raise InvalidArgumentError(
                    "auth needs a username and password, an identity token or a registry token",
                    reason=Reason.INVALID_ARGUMENT,
                )
            # The daemon contacts this registry: only one the allowlists name.
            registry = registry_of_server_address(auth.server_address)
            self._settings.registry_policy.check_registry(registry)
            answer = await self._call(self._engine.check_auth, auth)
        return AuthCheckResult(
            status=str(answer.get("Status") or ""),
            identity_token=str(answer.get("IdentityToken") or ""),
        )

    # Streams ------------------------------------------------------------------------

    async def pull_image(
        self, reference_text: str, *, platform: str, auth: RegistryAuth | None
    ) -> AsyncGenerator[TransferProgress | PullResult, None]:
        self._admit()
        # No tag or digest means :latest, never every tag of the repository.
        reference = parse_reference(reference_text).with_default_tag()
        validate_platform(platform)
        self._settings.registry_policy.check_pull(reference, what=f"pulling {reference_text!r}")
        # Checked and admitted: the caller joins an identical pull running now, if any.
        tracker = TransferTracker(
            pushing=False, min_interval=self._settings.progress_interval_seconds
        )
        flights = self._settings.pull_flights
        flight = flights.join(
            flights.key(reference.normalized(), platform, auth),
            functools.partial(self._pull_once, reference, platform, auth, tracker),
            tracker.snapshot,
        )
        async with contextlib.aclosing(flight) as items:
            async for item in items:
                yield item

    async def _pull_once(
        self,
        reference: Reference,
        platform: str,
        auth: RegistryAuth | None,
        tracker: TransferTracker,
    ) -> AsyncGenerator[TransferProgress | PullResult, None]:
        """One Engine pull, in one concurrency slot, for every caller that joins it."""
        secrets = auth.secrets() if auth else ()
        async with self._settings.limits.pulls.slot():
            with redacting_errors(secrets):
                stream = await self._call(
                    self._engine.pull,
                    reference.name,
                    reference.digest or reference.tag,
                    platform=platform,
                    auth=auth,
                )
                async with contextlib.aclosing(self._transfer(stream, tracker, "pull")) as progress:
                    async for item in progress:
                        yield item
                document = await self._call(self._engine.inspect_image, str(reference))
        digest = next(
            (
                m.group("digest")
                for line in tracker.status_lines
                if (m := _PULL_DIGEST_LINE.search(line))
            ),
            reference.digest or _only_digest_of(document, reference),
        )
        status = next(
            (line for line in reversed(tracker.status_lines) if line.startswith("Status:")), ""
        )
        await self._index_shows([documents.image_id(document.get("Id"))], [str(reference)])
        yield PullResult(
            image_id=documents.image_id(document.get("Id")),
            digest=digest,
            reference=reference.normalized(),
            status=status.removeprefix("Status: "),
        )

    async def push_image(
        self, reference_text: str, *, auth: RegistryAuth | None
    ) -> AsyncGenerator[TransferProgress | PushResult, None]:
        self._admit()
        reference = parse_reference(reference_text)
        if reference.digest:
            raise InvalidArgumentError(
                f"cannot push {reference_text!r}: push a tag, not a digest",
                reason=Reason.INVALID_REFERENCE,
            )
        reference = reference.with_default_tag()
        self._settings.registry_policy.check_target(reference, what=f"pushing {reference_text!r}")
        secrets = auth.secrets() if auth else ()
        tracker = TransferTracker(
            pushing=True, min_interval=self._settings.progress_interval_seconds
        )
        async with self._settings.limits.pushes.slot():
            with redacting_errors(secrets):
                stream = await self._call(
                    self._engine.push, reference.name, reference.tag, auth=auth
                )
                async with contextlib.aclosing(self._transfer(stream, tracker, "push")) as progress:
                    async for item in progress:
                        yield item
        result = self._push_result(reference.name, reference.tag, tracker)
        await self._index_shows(names=[str(reference)])  # the image gains a repo digest
        yield result

    @staticmethod
    def _push_result(name: str, tag: str, tracker: TransferTracker) -> PushResult:
        aux = tracker.aux
        if aux.get("Digest"):
            return PushResult(
                digest=str(aux["Digest"]),
                size=int(aux.get("Size") or 0),
                tag=str(aux.get("Tag") or tag),
                reference=f"{name}:{tag}",
            )
        # Engines that send no aux message still print "<tag>: digest: sha256:... size: N".
        for line in reversed(tracker.status_lines):
            match = _PUSH_DIGEST_LINE.search(line)
            if match:
                return PushResult(
                    digest=match.group("digest"),
                    size=int(match.group("size")),
                    tag=match.group("tag"),
                    reference=f"{name}:{tag}",
                )
        raise EngineError(
            f"the Engine finished pushing {name}:{tag} without reporting a digest",
            reason=Reason.ENGINE_ERROR,
        )

    async def build_image(
        self, options: BuildOptions, context_chunks: AsyncIterator[UploadChunk]
    ) -> AsyncGenerator[str | BuildResult, None]:
        self._admit()
        options = validate_build_options(options)
        restrictions = self._settings.build_restrictions
        restrictions.check_options(options)
        for tag in options.tags:
            self._settings.registry_policy.check_target(
                parse_tag_target(tag), what=f"tagging the build as {tag!r}"
            )
        options = dataclasses.replace(options, limits=restrictions.limits)
        secrets = tuple(s for auth in options.registry_auths for s in auth.secrets())
        async with self._settings.limits.builds.slot():
            deadline = None
            if restrictions.timeout_seconds:
                loop_time = asyncio.get_running_loop().time()
                deadline = _Deadline(
                    loop_time + restrictions.timeout_seconds, restrictions.timeout_seconds
                )
            build_log = BuildLog()

            async def receive(pipe: ArchivePipe) -> CheckedContext:
                return await self._prepared_context(options, context_chunks, pipe)

            with redacting_errors(secrets):
                messages = self._upload(
                    functools.partial(self._engine.build, gzip=False, request=options),
                    receive,
                    deadline,
                )
                async with contextlib.aclosing(messages):
                    try:
                        async for message in messages:
                            text = build_log.feed(message)
                            if text is not None:
                                yield text
                    except ImageServiceError as error:
                        raise build_log.explained(error) from error.__cause__
        image_id = build_log.image_id
        if not image_id and options.tags:
            # Only older Engines omit the aux message; ask the Engine, never scrape the log.
            document = await self._call(self._engine.inspect_image, options.tags[0])
            image_id = str(document.get("Id", ""))
        if not image_id:
            raise EngineError(
                "the Engine finished the build without reporting the image id",
                reason=Reason.ENGINE_ERROR,
            )
        await self._index_shows([image_id], options.tags)
        yield BuildResult(image_id=image_id, tags=options.tags)

    async def import_images(
        self, archive_chunks: AsyncIterator[UploadChunk]
    ) -> AsyncGenerator[str | ImportResult, None]:
        """Loads the images of an archive (`docker load`): checked and rewritten while it
        arrives, every name it gives an image passed through the tag allowlist, and only
        then sent to the Engine. Yields progress lines, then the loaded images."""
        self._admit()
        policy = self._settings.registry_policy

        def vet_names(archive: RewrittenArchive) -> None:
            for reference in archive_names(archive.kept):
                policy.check_target(reference, what=f"importing an image named {reference}")

        async def receive(pipe: ArchivePipe) -> RewrittenArchive:
            return await receive_archive(
                archive_chunks,
                subject=IMAGE_ARCHIVE,
                limits=self._settings.import_archive,
                keep=KEPT_FILES,
                executor=self._stream_executor,
                finish=vet_names,
                pipe=pipe,
            )

        # A load unpacks layers like a build: it takes a build slot.
        async with self._settings.limits.builds.slot():
            reported: list[str] = []
            progress = LoadProgress()
            messages = self._upload(self._engine.load, receive)
            async with contextlib.aclosing(messages):
                async for message in messages:
                    for line in progress.feed(message):
                        reported.append(line)
                        yield line
        result = await self._imported(loaded_names(reported))
        await self._index_shows(
            [image.id for image in result.images],
            [tag for image in result.images for tag in image.tags],
        )
        yield result

    async def _imported(self, loaded: LoadedNames) -> ImportResult:
        """The loaded images by id, each with its names (asked of the Engine: the output
        names them, not always with their ids)."""
        names_of: dict[str, list[str]] = {image_id: [] for image_id in loaded.ids}
        for name in loaded.names:
            document = await self._call(self._engine.inspect_image, name)
            image_id = documents.image_id(document.get("Id"))
            names_of.setdefault(image_id, []).append(familiar(name))
        return ImportResult(
            images=tuple(
                ImportedImage(id=image_id, tags=tuple(names))
                for image_id, names in names_of.items()
            )
        )

    async def _upload(
        self,
        start: Callable[[Iterator[bytes]], EngineStream],
        receive: Callable[[ArchivePipe], Awaitable[object]],
        deadline: _Deadline | None = None,
    ) -> AsyncGenerator[JsonDocument, None]:
        """The messages of the Engine request `start`, whose body is the upload as
        `receive` checks and rewrites it: sent while it arrives, its end only once
        `receive` returned (ArchivePipe says why that is safe); a refusal cuts the
        request before its end. Closes the Engine response however iteration ends."""
        pipe = ArchivePipe()
        stream = await self._call(start, pipe.body())
        # The first read sends the request (its body as it comes) and waits for an answer.
        sending = asyncio.ensure_future(self._call_in(self._stream_executor, next, stream, _END))
        try:
            async with _enforced(deadline):
                await receive(pipe)
            pipe.release()
            async with _enforced(deadline):
                first = await sending
        except BaseException as error:
            pipe.abort()
            stream.close()
            sending.add_done_callback(_retrieved)
            if isinstance(error, PipeClosedError) and sending.done() and not sending.cancelled():
                # The Engine answered before the upload ended: its answer says why.
                failure = sending.exception()
                if isinstance(failure, ImageServiceError):
                    raise failure from None
            raise
        try:
            if first is _END:
                return
            yield first
            async with contextlib.aclosing(self._messages(stream, deadline)) as messages:
                async for message in messages:
                    yield message
        finally:
            stream.close()

    async def _prepared_context(
        self,
        options: BuildOptions,
        context_chunks: AsyncIterator[UploadChunk],
        pipe: ArchivePipe,
    ) -> CheckedContext:
        """The context as the Engine gets it (checked and rewritten into `pipe` while it
        arrives), once its Dockerfile's images and sources passed the policy."""
        context = await receive_context(
            context_chunks,
            options.dockerfile,
            self._settings.build_context,
            self._stream_executor,
            pipe,
        )
        sources = dockerfile_sources(context.dockerfile, options.build_args)
        self._settings.build_restrictions.check_sources(
            sources, self._settings.registry_policy, options.dockerfile or "Dockerfile"
        )
        return context

    # Registry inspection (issue 16) -----------------------------------------------------

    async def inspect_registry_image(
        self, reference_text: str, *, auth: RegistryAuth | None
    ) -> RegistryImage:
        """What the registry serves for the reference, without pulling it (the daemon asks
        the registry, so its mirrors, proxies and insecure registries apply)."""
        self._admit()
        reference = parse_reference(reference_text).with_default_tag()
        self._settings.registry_policy.check_pull(
            reference, what=f"inspecting {reference_text!r} at its registry"
        )
        return await self._resolve_at_registry(reference, auth)

    async def _resolve_at_registry(
        self, reference: Reference, auth: RegistryAuth | None
    ) -> RegistryImage:
        with redacting_errors(auth.secrets() if auth else ()):
            document = await self._call(
                self._engine.inspect_distribution, str(reference), auth=auth
            )
        return registry_image(reference, document)

    async def check_image_updates(
        self, references: Sequence[str], *, registry_auths: Sequence[RegistryAuth]
    ) -> tuple[ImageUpdate, ...]:
        """For each local tag, whether its registry still serves the local image under it.
        One tag's failure (its registry down, refused, the tag gone) is that tag's UNKNOWN
        answer, never the call's; at most UPDATE_CHECKS_AT_ONCE registry requests at once."""
        self._admit()
        if not references:
            raise InvalidArgumentError(
                "references must name at least one local tag", reason=Reason.INVALID_ARGUMENT
            )
        if len(references) > MAX_UPDATE_CHECKS:
            raise InvalidArgumentError(
                f"at most {MAX_UPDATE_CHECKS} references per call (got {len(references)})",
                reason=Reason.INVALID_ARGUMENT,
                metadata={"field": "references"},
            )
        parsed = [parse_reference(text).with_default_tag() for text in references]
        for text, reference in zip(references, parsed, strict=True):
            if reference.digest:
                raise InvalidArgumentError(
                    f"{text!r} names a digest, which always points at the same image: check a tag",
                    reason=Reason.INVALID_REFERENCE,
                )
        auths = {registry_of_server_address(a.server_address): a for a in registry_auths}
        slots = asyncio.Semaphore(UPDATE_CHECKS_AT_ONCE)

        async def check(reference: Reference) -> ImageUpdate:
            async with slots:
                return await self._update_of(reference, auths.get(reference.registry))

        return tuple(await asyncio.gather(*(check(reference) for reference in parsed)))

    async def _update_of(self, reference: Reference, auth: RegistryAuth | None) -> ImageUpdate:
        local: tuple[str, ...] = ()
        try:
            self._settings.registry_policy.check_pull(
                reference, what=f"checking {str(reference)!r} for updates"
            )
            document = await self._call(self._engine.inspect_image, str(reference))
            local = local_digests(reference, document)
            if not local:  # nothing to compare with: the registry is not asked
                return compare_digests(reference, local, "")
            served = await self._resolve_at_registry(reference, auth)
        except ImageServiceError as error:
            if error.reason is Reason.DAEMON_UNAVAILABLE:
                raise  # the daemon, not a registry: every answer would be the same
            return update_unknown(reference, local, error.reason, error.message)
        return compare_digests(reference, local, served.digest)
