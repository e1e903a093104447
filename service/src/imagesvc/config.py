"""Settings of a running service, from command-line flags and IMAGESVC_* variables.

Each setting is defined once, as a field of `Settings`: its name (which gives the
variable IMAGESVC_<NAME> and the flag --<name>), its type, its default, and in its
metadata the help text and the section of docs/settings.md it belongs to. The
`imagesvc serve` parser (cli.py) and docs/settings.md (devtools/settings_doc.py) are
built from these definitions.
"""

from __future__ import annotations

import enum
import os
from dataclasses import Field, dataclass, field, fields
from typing import Any, TypeVar

from imagesvc.core.build_policy import DEFAULT_BUILD_ARG_DENYLIST

T = TypeVar("T")
_METADATA_KEY = "imagesvc.setting"
_ENV_PREFIX = "IMAGESVC_"
_KIB = 1024


class Section(enum.Enum):
    """Where a setting is documented; a section is also a group of `imagesvc serve` flags."""

    SERVICE = "Service"
    SECURITY = "Authentication and TLS"
    POLICY = "Registry policy, build restrictions and limits"
    FLEET = "Fleet"


@dataclass(frozen=True, slots=True)
class SettingDoc:
    # Markdown: `code` spans are shown as code in docs/settings.md, as plain text in --help.
    help: str
    section: Section
    # False: only the variable sets it (tuning rarely needed at the command line).
    has_flag: bool = True
    # How a default that says little by itself (None, "", a long list) is shown.
    shown_default: str | None = None
    # A variable read before IMAGESVC_<NAME>, e.g. DOCKER_HOST as the docker CLI reads it.
    fallback_env: str | None = None


def setting(
    default: T,
    help_text: str,
    section: Section = Section.SERVICE,
    *,
    has_flag: bool = True,
    shown_default: str | None = None,
    fallback_env: str | None = None,
) -> T:
    """A field of `Settings` with its documentation."""
    doc = SettingDoc(help_text, section, has_flag, shown_default, fallback_env)
    return field(default=default, metadata={_METADATA_KEY: doc})


