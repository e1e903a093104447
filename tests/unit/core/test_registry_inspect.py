"""InspectRegistryImage and CheckImageUpdates in the core, on the fake port."""

from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from imagesvc.core.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    Reason,
    UnauthenticatedError,
    UnavailableError,
)
from imagesvc.core.image_core import UPDATE_CHECKS_AT_ONCE, CoreSettings, ImageCore
from imagesvc.core.models import Platform, RegistryAuth, UpdateStatus
from imagesvc.core.port import JsonDocument
from imagesvc.core.registry_images import NO_REGISTRY_DIGEST
from imagesvc.core.registry_policy import RegistryPolicy
from tests.unit.aio import run
from tests.unit.fakes import FakeDockerPort, engine_image

REGISTRY = "127.0.0.1:5000"
OLD = "sha256:" + "a" * 64
NEW = "sha256:" + "b" * 64
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
AUTH = RegistryAuth(username="u", password="s3cret-pw", server_address=REGISTRY)


def distribution(
    digest: str, media_type: str = INDEX_TYPE, platforms: object = None
) -> JsonDocument:
    return {
        "Descriptor": {"mediaType": media_type, "digest": digest, "size": 491},
        "Platforms": platforms,
    }


def test_inspect_returns_the_engines_descriptor_and_platforms(
    core: ImageCore, port: FakeDockerPort
) -> None:
    port.distributions[f"{REGISTRY}/team/app:1"] = distribution(
        NEW,
        platforms=[
            {"os": "linux", "architecture": "amd64"},
            {"os": "linux", "architecture": "arm64", "variant": "v8"},
            {"os": "windows", "architecture": "amd64", "os.version": "10.0.17763.1"},
        ],
    )
    found = run(core.inspect_registry_image(f"{REGISTRY}/team/app:1", auth=AUTH))
    assert found.reference == f"{REGISTRY}/team/app:1"
    assert (found.digest, found.media_type, found.size_bytes) == (NEW, INDEX_TYPE, 491)
    assert found.platforms == (
        Platform("linux", "amd64"),
        Platform("linux", "arm64", "v8"),
        Platform("windows", "amd64", os_version="10.0.17763.1"),
    )
    [call] = port.calls_to("inspect_distribution")
    assert call.args == (f"{REGISTRY}/team/app:1",)
    assert call.kwargs == {"auth": AUTH}


def test_inspect_defaults_to_latest_and_takes_null_platforms(
    core: ImageCore, port: FakeDockerPort
) -> None:
    # The containerd image store answers "Platforms": null for a single manifest.
    port.distributions["busybox:latest"] = distribution(
        OLD, "application/vnd.oci.image.manifest.v1+json"
    )
    found = run(core.inspect_registry_image("busybox", auth=None))
    assert found.reference == "docker.io/library/busybox:latest"
    assert found.platforms == ()


def test_inspect_is_refused_by_the_pull_allowlist_before_the_engine(
    port: FakeDockerPort, executor: ThreadPoolExecutor, settings: CoreSettings
) -> None:
    policy = RegistryPolicy.from_text(f"{REGISTRY}/team/**", "")
    core = ImageCore(port, executor, dataclasses.replace(settings, registry_policy=policy))
    with pytest.raises(PermissionDeniedError) as caught:
        run(core.inspect_registry_image(f"{REGISTRY}/other/app:1", auth=None))
    assert caught.value.reason is Reason.REGISTRY_NOT_ALLOWED
    assert port.calls == []


def test_inspect_of_a_malformed_reference_is_invalid(core: ImageCore, port: FakeDockerPort) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        run(core.inspect_registry_image("UPPER/Case:1", auth=None))
    assert caught.value.reason is Reason.INVALID_REFERENCE
    assert port.calls == []


def test_inspect_failure_never_echoes_the_password(core: ImageCore, port: FakeDockerPort) -> None:
    name = f"{REGISTRY}/team/app:1"
    port.distribution_failures[name] = UnauthenticatedError(
        f"unauthorized: password {AUTH.password} rejected", reason=Reason.REGISTRY_UNAUTHENTICATED
    )
    with pytest.raises(UnauthenticatedError) as caught:
        run(core.inspect_registry_image(name, auth=AUTH))
    assert AUTH.password not in caught.value.message
    assert caught.value.reason is Reason.REGISTRY_UNAUTHENTICATED


def _local(port: FakeDockerPort, n: int, tag: str, digests: tuple[str, ...]) -> None:
    port.add(engine_image(n, tags=[tag], digests=digests))


