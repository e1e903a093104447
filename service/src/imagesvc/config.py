"""Settings of a running service, from command-line flags and IMAGESVC_* variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

from imagesvc.core.build_policy import DEFAULT_BUILD_ARG_DENYLIST

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


@dataclass(frozen=True, slots=True)
class Settings:
    grpc_address: str = "0.0.0.0:50051"
    # The REST gateway, /openapi.json, /metrics, /healthz and /readyz.
    http_address: str = "0.0.0.0:8080"
    docker_host: str = DEFAULT_DOCKER_HOST
    # Read timeout of unary Engine calls; streams are bounded by the RPC deadline instead.
    docker_timeout_seconds: float = 60.0
    # Threads running quick blocking docker-py calls (list, inspect, tag, ...).
    docker_workers: int = 16
    # Threads reading Engine streams: the number of pulls, pushes and builds that make
    # progress at once (more wait their turn, without blocking quick calls or health).
    stream_workers: int = 64
    # A pull, push or build whose Engine stream stays silent this long fails with
    # DEADLINE_EXCEEDED (0: no limit). Clients bound whole calls with their deadline.
    stream_idle_timeout_seconds: float = 1800.0
    build_context_max_bytes: int = 512 * 1024 * 1024
    build_context_memory_bytes: int = 4 * 1024 * 1024
    build_spool_dir: str | None = None
    max_message_bytes: int = 8 * 1024 * 1024
    health_interval_seconds: float = 2.0
    # A daemon that does not answer /_ping within this time counts as down.
    health_timeout_seconds: float = 5.0
    # The image gauges are refreshed after this service changed the images, and at
    # least this often (to see changes made by others), by one Engine list call.
    image_stats_interval_seconds: float = 60.0
    shutdown_grace_seconds: float = 20.0
    progress_interval_seconds: float = 0.1
    log_level: str = "INFO"
    # Authentication and TLS (SECURITY.md). Server certificate and key (PEM) turn on TLS
    # on both ports; a client CA turns on mutual TLS (required on gRPC, optional on HTTP).
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_client_ca_file: str | None = None
    # JSON: bearer tokens (stored as SHA-256) -> identity and roles; reloaded on change.
    tokens_file: str | None = None
    # JSON: client-certificate names (CN=, DNS:, URI:, email:) -> identity and roles.
    client_cert_roles_file: str | None = None
    # Without tokens or a client CA the server only listens on loopback, unless this is set.
    insecure_allow_unauthenticated: bool = False
    # Registry policy (SECURITY.md): repository patterns, separated by commas or spaces,
    # for pull sources (PullImage, a build's base images) and for the names images get
    # (TagImage targets, build tags, PushImage). Empty: everything is allowed.
    pull_allowlist: str = ""
    push_allowlist: str = ""
    # Build restrictions: RUN containers' memory (no swap beyond it), CPUs (CFS quota),
    # CPU shares and cpuset (0 / "": no limit); seconds a whole build may take (0: none).
    build_memory_bytes: int = 2 * 1024 * 1024 * 1024
    build_cpus: float = 0.0
    build_cpu_shares: int = 0
    build_cpuset_cpus: str = ""
    build_timeout_seconds: float = 3600.0
    # Build-argument name patterns (* and ?, case-insensitive); "none" for an empty list.
    # Empty allowlist: any name that the denylist does not match.
    build_arg_allowlist: str = ""
    build_arg_denylist: str = DEFAULT_BUILD_ARG_DENYLIST
    # ADD <url> makes the daemon download from its own network, whatever network_mode says.
    build_allow_remote_add: bool = False
    # Limits: concurrent operations (0: no limit) and requests per second per caller
    # (0: no rate limit), with bursts of rate_limit_burst.
    max_concurrent_pulls: int = 8
    max_concurrent_pushes: int = 8
    max_concurrent_builds: int = 4
    rate_limit_per_second: float = 0.0
    rate_limit_burst: int = 50

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then IMAGESVC_<FIELD> variables (and DOCKER_HOST), then overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if env.get("DOCKER_HOST"):
            values["docker_host"] = env["DOCKER_HOST"]
        for field in fields(cls):
            raw = env.get(f"IMAGESVC_{field.name.upper()}")
            if raw is None or raw == "":
                continue
            default = field.default
            try:
                if isinstance(default, bool):
                    values[field.name] = raw.lower() in ("1", "true", "yes", "on")
                elif isinstance(default, int):
                    values[field.name] = int(raw)
                elif isinstance(default, float):
                    values[field.name] = float(raw)
                else:
                    values[field.name] = raw
            except ValueError as exc:
                raise ValueError(f"IMAGESVC_{field.name.upper()}={raw!r}: {exc}") from exc
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)


class SettingsError(ValueError):
    """A setting's value cannot be used (the server refuses to start); the message says
    which setting and what to change."""