@dataclass(frozen=True, slots=True)
class Settings:
    grpc_address: str = setting("0.0.0.0:50051", "gRPC listen address, host:port")
    http_address: str = setting(
        "0.0.0.0:8080",
        "HTTP listen address, host:port: REST gateway, `/metrics`, `/healthz`, `/readyz`",
    )
    docker_host: str = setting(
        "unix:///var/run/docker.sock",
        "Docker daemon (`DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH` for a TLS daemon, as for"
        " the docker CLI; over TLS or ssh:// ExportImages reads the archive through docker-py"
        " in a thread, slower than on a unix socket or plain TCP)",
        fallback_env="DOCKER_HOST",
    )
    docker_timeout_seconds: float = setting(
        60.0,
        "read timeout of unary Engine calls (streams are bounded by the RPC deadline instead)",
        has_flag=False,
    )
    docker_workers: int = setting(
        16, "threads running quick Engine calls (list, inspect, tag, ...)"
    )
    stream_workers: int = setting(
        64,
        "threads reading pull, push and build streams: how many make progress at once; more"
        " wait their turn, without blocking quick calls or health",
        has_flag=False,
    )
    stream_idle_timeout_seconds: float = setting(
        1800.0,
        "a pull, push or build whose Engine stream stays silent this long ends with"
        " `DEADLINE_EXCEEDED` (0: no limit; clients bound whole calls with their deadline)",
        has_flag=False,
    )
    build_context_max_bytes: int = setting(
        512 * _KIB**2, "largest build context accepted, as sent and as unpacked"
    )
    build_context_memory_bytes: int = setting(
        4 * _KIB**2,
        "build contexts up to this size are kept in memory, larger ones are spooled to disk",
        has_flag=False,
    )
    build_spool_dir: str | None = setting(
        None, "where build contexts and image archives are spooled", shown_default="`$TMPDIR`"
    )
    import_max_bytes: int = setting(
        4 * _KIB**3, "largest image archive ImportImages accepts, as sent and as unpacked"
    )
    # The REST gateway takes the same limit, so both transports accept the same requests.
    max_message_bytes: int = setting(
        8 * _KIB**2,
        "largest gRPC message, REST JSON body and message of a REST JSON stream (build"
        " context chunks are sent in smaller pieces)",
        has_flag=False,
    )
    health_interval_seconds: float = setting(
        2.0, "how often the Docker daemon is pinged", has_flag=False
    )
    health_timeout_seconds: float = setting(
        5.0,
        "a daemon that does not answer its ping within this time counts as down",
        has_flag=False,
    )
    image_stats_interval_seconds: float = setting(
        60.0,
        "the image gauges are refreshed at least this often (to see changes made by others),"
        " and right after this service changed the images",
        has_flag=False,
    )
    disable_image_index: bool = setting(
        False,
        "answer every read (ListImages, GetImage, GetImageHistory) from the Docker daemon"
        " instead of the live image index kept in memory from the daemon's events",
    )
    image_index_reconcile_seconds: float = setting(
        300.0,
        "how often the image index checks itself against a full image list (it also does"
        " on every reconnection to the daemon); what that corrects is counted in"
        " `imagesvc_image_index_corrections_total`",
        has_flag=False,
    )
    shutdown_grace_seconds: float = setting(20.0, "time running RPCs get on SIGTERM")
    # Connection bounds of both ports (docs/operations.md#connections).
    grpc_max_connection_idle_seconds: float = setting(
        300.0, "a gRPC connection without calls this long is closed (GOAWAY; 0: never)"
    )
    grpc_max_connection_age_seconds: float = setting(
        1800.0,
        "a gRPC connection this old is asked to go away (GOAWAY), so that clients reconnect"
        " and spread over the replicas behind a Service (0: never)",
    )
    grpc_max_connection_age_grace_seconds: float = setting(
        3600.0,
        "calls still running on a connection past its age get this long before it is closed"
        " (the default build timeout: no bounded call is cut; 0: no limit)",
        has_flag=False,
    )
    grpc_min_ping_interval_seconds: float = setting(
        30.0,
        "least time between keepalive pings a client may send; faster ones, and any ping on a"
        " connection without calls more often than every 2 hours, get GOAWAY `too_many_pings`",
        has_flag=False,
    )
    http_header_timeout_seconds: float = setting(
        10.0,
        "an HTTP connection whose request line and headers do not all arrive within this time"
        " (from its opening, or from the end of its previous response) is closed (0: no limit)",
    )
    http_keepalive_timeout_seconds: float = setting(
        65.0,
        "an idle keep-alive HTTP connection is closed after this long (longer than the usual"
        " 60 s of load balancers, which should close first)",
        has_flag=False,
    )
    http_max_connections: int = setting(
        1000,
        "open connections of the HTTP port; over it, new ones are closed at once (0: no limit)",
    )
    transfer_stall_timeout_seconds: float = setting(
        300.0,
        "a pull or push that moves no byte and changes no layer for this long ends with"
        " `DEADLINE_EXCEEDED` (`TRANSFER_STALLED`); one still moving, however slowly, is never"
        " cut (0: no limit)",
        Section.POLICY,
    )
    progress_interval_seconds: float = setting(
        0.1, "least time between two progress messages of one layer", has_flag=False
    )
    log_level: str = setting("INFO", "`DEBUG`, `INFO`, `WARNING` or `ERROR`")
    # Authentication and TLS (SECURITY.md).
    tls_cert_file: str | None = setting(
        None,
        "server certificate (PEM); with its key, TLS on both ports",
        Section.SECURITY,
        shown_default="none",
    )
    tls_key_file: str | None = setting(
        None, "private key of `--tls-cert-file` (PEM)", Section.SECURITY, shown_default="none"
    )
    tls_client_ca_file: str | None = setting(
        None,
        "CA of client certificates (PEM): turns on mutual TLS (required on gRPC, optional on HTTP)",
        Section.SECURITY,
        shown_default="none",
    )
    tokens_file: str | None = setting(
        None,
        "JSON bearer tokens (stored as SHA-256) -> identity and roles; reloaded on change",
        Section.SECURITY,
        shown_default="none",
    )
    client_cert_roles_file: str | None = setting(
        None,
        "JSON client-certificate names (`CN=`, `DNS:`, `URI:`, `email:`) -> identity and roles;"
        " reloaded on change",
        Section.SECURITY,
        shown_default="none",
    )
    insecure_allow_unauthenticated: bool = setting(
        False,
        "listen beyond loopback without authentication (only behind something that"
        " authenticates callers); without tokens or a client CA the server only listens on"
        " loopback",
        Section.SECURITY,
    )
    # Registry policy, build restrictions and limits (SECURITY.md).
    pull_allowlist: str = setting(
        "",
        "repository patterns images may be pulled from (PullImage, a build's base images),"
        " separated by commas or spaces, e.g. `127.0.0.1:5000/**,docker.io/library/*`",
        Section.POLICY,
        shown_default="any, with a warning",
    )
    push_allowlist: str = setting(
        "",
        "repository patterns images may be tagged as, built as and pushed to",
        Section.POLICY,
        shown_default="any, with a warning",
    )
    build_memory_bytes: int = setting(
        2 * _KIB**3,
        "memory of each `RUN` step of a build, no swap beyond it (0: no limit; at least 6 MiB)",
        Section.POLICY,
    )
    build_cpus: float = setting(
        0.0, "CPUs of each `RUN` step (CFS quota over a 100 ms period; 0: no limit)", Section.POLICY
    )
    build_cpu_shares: int = setting(
        0, "relative CPU weight of `RUN` steps (0: the Engine's default)", Section.POLICY
    )
    build_cpuset_cpus: str = setting(
        "", "CPUs `RUN` steps may use, e.g. `0-1`", Section.POLICY, shown_default="any"
    )
    build_timeout_seconds: float = setting(
        3600.0, "time a whole build may take (0: no limit)", Section.POLICY
    )
    build_arg_allowlist: str = setting(
        "",
        "build-argument name patterns accepted (`*` and `?`, case-insensitive; `none` for none)",
        Section.POLICY,
        shown_default="any name the denylist does not match",
    )
    build_arg_denylist: str = setting(
        DEFAULT_BUILD_ARG_DENYLIST,
        "build-argument name patterns refused (`*` and `?`, case-insensitive; `none` for none)",
        Section.POLICY,
        shown_default="secret-looking names",
    )
    build_allow_remote_add: bool = setting(
        False,
        "let `ADD` download URLs and git repositories (the daemon fetches them from its own"
        " network, whatever the build's network mode)",
        Section.POLICY,
    )
    max_concurrent_pulls: int = setting(8, "pulls at once (0: no limit)", Section.POLICY)
    max_concurrent_pushes: int = setting(8, "pushes at once (0: no limit)", Section.POLICY)
    max_concurrent_builds: int = setting(4, "builds at once (0: no limit)", Section.POLICY)
    max_queued_calls: int = setting(
        64,
        "pulls, pushes and builds (each) that wait for a slot over their limit (0: none wait)",
        Section.POLICY,
    )
    max_queue_wait_seconds: float = setting(
        60.0,
        "longest wait for a slot over a concurrency limit (0: none wait)",
        Section.POLICY,
    )
    rate_limit_per_second: float = setting(
        0.0, "requests per second per caller (0: no rate limit)", Section.POLICY
    )
    rate_limit_burst: int = setting(50, "requests at once per caller", Section.POLICY)
    # The fleet (docs/api.md#fleet).
    node_name: str | None = setting(
        None,
        "this node's name in FleetService answers",
        Section.FLEET,
        shown_default="`$NODE_NAME` (the downward API), else the host name",
        fallback_env="NODE_NAME",
    )
    fleet_peers: str = setting(
        "",
        "the other instances: `dns:///NAME:PORT` (every A/AAAA record of NAME, e.g. a headless"
        " Service, re-resolved on every fleet call; `dns://SERVER:PORT/NAME:PORT` asks that DNS"
        " server) or a comma-separated `host:port` list; this node's own address may be among"
        " them",
        Section.FLEET,
        shown_default="none: the fleet is this node",
    )
    fleet_address: str | None = setting(
        None,
        "this node's gRPC address as its peers know it, `host:port` (a peer at this address is"
        " answered locally, never called)",
        Section.FLEET,
        shown_default="the gRPC listen address, or `$POD_IP` with its port when it listens on"
        " every address",
    )
    fleet_token_file: str | None = setting(
        None,
        "the bearer token this server presents to its peers (one line; it needs the `fleet` role"
        " there); never the caller's",
        Section.FLEET,
        shown_default="none",
    )
    fleet_tls_ca_file: str | None = setting(
        None,
        "CA of the peers' server certificates (PEM): peers are called over TLS, with this"
        " server's own certificate as client certificate when it has one",
        Section.FLEET,
        shown_default="none: plain gRPC",
    )
    fleet_tls_server_name: str | None = setting(
        None,
        "name the peers' server certificates are checked against, instead of the address"
        " each peer is dialled at (a pod IP, which certificates rarely name): e.g. the"
        " headless Service's DNS name, when every pod's certificate carries it",
        Section.FLEET,
        shown_default="none: the peer's address",
    )
    fleet_node_timeout_seconds: float = setting(
        5.0, "time each peer gets to answer a fleet call", Section.FLEET
    )
    fleet_parallelism: int = setting(16, "peers called at once by a fleet call", Section.FLEET)
    fleet_pull_timeout_seconds: float = setting(
        600.0,
        "time each node gets for a fleet pull (PullImageOnNodes), every retry included, when"
        " the request sets none",
        Section.FLEET,
    )
    fleet_dns_cache_seconds: float = setting(
        5.0, "how long a DNS answer for `--fleet-peers` is reused", Section.FLEET, has_flag=False
    )
    keep_images_file: str | None = setting(
        None,
        "references this node keeps present (kube-fledged's ImageCache, per node): one per"
        " line, `#` comments, blank lines ignored; pulled at start and whenever removed,"
        " pulled again when the tag moves at its registry, never pruned (a prune that could"
        " remove one is refused); pulled anonymously (no registry credentials); re-read when"
        " it changes (a ConfigMap)",
        Section.FLEET,
        shown_default="none",
    )
    keep_images_check_interval_seconds: float = setting(
        300.0,
        "how often each kept tag is resolved at its registry (pulled again when it moved)",
        Section.FLEET,
    )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then variables (a fallback such as DOCKER_HOST, then IMAGESVC_<FIELD>),
        then overrides (None: not given)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in SETTINGS:
            for variable in spec.variables():
                if raw := env.get(variable):
                    values[spec.name] = spec.parse(raw, variable)
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)


