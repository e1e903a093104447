"""In-memory stand-ins for the Docker Engine, shaped like the Engine's own JSON.

`FakeDockerPort` implements `imagesvc.core.port.DockerPort` and records every call
(thread-safely: the core calls it from a worker pool) so tests can assert how many
Engine calls a request cost and what was passed. `FakeEngineStream` yields scripted
messages and records when it is read and closed; like the adapter's stream, it raises an
Engine error line as its core error (through the same table, imagesvc.engine.errors).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from imagesvc.core.errors import FailedPreconditionError, ImageServiceError, NotFoundError
from imagesvc.core.models import BuildLimits, RegistryAuth
from imagesvc.core.port import BuildRequest, DockerPort, JsonDocument
from imagesvc.engine.errors import stream_failure


def image_id(n: int) -> str:
    """A full, deterministic image id: sha256:000…0n."""
    return f"sha256:{n:064x}"


def engine_image(
    n: int,
    *,
    tags: Sequence[str] = (),
    digests: Sequence[str] = (),
    created: int = 1_700_000_000,
    size: int = 1_000,
    labels: Mapping[str, str] | None = None,
    parent: str = "",
    containers: int = -1,
) -> JsonDocument:
    """An image as GET /images/{name}/json returns it, with a Unix `Created` kept aside."""
    created_text = datetime.fromtimestamp(created, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.123456789Z")
    return {
        "Id": image_id(n),
        "RepoTags": list(tags),
        "RepoDigests": list(digests),
        "Parent": parent,
        "Comment": "",
        "Created": created_text,
        "DockerVersion": "",
        "Author": "",
        "Config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"],
            "Labels": dict(labels or {}),
        },
        "Architecture": "amd64",
        "Os": "linux",
        "Size": size,
        "RootFS": {"Type": "layers", "Layers": [f"sha256:{n:063x}f"]},
        # Not part of the Engine's inspect document; used to build the list summary.
        "_created_unix": created,
        "_containers": containers,
    }


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class FakeEngineStream:
    """Scripted Engine messages. An exception in the script is raised when reached, and
    so is the core error of an Engine error line (classified as a build's when the fake
    port opened the stream for a build).

    With `block_at=i`, reading message i blocks until `close()` is called (from any
    thread), like a real HTTP response waiting on the daemon; then iteration ends.
    """

    def __init__(
        self,
        messages: Iterable[JsonDocument | BaseException],
        *,
        block_at: int | None = None,
    ) -> None:
        self._messages = list(messages)
        self._index = 0
        self._block_at = block_at
        self._closed = threading.Event()
        self.blocked = threading.Event()
        self.close_calls = 0
        self.building = False
        # Sends the request body at the first read, as the real stream does.
        self.before_first: Callable[[], None] | None = None

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def delivered(self) -> int:
        """How many scripted messages were handed out."""
        return self._index

    def __iter__(self) -> Iterator[JsonDocument]:
        return self

    def __next__(self) -> JsonDocument:
        if self.before_first is not None and not self.closed:
            send, self.before_first = self.before_first, None
            send()
        if self._block_at is not None and self._index == self._block_at and not self.closed:
            self.blocked.set()
            self._closed.wait(timeout=10)
        if self.closed or self._index >= len(self._messages):
            raise StopIteration
        item = self._messages[self._index]
        self._index += 1
        if isinstance(item, BaseException):
            raise item
        failure = stream_failure(item, building=self.building)
        if failure is not None:
            raise failure
        return item

    def close(self) -> None:
        self.close_calls += 1
        self._closed.set()


class FakeEngineBytes:
    """Scripted chunks of an Engine archive; an exception in the script is raised when
    reached. With `block_at=i`, reading chunk i waits (on the event loop) until `close()`
    or its cancellation."""

    def __init__(
        self, chunks: Iterable[bytes | BaseException], *, block_at: int | None = None
    ) -> None:
        self._chunks = list(chunks)
        self._index = 0
        self._block_at = block_at
        self._closed = asyncio.Event()
        self.blocked = threading.Event()
        self.reads = 0

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def read(self) -> bytes:
        self.reads += 1
        if self._block_at is not None and self._index == self._block_at and not self.closed:
            self.blocked.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), timeout=10)
        if self.closed or self._index >= len(self._chunks):
            return b""
        item = self._chunks[self._index]
        self._index += 1
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._closed.set()


class SentBody:
    """A streamed request body (build context, image archive) as the fake Engine read it:
    at the stream's first read, to its end."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self._pieces = pieces
        self.data: bytes | None = None

    def read(self) -> bytes:
        self.data = b"".join(self._pieces)
        return self.data

    @property
    def closed(self) -> bool:
        """Read to its end, or, never read, ended by the core: reading it then ends at
        once (the core released or aborted it) instead of waiting for more."""
        if self.data is not None:
            return True
        reader = threading.Thread(target=self._drain, daemon=True)
        reader.start()
        reader.join(timeout=5)
        return not reader.is_alive()

    def _drain(self) -> None:
        with contextlib.suppress(Exception):
            b"".join(self._pieces)


