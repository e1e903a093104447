"""The registry policy, build restrictions and limits of a server, from its settings
(SECURITY.md, "Registry policy, build restrictions and limits"): built once, refused
when unusable, and summarised in one start-up log line."""

from __future__ import annotations

import logging

from imagesvc.config import Settings
from imagesvc.core.build_policy import BuildRestrictions, build_limits, parse_arg_patterns
from imagesvc.core.limits import ConcurrencyLimit, Limits, RateLimiter
from imagesvc.core.registry_policy import RegistryPolicy
from imagesvc.server_security import SecuritySettingsError

log = logging.getLogger(__name__)

# In the build-argument lists, this word alone means "no patterns" (an empty variable
# counts as unset, so it cannot say that).
NO_PATTERNS = "none"


def _arg_patterns(text: str) -> tuple[str, ...]:
    return () if text.strip().lower() == NO_PATTERNS else parse_arg_patterns(text)


class ServerPolicy:
    """`registry`, `build` and `limits` for the core; SecuritySettingsError when a
    setting cannot be used."""

    def __init__(self, settings: Settings) -> None:
        try:
            self.registry = RegistryPolicy.from_text(
                settings.pull_allowlist, settings.push_allowlist
            )
            allowlist = _arg_patterns(settings.build_arg_allowlist)
            self.build = BuildRestrictions(
                limits=build_limits(
                    memory_bytes=settings.build_memory_bytes,
                    cpus=settings.build_cpus,
                    cpu_shares=settings.build_cpu_shares,
                    cpuset_cpus=settings.build_cpuset_cpus,
                ),
                timeout_seconds=settings.build_timeout_seconds,
                arg_allowlist=allowlist or None,
                arg_denylist=_arg_patterns(settings.build_arg_denylist),
                allow_remote_add=settings.build_allow_remote_add,
            )
            if settings.build_timeout_seconds < 0:
                raise ValueError("the build time limit cannot be negative")

            def limit(operation: str, maximum: int) -> ConcurrencyLimit:
                return ConcurrencyLimit(
                    operation,
                    maximum,
                    max_queued=settings.max_queued_calls,
                    max_wait_seconds=settings.max_queue_wait_seconds,
                )

            self.limits = Limits(
                pulls=limit("pull", settings.max_concurrent_pulls),
                pushes=limit("push", settings.max_concurrent_pushes),
                builds=limit("build", settings.max_concurrent_builds),
                rate=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
            )
        except ValueError as exc:
            raise SecuritySettingsError(str(exc)) from exc

    def log_startup(self) -> None:
        """One line with the policy; a WARNING for each allowlist that allows everything."""
        registry, build, limits = self.registry, self.build, self.limits
        for name, allowlist, flag in (
            ("pull", registry.pull, "--pull-allowlist"),
            ("tag/push", registry.push, "--push-allowlist"),
        ):
            if allowlist.allows_everything:
                log.warning(
                    f"registry policy: no {name} allowlist, every registry and repository is"
                    f" allowed; set {flag} (SECURITY.md)"
                )
        log.info(
            "registry policy, build restrictions and limits",
            extra={
                "pull_allowlist": registry.pull.describe(),
                "push_allowlist": registry.push.describe(),
                "build_memory_bytes": build.limits.memory_bytes,
                "build_cpu_quota_us": build.limits.cpu_quota_us,
                "build_timeout_seconds": build.timeout_seconds,
                "build_arg_denylist": ",".join(build.arg_denylist),
                "max_concurrent_pulls": limits.pulls.maximum,
                "max_concurrent_pushes": limits.pushes.maximum,
                "max_concurrent_builds": limits.builds.maximum,
                "max_queued_calls": limits.builds.max_queued,
                "max_queue_wait_seconds": limits.builds.max_wait_seconds,
                "rate_limit_per_second": limits.rate.per_second,
            },
        )
