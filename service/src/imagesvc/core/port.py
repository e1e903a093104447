"""The seam between the core and the Docker Engine (like httpx's transport base).

The real implementation is imagesvc.engine.docker_adapter; unit tests use a fake. Every
method blocks, returns the Engine's own JSON documents, and raises only core
errors (imagesvc.core.errors). The core runs these calls in a bounded thread pool.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any, Protocol

from imagesvc.core.models import BuildLimits, RegistryAuth

JsonDocument = dict[str, Any]


class EngineStream(Protocol):
    """A streamed Engine response (pull, push, build): decoded JSON messages. An error
    the Engine reports inside the stream is raised as its core error, never yielded.

    `close()` may be called from another thread while a read blocks; it aborts the
    HTTP response, which makes the daemon stop the work, and ends the iteration.
    """

    def __iter__(self) -> Iterator[JsonDocument]: ...

    def __next__(self) -> JsonDocument: ...

    def close(self) -> None: ...


class EngineBytes(Protocol):
    """A streamed raw Engine response (an image archive), read chunk by chunk on the
    event loop.

    `read()` sends the request on its first call and returns the next chunk, b"" at the
    end; an Engine failure is raised as its core error. A read is awaited to its end
    before the next one starts. `close()` closes the connection at once, which makes the
    daemon stop the work, also while a read is pending (that read may then never end: it
    is cancelled); later reads return b"".
    """

    async def read(self) -> bytes: ...

    def close(self) -> None: ...


class EventStream(EngineStream, Protocol):
    """The Engine's event stream (`GET /events`): decoded JSON events, one per read,
    for as long as the connection lasts; it ends (StopIteration) when the Engine
    closes it and raises a core error when the connection fails.

    `open()` sends the request and returns once the Engine has answered, i.e. once the
    subscription exists: what changes after it returns is in the stream. `close()` may
    be called from another thread at any time, also while `open()` or a read blocks.
    """

    def open(self) -> None: ...


class BuildRequest(Protocol):
    """What the adapter needs to start a build (validated by the core), read only."""

    @property
    def tags(self) -> Sequence[str]: ...
    @property
    def dockerfile(self) -> str: ...
    @property
    def build_args(self) -> Mapping[str, str]: ...
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def target(self) -> str: ...
    @property
    def no_cache(self) -> bool: ...
    @property
    def pull(self) -> bool: ...
    @property
    def platform(self) -> str: ...
    @property
    def network_mode(self) -> str: ...
    @property
    def registry_auths(self) -> Sequence[RegistryAuth]: ...
    @property
    def limits(self) -> BuildLimits: ...


class DockerPort(Protocol):
    def ping(self) -> bool:
        """True when the daemon answers /_ping; never raises."""
        ...

    def version(self) -> JsonDocument: ...

    def list_images(self, *, all: bool, filters: Mapping[str, list[str]]) -> list[JsonDocument]:
        """One GET /images/json call."""
        ...

    def inspect_image(self, image: str) -> JsonDocument: ...

    def image_history(self, image: str) -> list[JsonDocument]: ...

    def pull(
        self, name: str, tag_or_digest: str, *, platform: str, auth: RegistryAuth | None
    ) -> EngineStream: ...

    def push(self, name: str, tag: str, *, auth: RegistryAuth | None) -> EngineStream: ...

    def tag(self, source: str, repository: str, tag: str) -> None: ...

    def build(
        self, context: IO[bytes] | Iterator[bytes], *, gzip: bool, request: BuildRequest
    ) -> EngineStream:
        """POST /build with this tar (a file, or an iterator of pieces sent as they come)."""
        ...

    def load(self, archive: IO[bytes] | Iterator[bytes]) -> EngineStream:
        """POST /images/load with this plain tar (read as sent, never held whole)."""
        ...

    def remove_image(self, image: str, *, force: bool, no_prune: bool) -> list[JsonDocument]: ...

    def prune_images(self, filters: Mapping[str, list[str]]) -> JsonDocument: ...

    def export_images(self, images: Sequence[str], *, chunk_size: int) -> EngineBytes:
        """GET /images/get of these images (`docker save`), not sent yet (the first
        read sends it); chunks of about `chunk_size` bytes."""
        ...

    def disk_usage(self) -> JsonDocument:
        """GET /system/df for images (`docker system df -v`), in the Engine's own shape."""
        ...

    def check_auth(self, auth: RegistryAuth) -> JsonDocument:
        """POST /auth with these credentials; never stores them."""
        ...

    def image_events(self, *, since: str = "") -> EventStream:
        """GET /events for image events only, not sent yet (`open()` sends it); `since`
        (Unix seconds, fraction allowed) asks for the events the Engine still holds from
        then on as well."""
        ...

    # Registry inspection (issue 16) -----------------------------------------------------

    def inspect_distribution(self, name: str, *, auth: RegistryAuth | None) -> JsonDocument:
        """GET /distribution/{name}/json: the descriptor and platforms the registry serves
        for `name` (with its tag or digest), with these credentials; nothing is pulled."""
        ...