_END_OF_EVENTS = object()


class FakeEventStream:
    """The Engine's event stream: what the test (or the fake port's own writes) emits,
    until `end()`, `fail()` or `close()` (from any thread)."""

    def __init__(self, since: str = "") -> None:
        self.since = since
        self._events: queue.Queue[object] = queue.Queue()
        self._closed = threading.Event()
        self.opened = threading.Event()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def open(self) -> None:
        self.opened.set()

    def __iter__(self) -> Iterator[JsonDocument]:
        return self

    def __next__(self) -> JsonDocument:
        while not self.closed:
            try:
                item = self._events.get(timeout=0.02)
            except queue.Empty:
                continue
            if item is _END_OF_EVENTS:
                raise StopIteration
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, dict)
            return item
        raise StopIteration

    def emit(self, event: JsonDocument) -> None:
        self._events.put(event)

    def end(self) -> None:
        self._events.put(_END_OF_EVENTS)

    def fail(self, error: BaseException) -> None:
        self._events.put(error)

    def close(self) -> None:
        self._closed.set()


def image_event(action: str, actor_id: str, name: str = "") -> JsonDocument:
    """An image event as Engine 20.10 sends it."""
    nanos = time.time_ns()
    return {
        "status": action,
        "id": actor_id,
        "Type": "image",
        "Action": action,
        "Actor": {"ID": actor_id, "Attributes": {"name": name or actor_id}},
        "scope": "local",
        "time": nanos // 1_000_000_000,
        "timeNano": nanos,
    }


@dataclass(slots=True)
class BuildCall:
    context: bytes
    gzip: bool
    tags: tuple[str, ...]
    dockerfile: str
    build_args: dict[str, str]
    labels: dict[str, str]
    target: str
    no_cache: bool
    pull: bool
    platform: str
    network_mode: str
    registry_auths: tuple[RegistryAuth, ...]
    limits: BuildLimits


def _normalise_tag(reference: str) -> str:
    last = reference.rsplit("/", 1)[-1]
    return reference if ":" in last or "@" in reference else f"{reference}:latest"


def _names_match(references: Sequence[str], name: str, separator: str) -> bool:
    return any(ref in (name, name.rsplit(separator, 1)[0]) for ref in references)


