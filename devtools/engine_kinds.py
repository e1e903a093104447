"""The engines the API contract is tested against: one ``EngineKind`` per engine.

A kind has a name (the pytest parameter id, e.g. ``test_x[docker-26-containerd]``, and
the column of docs/engines.md's table), a factory making a stopped engine whose state
lives under a given directory, and a check saying why it cannot run on this machine. Another engine
is one more entry in ``KINDS``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from devtools.podman import PodmanEngine, podman_missing
from devtools.sandbox import (
    DOCKER_KINDS,
    DOCKER_SYSTEM,
    DockerKind,
    Engine,
    SandboxEngine,
    system_dockerd_version,
)

__all__ = ["KINDS", "PODMAN", "EngineKind", "available_kinds", "default_kind", "kinds_named"]


@dataclass(frozen=True)
class EngineKind:
    name: str
    make: Callable[[Path], SandboxEngine]  # base dir -> a stopped engine
    missing: Callable[[], str | None]  # why it cannot run here; None when it can
    # What /version's Server component is called ("Engine" for dockerd) and how its
    # version begins.
    component: str
    version_prefix: str
    # Whose build output the Engine streams: Docker's classic builder ("Step 1/3 : FROM
    # x", "returned a non-zero code: 1") or buildah's ("STEP 1/3: FROM x", "exit status 1").
    buildah: bool = False
    # Whether the Engine's own image list filters follow Docker's rules (Podman 4.3
    # matches no image for two references or two labels; the service does not rely on it).
    dockers_list_filters: bool = True
    # Whether an image list counts the containers of each image (Docker says -1: not
    # counted).
    counts_list_containers: bool = False
    # On the containerd image store an image id is its manifest's digest (not the
    # config's) and a locally built image has no RepoDigests of a registry's.
    containerd_store: bool = False

    def __str__(self) -> str:
        return self.name


_DOCKER_KIND_OF = {kind.name: kind for kind in DOCKER_KINDS}


def _docker(kind: DockerKind) -> EngineKind:
    return EngineKind(
        name=kind.name,
        make=lambda base_dir: Engine(base_dir, kind=kind),
        missing=kind.missing,
        component="Engine",
        version_prefix=kind.version_prefix,
        containerd_store=kind.containerd_store,
    )


# Debian 12's podman 4.3.1, its Docker-compatible API (devtools/podman.py).
PODMAN = EngineKind(
    name="podman",
    make=PodmanEngine,
    missing=podman_missing,
    component="Podman Engine",
    version_prefix="4.",
    buildah=True,
    dockers_list_filters=False,
    counts_list_containers=True,
)

KINDS: tuple[EngineKind, ...] = (*(_docker(kind) for kind in DOCKER_KINDS), PODMAN)


@functools.cache
def default_kind() -> EngineKind:
    """The kind of the sandbox's own engine, the system's dockerd, on which every test
    outside the matrix runs: Engine 20.10 on Debian 12, Engine 26 on Debian 13. In the
    matrix, that kind's tests use the sandbox's engine instead of starting another."""
    version = system_dockerd_version() or ""
    for kind in KINDS:
        docker_kind = _DOCKER_KIND_OF.get(kind.name)
        if (
            docker_kind is not None
            and not docker_kind.containerd_store
            and version.startswith(docker_kind.version_prefix)
        ):
            return kind
    return EngineKind(
        name=f"docker-{version or 'system'}",
        make=lambda base_dir: Engine(base_dir, kind=DOCKER_SYSTEM),
        missing=DOCKER_SYSTEM.missing,
        component="Engine",
        version_prefix=version,
    )


def kinds_named(names: Sequence[str]) -> list[EngineKind]:
    """The kinds of these names, in ``KINDS`` order; ValueError naming any unknown one."""
    by_name = {kind.name: kind for kind in KINDS}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ValueError(f"unknown engine kind {', '.join(unknown)}; known: {', '.join(by_name)}")
    return [kind for kind in KINDS if kind.name in names]


def available_kinds() -> tuple[list[EngineKind], dict[str, str]]:
    """The kinds that can run here, and why each other one cannot."""
    available, unavailable = [], {}
    for kind in KINDS:
        reason = kind.missing()
        if reason is None:
            available.append(kind)
        else:
            unavailable[kind.name] = reason
    return available, unavailable