@dataclass(frozen=True, slots=True)
class SettingSpec:
    """One setting as the parser and the docs see it."""

    name: str
    default: Any
    doc: SettingDoc

    @property
    def kind(self) -> type:
        """str, int, float or bool: what a value is parsed as (None defaults are strings)."""
        return str if self.default is None else type(self.default)

    @property
    def env(self) -> str:
        return _ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str | None:
        return "--" + self.name.replace("_", "-") if self.doc.has_flag else None

    def variables(self) -> tuple[str, ...]:
        """The variables read, the one that wins last."""
        fallback = self.doc.fallback_env
        return (fallback, self.env) if fallback else (self.env,)

    def parse(self, raw: str, variable: str) -> Any:
        try:
            if self.kind is bool:
                return raw.lower() in ("1", "true", "yes", "on")
            return self.kind(raw)
        except ValueError as exc:
            raise ValueError(f"{variable}={raw!r}: {exc}") from exc

    def plain_help(self) -> str:
        return self.doc.help.replace("`", "")

    def shown_default(self) -> str:
        """The default as people read it: 2 GiB rather than 2147483648, off, 0.1."""
        if self.doc.shown_default is not None:
            return self.doc.shown_default
        value = self.default
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, int) and self.name.endswith("_bytes") and value:
            for unit, size in (("GiB", _KIB**3), ("MiB", _KIB**2), ("KiB", _KIB)):
                if value % size == 0:
                    return f"{value // size} {unit}"
        if isinstance(value, float):
            return f"{value:g}"
        return str(value)


def _spec(item: Field[Any]) -> SettingSpec:
    doc = item.metadata.get(_METADATA_KEY)
    if not isinstance(doc, SettingDoc):
        raise TypeError(f"Settings.{item.name} is not defined with setting()")
    return SettingSpec(item.name, item.default, doc)


# Every setting, in the order of Settings: the order of the flags and of the docs.
SETTINGS: tuple[SettingSpec, ...] = tuple(_spec(item) for item in fields(Settings))


class SettingsError(ValueError):
    """A setting's value cannot be used (the server refuses to start); the message says
    which setting and what to change."""