@dataclass
class FakeDockerPort:
    """A Docker Engine in memory. Script streams and answers through the public fields."""

    images: dict[str, JsonDocument] = field(default_factory=dict)
    histories: dict[str, list[JsonDocument]] = field(default_factory=dict)
    pull_streams: list[FakeEngineStream] = field(default_factory=list)
    push_streams: list[FakeEngineStream] = field(default_factory=list)
    build_streams: list[FakeEngineStream] = field(default_factory=list)
    prune_report: JsonDocument = field(
        default_factory=lambda: {"ImagesDeleted": None, "SpaceReclaimed": 0}
    )
    # What export_images answers (each call takes the next) and system/df answers.
    export_archives: list[FakeEngineBytes] = field(default_factory=list)
    disk_usage_answer: JsonDocument = field(default_factory=dict)
    auth_answer: JsonDocument = field(
        default_factory=lambda: {"Status": "Login Succeeded", "IdentityToken": ""}
    )
    # When set, the named method raises this error instead of answering.
    failures: dict[str, ImageServiceError] = field(default_factory=dict)
    alive: bool = True
    # Whether tag and remove_image emit their events on the open event streams.
    emits_events: bool = True
    # Called at the start of every list_images (e.g. to change images "meanwhile").
    list_hook: Callable[[Mapping[str, list[str]]], None] | None = None
    event_streams: list[FakeEventStream] = field(default_factory=list)
    # Whether a list filtered by reference shows only the matching names (Docker does).
    narrows_reference_lists: bool = False
    # Registry inspection: the Engine's distribution documents and failures, by name.
    distributions: dict[str, JsonDocument] = field(default_factory=dict)
    distribution_failures: dict[str, ImageServiceError] = field(default_factory=dict)

    calls: list[Call] = field(default_factory=list)
    builds: list[BuildCall] = field(default_factory=list)
    build_files: list[IO[bytes] | SentBody] = field(default_factory=list)
    # ImportImages: the scripted load streams and each archive the Engine received.
    load_streams: list[FakeEngineStream] = field(default_factory=list)
    loads: list[bytes] = field(default_factory=list)
    streams_opened: list[FakeEngineStream] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # Bookkeeping ------------------------------------------------------------------

    def add(self, document: JsonDocument) -> JsonDocument:
        self.images[str(document["Id"])] = document
        return document

    def received_no_upload(self) -> bool:
        """The Engine got no whole build context or image archive (a request whose
        upload the core cut short does not count), and every stream it opened is closed."""
        return not self.builds and not self.loads and all(s.closed for s in self.streams_opened)

    def _record(self, method: str, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            self.calls.append(Call(method, args, dict(kwargs)))
        failure = self.failures.get(method)
        if failure is not None:
            raise failure

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.method == method]

    @property
    def methods_called(self) -> list[str]:
        with self._lock:
            return [call.method for call in self.calls]

    def _find(self, image: str) -> JsonDocument:
        wanted = image if image.startswith("sha256:") else f"sha256:{image}"
        for document in self.images.values():
            if str(document["Id"]).startswith(wanted):
                return document
        tag = _normalise_tag(image)
        for document in self.images.values():
            if tag in document["RepoTags"] or image in document["RepoDigests"]:
                return document
        raise NotFoundError(f"No such image: {image}")

    @staticmethod
    def _summary(document: JsonDocument) -> JsonDocument:
        return {
            "Id": document["Id"],
            "ParentId": document.get("Parent", ""),
            "RepoTags": list(document["RepoTags"]) or None,
            "RepoDigests": list(document["RepoDigests"]),
            "Created": document["_created_unix"],
            "Size": document["Size"],
            "SharedSize": -1,
            "VirtualSize": document["Size"],
            "Labels": dict(document["Config"].get("Labels") or {}) or None,
            "Containers": document["_containers"],
        }

    @staticmethod
    def _matches(document: JsonDocument, filters: Mapping[str, list[str]]) -> bool:
        labels: dict[str, str] = document["Config"].get("Labels") or {}
        for wanted in filters.get("label", []):
            key, sep, value = wanted.partition("=")
            if key not in labels or (sep and labels[key] != value):
                return False
        for dangling in filters.get("dangling", []):
            if (dangling == "true") != (not document["RepoTags"]):
                return False
        references = filters.get("reference", [])
        if references:
            names = {tag.rsplit(":", 1)[0] for tag in document["RepoTags"]}
            refs = {*names, *document["RepoTags"], *document["RepoDigests"]}
            if not any(ref in refs for ref in references):
                return False
        return True

    # DockerPort ---------------------------------------------------------------------

    def ping(self) -> bool:
        with self._lock:
            self.calls.append(Call("ping", (), {}))
        return self.alive

    def version(self) -> JsonDocument:
        self._record("version")
        return {"Version": "27.3.1", "ApiVersion": "1.47", "Os": "linux", "Arch": "amd64"}

    def emit(self, event: JsonDocument) -> None:
        """An event on every open event stream."""
        with self._lock:
            streams = [s for s in self.event_streams if not s.closed]
        for stream in streams:
            stream.emit(event)

    @property
    def event_stream(self) -> FakeEventStream:
        """The last event stream opened."""
        with self._lock:
            return self.event_streams[-1]

    def image_events(self, *, since: str = "") -> FakeEventStream:
        self._record("image_events", since=since)
        stream = FakeEventStream(since)
        with self._lock:
            self.event_streams.append(stream)
        return stream

    def list_images(self, *, all: bool, filters: Mapping[str, list[str]]) -> list[JsonDocument]:
        self._record("list_images", all=all, filters={k: list(v) for k, v in filters.items()})
        if self.list_hook is not None:
            self.list_hook(filters)
        summaries = [
            self._summary(document)
            for document in self.images.values()
            if self._matches(document, filters)
        ]
        references = filters.get("reference")
        if references and self.narrows_reference_lists:
            # Like Docker, a reference filter lists only the names that match it.
            for summary in summaries:
                summary["RepoTags"] = [
                    t for t in summary["RepoTags"] or [] if _names_match(references, t, ":")
                ] or None
                summary["RepoDigests"] = [
                    d for d in summary["RepoDigests"] if _names_match(references, d, "@")
                ]
        return summaries

    def inspect_image(self, image: str) -> JsonDocument:
        self._record("inspect_image", image)
        document = self._find(image)
        return {key: value for key, value in document.items() if not key.startswith("_")}

    def image_history(self, image: str) -> list[JsonDocument]:
        self._record("image_history", image)
        document = self._find(image)
        return [dict(entry) for entry in self.histories.get(str(document["Id"]), [])]

    def _next_stream(self, scripted: list[FakeEngineStream], what: str) -> FakeEngineStream:
        with self._lock:
            if not scripted:
                raise AssertionError(f"the test scripted no {what} stream")
            stream = scripted.pop(0)
            self.streams_opened.append(stream)
            return stream

    def pull(
        self, name: str, tag_or_digest: str, *, platform: str, auth: RegistryAuth | None
    ) -> FakeEngineStream:
        self._record("pull", name, tag_or_digest, platform=platform, auth=auth)
        return self._next_stream(self.pull_streams, "pull")

    def push(self, name: str, tag: str, *, auth: RegistryAuth | None) -> FakeEngineStream:
        self._record("push", name, tag, auth=auth)
        return self._next_stream(self.push_streams, "push")

    def tag(self, source: str, repository: str, tag: str) -> None:
        self._record("tag", source, repository, tag)
        document = self._find(source)
        target = f"{repository}:{tag}"
        for other in self.images.values():
            if target in other["RepoTags"]:
                other["RepoTags"].remove(target)
        document["RepoTags"].append(target)
        if self.emits_events:
            self.emit(image_event("tag", str(document["Id"]), target))

    def build(
        self, context: IO[bytes] | Iterator[bytes], *, gzip: bool, request: BuildRequest
    ) -> FakeEngineStream:
        self._record("build", gzip=gzip, request=request)
        # The request opens before the context is checked (its end is held back until
        # then): a build refused on its context needs no scripted stream.
        if not self.build_streams:
            self.build_streams.append(FakeEngineStream([]))
        stream = self._next_stream(self.build_streams, "build")
        stream.building = True

        def received(data: bytes) -> None:
            with self._lock:
                self.builds.append(
                    BuildCall(
                        context=data,
                        gzip=gzip,
                        tags=tuple(request.tags),
                        dockerfile=request.dockerfile,
                        build_args=dict(request.build_args),
                        labels=dict(request.labels),
                        target=request.target,
                        no_cache=request.no_cache,
                        pull=request.pull,
                        platform=request.platform,
                        network_mode=request.network_mode,
                        registry_auths=tuple(request.registry_auths),
                        limits=request.limits,
                    )
                )

        if isinstance(context, Iterator):
            body = SentBody(context)
            self.build_files.append(body)
            stream.before_first = lambda: received(body.read())
        else:
            self.build_files.append(context)
            received(context.read())
        return stream

    def load(self, archive: IO[bytes] | Iterator[bytes]) -> FakeEngineStream:
        self._record("load")
        if not self.load_streams:
            self.load_streams.append(FakeEngineStream([]))
        stream = self._next_stream(self.load_streams, "load")

        def received(data: bytes) -> None:
            with self._lock:
                self.loads.append(data)

        if isinstance(archive, Iterator):
            body = SentBody(archive)
            stream.before_first = lambda: received(body.read())
        else:
            received(archive.read())
        return stream

    def remove_image(self, image: str, *, force: bool, no_prune: bool) -> list[JsonDocument]:
        self._record("remove_image", image, force=force, no_prune=no_prune)
        document = self._find(image)
        tag = _normalise_tag(image)
        if tag in document["RepoTags"] and len(document["RepoTags"]) > 1:
            document["RepoTags"].remove(tag)
            if self.emits_events:
                self.emit(image_event("untag", str(document["Id"])))
            return [{"Untagged": tag}]
        if document["_containers"] > 0 and not force:
            raise FailedPreconditionError(
                f"conflict: unable to delete {str(document['Id'])[7:19]} (must be forced)"
                " - image is being used by stopped container 0123456789ab"
            )
        del self.images[str(document["Id"])]
        if self.emits_events:
            self.emit(image_event("untag", str(document["Id"])))
            self.emit(image_event("delete", str(document["Id"])))
        untagged: list[JsonDocument] = [{"Untagged": t} for t in document["RepoTags"]]
        return [*untagged, {"Deleted": document["Id"]}]

    def prune_images(self, filters: Mapping[str, list[str]]) -> JsonDocument:
        self._record("prune_images", {k: list(v) for k, v in filters.items()})
        return dict(self.prune_report)

    def check_auth(self, auth: RegistryAuth) -> JsonDocument:
        self._record("check_auth", auth)
        return dict(self.auth_answer)

    # Registry inspection (issue 16) -----------------------------------------------------

    def inspect_distribution(self, name: str, *, auth: RegistryAuth | None) -> JsonDocument:
        """The document in ``distributions[name]``; a name missing there is the Engine's
        "manifest unknown"; a failure per name in ``distribution_failures``."""
        self._record("inspect_distribution", name, auth=auth)
        failure = self.distribution_failures.get(name)
        if failure is not None:
            raise failure
        if name not in self.distributions:
            raise NotFoundError(f"{name}: manifest unknown: manifest unknown")
        return dict(self.distributions[name])

    def export_images(self, images: Sequence[str], *, chunk_size: int) -> FakeEngineBytes:
        self._record("export_images", list(images), chunk_size=chunk_size)
        if not self.export_archives:
            raise AssertionError("no export archive scripted")
        return self.export_archives.pop(0)

    def disk_usage(self) -> JsonDocument:
        self._record("disk_usage")
        return dict(self.disk_usage_answer)


def _conforms(port: FakeDockerPort) -> DockerPort:
    """Type-checks (under mypy) that the fake satisfies the protocol."""
    return port