def test_update_check_compares_repo_digests_with_the_registry(
    core: ImageCore, port: FakeDockerPort
) -> None:
    _local(port, 1, f"{REGISTRY}/team/a:1", (f"{REGISTRY}/team/a@{OLD}",))
    _local(port, 2, f"{REGISTRY}/team/b:1", (f"{REGISTRY}/team/b@{NEW}", f"{REGISTRY}/x/y@{OLD}"))
    _local(port, 3, f"{REGISTRY}/team/c:1", ())  # built here, never pushed
    port.distributions[f"{REGISTRY}/team/a:1"] = distribution(NEW)
    port.distributions[f"{REGISTRY}/team/b:1"] = distribution(NEW)
    port.distributions[f"{REGISTRY}/team/c:1"] = distribution(NEW)
    a, b, c = run(
        core.check_image_updates(
            [f"{REGISTRY}/team/a:1", f"{REGISTRY}/team/b:1", f"{REGISTRY}/team/c:1"],
            registry_auths=[],
        )
    )
    assert (a.status, a.local_digests, a.registry_digest) == (
        UpdateStatus.UPDATE_AVAILABLE,
        (OLD,),
        NEW,
    )
    # Only the digests of the tag's own repository count.
    assert (b.status, b.local_digests) == (UpdateStatus.UP_TO_DATE, (NEW,))
    assert (c.status, c.reason, c.registry_digest) == (UpdateStatus.UNKNOWN, NO_REGISTRY_DIGEST, "")
    # Nothing to compare c with: its registry is not asked.
    asked = [call.args[0] for call in port.calls_to("inspect_distribution")]
    assert sorted(asked) == [f"{REGISTRY}/team/a:1", f"{REGISTRY}/team/b:1"]


def test_update_check_reports_each_failure_on_its_image(
    port: FakeDockerPort, executor: ThreadPoolExecutor, settings: CoreSettings
) -> None:
    policy = RegistryPolicy.from_text(f"{REGISTRY}/team/**, 127.0.0.1:1/**", "")
    core = ImageCore(port, executor, dataclasses.replace(settings, registry_policy=policy))
    _local(port, 1, f"{REGISTRY}/team/ok:1", (f"{REGISTRY}/team/ok@{OLD}",))
    _local(port, 2, f"{REGISTRY}/team/gone:1", (f"{REGISTRY}/team/gone@{OLD}",))
    _local(port, 3, "127.0.0.1:1/down/app:1", (f"127.0.0.1:1/down/app@{OLD}",))
    _local(port, 4, f"{REGISTRY}/other/app:1", (f"{REGISTRY}/other/app@{OLD}",))
    port.distributions[f"{REGISTRY}/team/ok:1"] = distribution(OLD)
    port.distribution_failures["127.0.0.1:1/down/app:1"] = UnavailableError(
        'Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused',
        reason=Reason.REGISTRY_UNAVAILABLE,
    )
    updates = run(
        core.check_image_updates(
            [
                f"{REGISTRY}/team/ok:1",
                f"{REGISTRY}/team/gone:1",
                "127.0.0.1:1/down/app:1",
                f"{REGISTRY}/other/app:1",
                f"{REGISTRY}/team/missing:1",
            ],
            registry_auths=[],
        )
    )
    assert [(u.status, u.reason) for u in updates] == [
        (UpdateStatus.UP_TO_DATE, ""),
        (UpdateStatus.UNKNOWN, Reason.IMAGE_NOT_FOUND),
        (UpdateStatus.UNKNOWN, Reason.REGISTRY_UNAVAILABLE),
        (UpdateStatus.UNKNOWN, Reason.REGISTRY_NOT_ALLOWED),
        (UpdateStatus.UNKNOWN, Reason.IMAGE_NOT_FOUND),  # no such local image
    ]
    assert "connection refused" in updates[2].message
    assert updates[2].local_digests == (OLD,)
    # Neither the refused repository nor one of a missing local image was asked.
    asked = [call.args[0] for call in port.calls_to("inspect_distribution")]
    assert sorted(asked) == sorted(
        [f"{REGISTRY}/team/ok:1", f"{REGISTRY}/team/gone:1", "127.0.0.1:1/down/app:1"]
    )


def test_update_check_sends_each_registry_its_own_credentials(
    core: ImageCore, port: FakeDockerPort
) -> None:
    other = RegistryAuth(username="o", password="other-pw", server_address="127.0.0.1:6000")
    _local(port, 1, f"{REGISTRY}/team/a:1", (f"{REGISTRY}/team/a@{OLD}",))
    _local(port, 2, "127.0.0.1:7000/team/b:1", (f"127.0.0.1:7000/team/b@{OLD}",))
    port.distributions[f"{REGISTRY}/team/a:1"] = distribution(OLD)
    port.distributions["127.0.0.1:7000/team/b:1"] = distribution(OLD)
    run(
        core.check_image_updates(
            [f"{REGISTRY}/team/a:1", "127.0.0.1:7000/team/b:1"], registry_auths=[other, AUTH]
        )
    )
    sent = {call.args[0]: call.kwargs["auth"] for call in port.calls_to("inspect_distribution")}
    assert sent == {f"{REGISTRY}/team/a:1": AUTH, "127.0.0.1:7000/team/b:1": None}


