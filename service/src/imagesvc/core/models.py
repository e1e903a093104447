"""Plain data the core works with; transports convert these to and from their wire types."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class RegistryAuth:
    """Credentials for one registry. Secrets are left out of repr so they never reach a log."""

    username: str = ""
    password: str = field(default="", repr=False)
    server_address: str = ""
    identity_token: str = field(default="", repr=False)
    registry_token: str = field(default="", repr=False)

    @property
    def is_empty(self) -> bool:
        return not (self.username or self.password or self.identity_token or self.registry_token)

    def secrets(self) -> tuple[str, ...]:
        """The secret values, to scrub from any text that leaves the service."""
        return tuple(s for s in (self.password, self.identity_token, self.registry_token) if s)

    def engine_document(self) -> dict[str, str]:
        """The Engine's AuthConfig document (X-Registry-Auth / POST /auth body)."""
        doc = {
            "username": self.username,
            "password": self.password,
            "serveraddress": self.server_address,
            "identitytoken": self.identity_token,
            "registrytoken": self.registry_token,
        }
        return {key: value for key, value in doc.items() if value}


@dataclass(frozen=True, slots=True)
class Healthcheck:
    test: tuple[str, ...] = ()
    interval_ns: int = 0
    timeout_ns: int = 0
    start_period_ns: int = 0
    retries: int = 0


@dataclass(frozen=True, slots=True)
class ImageConfig:
    env: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    healthcheck: Healthcheck | None = None


# weakref_slot: the transport caches each Image's wire message while the Image lives.
@dataclass(frozen=True, slots=True, weakref_slot=True)
class Image:
    id: str
    repo_tags: tuple[str, ...] = ()
    repo_digests: tuple[str, ...] = ()
    parent: str = ""
    created: datetime | None = None
    author: str = ""
    comment: str = ""
    architecture: str = ""
    os: str = ""
    variant: str = ""
    size: int = 0
    config: ImageConfig | None = None
    root_fs_layers: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    containers: int = -1
    docker_version: str = ""
    inspect_json: str = ""


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    id: str
    created: datetime | None
    created_by: str
    size: int
    tags: tuple[str, ...]
    comment: str


@dataclass(frozen=True, slots=True)
class ImageFilter:
    references: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    dangling: bool | None = None
    before: str = ""
    since: str = ""


# weakref_slot: the transport caches a page's wire message while the page lives.
@dataclass(frozen=True, slots=True, weakref_slot=True)
class ImagePage:
    images: tuple[Image, ...]
    next_page_token: str
    total_size: int


@dataclass(frozen=True, slots=True)
class LayerProgress:
    layer_id: str
    state: str
    current: int = 0
    total: int = 0


@dataclass(frozen=True, slots=True)
class TransferProgress:
    layers: tuple[LayerProgress, ...]
    bytes_done: int
    bytes_total: int
    layers_done: int
    layers_total: int
    status: str = ""


@dataclass(frozen=True, slots=True)
class PullResult:
    image_id: str
    digest: str
    reference: str
    status: str


@dataclass(frozen=True, slots=True)
class PushResult:
    digest: str
    size: int
    tag: str
    reference: str


@dataclass(frozen=True, slots=True)
class TagResult:
    id: str
    target: str


@dataclass(frozen=True, slots=True)
class BuildLimits:
    """Resource limits of a build's RUN containers. Set by the server from its
    configuration, never from a request; 0 or "" means no limit."""

    memory_bytes: int = 0
    cpu_period_us: int = 0
    cpu_quota_us: int = 0
    cpu_shares: int = 0
    cpuset_cpus: str = ""


@dataclass(frozen=True, slots=True)
class BuildOptions:
    tags: tuple[str, ...] = ()
    dockerfile: str = ""
    build_args: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    target: str = ""
    no_cache: bool = False
    pull: bool = False
    platform: str = ""
    network_mode: str = ""
    registry_auths: tuple[RegistryAuth, ...] = ()
    # The core sets these from the server's build restrictions before the Engine is asked.
    limits: BuildLimits = field(default_factory=BuildLimits)


@dataclass(frozen=True, slots=True)
class BuildResult:
    image_id: str
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ImportedImage:
    id: str
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ImportResult:
    images: tuple[ImportedImage, ...]


@dataclass(frozen=True, slots=True)
class RemoveResult:
    untagged: tuple[str, ...]
    deleted: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PruneOptions:
    all: bool = False
    labels: tuple[str, ...] = ()
    exclude_labels: tuple[str, ...] = ()
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class PruneResult:
    deleted: tuple[str, ...]
    untagged: tuple[str, ...]
    space_reclaimed_bytes: int


@dataclass(frozen=True, slots=True)
class AuthCheckResult:
    status: str
    identity_token: str = field(default="", repr=False)


# Registry inspection (issue 16) -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Platform:
    os: str = ""
    architecture: str = ""
    variant: str = ""
    os_version: str = ""


@dataclass(frozen=True, slots=True)
class RegistryImage:
    """What a registry serves for a reference: its manifest's (or index's) descriptor."""

    reference: str
    digest: str
    media_type: str
    size_bytes: int
    platforms: tuple[Platform, ...] = ()


class UpdateStatus(StrEnum):
    UP_TO_DATE = "UP_TO_DATE"
    UPDATE_AVAILABLE = "UPDATE_AVAILABLE"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True, slots=True)
class ImageUpdate:
    """Whether one local tag still points at what its registry serves under it."""

    reference: str
    status: UpdateStatus
    local_digests: tuple[str, ...] = ()
    registry_digest: str = ""
    # For UNKNOWN: an error reason (or NO_REGISTRY_DIGEST) and what went wrong.
    reason: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class ImageDiskUsage:
    """One image's disk space. None: the Engine does not know (it reported -1)."""

    id: str
    repo_tags: tuple[str, ...]
    created: datetime | None
    size_bytes: int
    shared_size_bytes: int | None
    containers: int | None

    @property
    def unique_size_bytes(self) -> int | None:
        """The bytes only this image has: what removing it alone frees."""
        if self.shared_size_bytes is None:
            return None
        return self.size_bytes - self.shared_size_bytes


@dataclass(frozen=True, slots=True)
class DiskUsage:
    """The images' disk space, like `docker system df -v`: each layer counted once in
    the total."""

    images: tuple[ImageDiskUsage, ...]
    image_count: int
    active_image_count: int
    # None: the Engine does not report the layers' size (and so nothing is known to free).
    total_size_bytes: int | None
    reclaimable_bytes: int | None
