"""Build restrictions: what a build may ask for and the limits it runs under, checked
before the Engine is asked.

- network_mode: only the default network or none. `host` (the host's interfaces, and
  whatever listens on its loopback) and named networks (other containers) are refused.
- Extra hosts, privileged steps and other Engine build parameters cannot be requested:
  the API has no fields for them and the adapter builds the Engine request from the
  validated fields only.
- Build arguments: names matching the deny patterns (secret-looking names by default:
  build arguments are kept in the image's history, readable by anyone who can pull it)
  and, when an allowlist is set, names outside it are refused.
- The Dockerfile's images obey the pull allowlist (see dockerfile_sources), and `ADD`
  from a URL is refused unless allowed: the daemon fetches it from its own network,
  whatever the build's network_mode.
- Memory and CPU limits of the RUN containers and a time limit for the whole build.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

from imagesvc.core.dockerfile_sources import DockerfileSources
from imagesvc.core.errors import PermissionDeniedError, Reason
from imagesvc.core.models import BuildLimits, BuildOptions
from imagesvc.core.registry_policy import RegistryPolicy

ALLOWED_NETWORK_MODES = frozenset({"", "default", "none"})
DEFAULT_BUILD_ARG_DENYLIST = (
    "*PASSWORD*,*PASSWD*,*SECRET*,*TOKEN*,*CREDENTIAL*,*PRIVATE_KEY*,*ACCESS_KEY*,*API_KEY*"
)
_CPU_PERIOD_US = 100_000
_ARG_PATTERN = re.compile(r"[A-Za-z0-9_.*?-]+")


def parse_arg_patterns(text: str) -> tuple[str, ...]:
    """Build-argument name patterns (`*` and `?` wildcards, case-insensitive), separated
    by commas and/or white space."""
    patterns = tuple(item for item in re.split(r"[\s,]+", text) if item)
    for pattern in patterns:
        if not _ARG_PATTERN.fullmatch(pattern):
            raise ValueError(
                f"build argument pattern {pattern!r}: use letters, digits, '_', '-', '.'"
                " and the wildcards '*' and '?'"
            )
    return tuple(pattern.upper() for pattern in patterns)


def build_limits(
    *, memory_bytes: int, cpus: float, cpu_shares: int, cpuset_cpus: str
) -> BuildLimits:
    """Limits from the server's settings; ValueError for impossible values."""
    if memory_bytes < 0 or cpus < 0 or cpu_shares < 0:
        raise ValueError("build memory, CPU and CPU-share limits cannot be negative")
    if memory_bytes and memory_bytes < 6 * 1024 * 1024:
        raise ValueError("the build memory limit must be at least 6 MiB (the Engine's minimum)")
    if cpuset_cpus and not re.fullmatch(r"[0-9]+(?:-[0-9]+)?(?:,[0-9]+(?:-[0-9]+)?)*", cpuset_cpus):
        raise ValueError(f"build cpuset {cpuset_cpus!r}: expected a list like 0-3 or 0,2")
    quota = round(cpus * _CPU_PERIOD_US)
    if cpus and quota < 1000:
        raise ValueError("the build CPU limit must be at least 0.01 CPUs")
    return BuildLimits(
        memory_bytes=memory_bytes,
        cpu_period_us=_CPU_PERIOD_US if quota else 0,
        cpu_quota_us=quota,
        cpu_shares=cpu_shares,
        cpuset_cpus=cpuset_cpus,
    )


@dataclass(frozen=True, slots=True)
class BuildRestrictions:
    limits: BuildLimits = field(default_factory=BuildLimits)
    # Seconds a build may take from its first message to its result (0: no limit).
    timeout_seconds: float = 0.0
    # Upper-case glob patterns of build-argument names; None: any name not denied.
    arg_allowlist: tuple[str, ...] | None = None
    arg_denylist: tuple[str, ...] = ()
    allow_remote_add: bool = False

    def check_options(self, options: BuildOptions) -> None:
        """PERMISSION_DENIED (BUILD_OPTION_NOT_ALLOWED) for a network mode or build
        argument the server does not allow."""
        if options.network_mode not in ALLOWED_NETWORK_MODES:
            raise _not_allowed(
                f"network_mode {options.network_mode!r} is not allowed: builds run on the"
                " default network or with none",
                "network_mode",
            )
        for name in options.build_args:
            self._check_arg(name)

    def _check_arg(self, name: str) -> None:
        upper = name.upper()
        denied = next((p for p in self.arg_denylist if fnmatch.fnmatchcase(upper, p)), None)
        if denied is not None:
            raise _not_allowed(
                f"build argument {name!r} is not allowed (it matches {denied!r}): build"
                " arguments are stored in the image's history, readable by anyone who can"
                " pull the image; do not pass secrets as build arguments",
                "build_args",
            )
        allowlist = self.arg_allowlist
        if allowlist is not None and not any(fnmatch.fnmatchcase(upper, p) for p in allowlist):
            raise _not_allowed(
                f"build argument {name!r} is not in this service's build-argument allowlist",
                "build_args",
            )

    def check_sources(
        self, sources: DockerfileSources, policy: RegistryPolicy, dockerfile: str
    ) -> None:
        """Every image the Dockerfile needs is allowed, and nothing is downloaded by ADD
        unless the server allows it. Checked in Dockerfile order: the first problem wins."""
        images = () if policy.pull.allows_everything else sources.images
        for source in images:
            where = f"{source.instruction} on line {source.line} of {dockerfile}"
            if source.reference is None:
                raise PermissionDeniedError(
                    f"{where}: the registry policy cannot determine the image of"
                    f" {source.text!r}: {source.problem}",
                    reason=Reason.BASE_IMAGE_UNRESOLVED,
                    metadata={"dockerfile": dockerfile[:256], "line": str(source.line)},
                )
            policy.check_pull(source.reference, what=where)
        if not self.allow_remote_add and sources.remote:
            remote = sources.remote[0]
            raise _not_allowed(
                f"{remote.text!r} on line {remote.line} of {dockerfile}: ADD from a URL or"
                " git address is not allowed (the daemon would download it from its own"
                " network); download it before the build and send it in the context",
                "dockerfile",
            )


def _not_allowed(message: str, field: str) -> PermissionDeniedError:
    return PermissionDeniedError(
        message, reason=Reason.BUILD_OPTION_NOT_ALLOWED, metadata={"field": field}
    )