def test_update_check_never_echoes_a_password(core: ImageCore, port: FakeDockerPort) -> None:
    _local(port, 1, f"{REGISTRY}/team/a:1", (f"{REGISTRY}/team/a@{OLD}",))
    port.distribution_failures[f"{REGISTRY}/team/a:1"] = UnauthenticatedError(
        f"bad password {AUTH.password}", reason=Reason.REGISTRY_UNAUTHENTICATED
    )
    [update] = run(core.check_image_updates([f"{REGISTRY}/team/a:1"], registry_auths=[AUTH]))
    assert update.reason == Reason.REGISTRY_UNAUTHENTICATED
    assert AUTH.password not in update.message


def test_update_check_fails_whole_when_the_daemon_is_down(
    core: ImageCore, port: FakeDockerPort
) -> None:
    port.failures["inspect_image"] = UnavailableError(
        "the Docker daemon is not reachable", reason=Reason.DAEMON_UNAVAILABLE
    )
    with pytest.raises(UnavailableError) as caught:
        run(core.check_image_updates([f"{REGISTRY}/team/a:1"], registry_auths=[]))
    assert caught.value.reason is Reason.DAEMON_UNAVAILABLE


def test_update_check_on_an_engine_without_registry_inspect_says_why(
    core: ImageCore, port: FakeDockerPort
) -> None:
    _local(port, 1, f"{REGISTRY}/team/a:1", (f"{REGISTRY}/team/a@{OLD}",))
    port.failures["inspect_distribution"] = FailedPreconditionError(
        "Podman's Docker API has no registry inspect", reason=Reason.ENGINE_ERROR
    )
    [update] = run(core.check_image_updates([f"{REGISTRY}/team/a:1"], registry_auths=[]))
    assert (update.status, update.reason) == (UpdateStatus.UNKNOWN, Reason.ENGINE_ERROR)
    assert "Podman" in update.message


@pytest.mark.parametrize(
    ("references", "reason"),
    [
        ([], Reason.INVALID_ARGUMENT),
        ([f"{REGISTRY}/team/a:{n}" for n in range(101)], Reason.INVALID_ARGUMENT),
        ([f"{REGISTRY}/team/a@{OLD}"], Reason.INVALID_REFERENCE),
        (["UPPER/x:1"], Reason.INVALID_REFERENCE),
    ],
    ids=["none", "too many", "digest", "malformed"],
)
def test_update_check_refuses_bad_requests(
    core: ImageCore, port: FakeDockerPort, references: list[str], reason: Reason
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        run(core.check_image_updates(references, registry_auths=[]))
    assert caught.value.reason is reason
    assert port.calls == []


class _SlowPort(FakeDockerPort):
    """Counts the registry requests running at once."""

    def __init__(self) -> None:
        super().__init__()
        self.running = 0
        self.most = 0
        self._count_lock = threading.Lock()

    def inspect_distribution(self, name: str, *, auth: RegistryAuth | None) -> JsonDocument:
        with self._count_lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.05)
        with self._count_lock:
            self.running -= 1
        return super().inspect_distribution(name, auth=auth)


def test_update_checks_run_at_most_a_few_at_once(settings: CoreSettings) -> None:
    port = _SlowPort()
    names = [f"{REGISTRY}/team/a{n}:1" for n in range(12)]
    for n, name in enumerate(names):
        _local(port, n + 1, name, (f"{REGISTRY}/team/a{n}@{OLD}",))
        port.distributions[name] = distribution(OLD)
    with ThreadPoolExecutor(max_workers=16) as executor:
        updates = run(
            ImageCore(port, executor, settings).check_image_updates(names, registry_auths=[])
        )
    assert [u.status for u in updates] == [UpdateStatus.UP_TO_DATE] * 12
    assert [u.reference for u in updates] == names
    assert 1 < port.most <= UPDATE_CHECKS_AT_ONCE


def test_inspect_missing_tag_is_not_found(core: ImageCore, port: FakeDockerPort) -> None:
    with pytest.raises(NotFoundError):
        run(core.inspect_registry_image(f"{REGISTRY}/team/app:nope", auth=None))
