"""The Engine's /build request the adapter makes: only the validated fields and the
server's limits, nothing a caller could use to reach the host (extra hosts, another
builder, a remote context, Podman's default of the host's network). The request is
captured before anything is sent."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from imagesvc.core.errors import FailedPreconditionError
from imagesvc.core.models import BuildLimits, BuildOptions
from imagesvc.engine.docker_adapter import DockerAdapter

# Every /build parameter the adapter may send; anything else would be a new capability.
KNOWN = {
    "t",
    "dockerfile",
    "rm",
    "forcerm",
    "nocache",
    "pull",
    "buildargs",
    "labels",
    "target",
    "platform",
    "networkmode",
    "memory",
    "memswap",
    "cpuperiod",
    "cpuquota",
    "cpushares",
    "cpusetcpus",
}


def _adapter_for(version: dict[str, Any]) -> DockerAdapter:
    """An adapter whose daemon answered /version with ``version`` (nothing is sent)."""
    built = DockerAdapter("unix:///nonexistent/docker.sock")
    built._client.version = lambda **_: version
    return built


DOCKER_VERSION = {"ApiVersion": "1.41", "Components": [{"Name": "Engine", "Version": "20.10.24"}]}
# What Debian 12's podman 4.3.1 answers (abridged).
PODMAN_VERSION = {
    "ApiVersion": "1.41",
    "Components": [{"Name": "Podman Engine", "Version": "4.3.1"}],
}


@pytest.fixture
def adapter() -> Iterator[DockerAdapter]:
    built = _adapter_for(DOCKER_VERSION)
    yield built
    built.close()


@pytest.fixture
def podman_adapter() -> Iterator[DockerAdapter]:
    built = _adapter_for(PODMAN_VERSION)
    yield built
    built.close()


def build_params(adapter: DockerAdapter, options: BuildOptions) -> dict[str, Any]:
    captured: dict[str, Any] = {}

    def stream(operation: str, path: str, *args: str, **kwargs: Any) -> None:
        captured.update(kwargs["params"], path=path)

    adapter._stream = stream  # type: ignore[assignment,method-assign]
    # Frozen BuildOptions are what the core passes (typed loosely through its executor).
    request: Any = options
    adapter.build(io.BytesIO(b""), gzip=False, request=request)
    return captured


def test_the_limits_reach_the_build_request(adapter: DockerAdapter) -> None:
    limits = BuildLimits(
        memory_bytes=64 << 20,
        cpu_period_us=100_000,
        cpu_quota_us=50_000,
        cpu_shares=512,
        cpuset_cpus="0",
    )
    params = build_params(adapter, BuildOptions(tags=("a:1",), network_mode="none", limits=limits))
    assert params["memory"] == params["memswap"] == 64 << 20  # no swap beyond the limit
    assert (params["cpuperiod"], params["cpuquota"]) == (100_000, 50_000)
    assert (params["cpushares"], params["cpusetcpus"]) == (512, "0")
    assert params["networkmode"] == "none"


def test_no_limits_send_no_limit_parameters(adapter: DockerAdapter) -> None:
    params = build_params(adapter, BuildOptions())
    assert not {"memory", "memswap", "cpuperiod", "cpuquota", "cpushares", "cpusetcpus"} & set(
        params
    )


def test_only_known_parameters_are_ever_sent(adapter: DockerAdapter) -> None:
    options = BuildOptions(
        tags=("a:1",),
        dockerfile="Dockerfile",
        build_args={"A": "1"},
        labels={"l": "v"},
        target="t",
        no_cache=True,
        pull=True,
        platform="linux/amd64",
        network_mode="default",
        limits=BuildLimits(1 << 30, 100_000, 100_000, 2, "0-1"),
    )
    params = build_params(adapter, options)
    assert params.pop("path") == "/build"
    assert set(params) <= KNOWN
    assert "extrahosts" not in params
    assert "remote" not in params
    assert "version" not in params  # the classic builder: no BuildKit entitlements


def test_docker_gets_no_podman_parameters(adapter: DockerAdapter) -> None:
    params = build_params(adapter, BuildOptions(network_mode="none"))
    assert "nsoptions" not in params
    assert params["networkmode"] == "none"


@pytest.mark.parametrize("network_mode", ["", "default"])
def test_podman_builds_on_the_default_network_get_a_network_namespace_of_their_own(
    podman_adapter: DockerAdapter, network_mode: str
) -> None:
    # Without nsoptions Podman runs RUN steps in the host's network namespace.
    params = build_params(podman_adapter, BuildOptions(network_mode=network_mode))
    assert json.loads(params["nsoptions"]) == [{"Name": "network", "Host": False}]
    assert params.get("networkmode", "") == network_mode


def test_podman_builds_without_network_get_loopback_only(podman_adapter: DockerAdapter) -> None:
    # Podman ignores Docker's "none"; buildah's NetworkDisabled policy is the same thing.
    params = build_params(podman_adapter, BuildOptions(network_mode="none"))
    assert json.loads(params["nsoptions"]) == [{"Name": "network", "Host": False}]
    assert params["networkmode"] == "NetworkDisabled"


def test_podman_parameters_are_only_the_network_ones(podman_adapter: DockerAdapter) -> None:
    params = build_params(podman_adapter, BuildOptions(tags=("a:1",), network_mode="none"))
    assert params.pop("path") == "/build"
    assert set(params) <= KNOWN | {"nsoptions"}


def _capture(adapter: DockerAdapter, method: str) -> list[str]:
    urls: list[str] = []

    def fake(url: str, *args: Any, **kwargs: Any) -> Any:
        urls.append(url)
        raise RuntimeError("captured")

    setattr(adapter._client, method, fake)
    return urls


@pytest.mark.parametrize(
    ("image", "docker_sends", "podman_sends"),
    [
        ("sha256:dcf3da4f775a", "sha256:dcf3da4f775a", "dcf3da4f775a"),
        ("sha256:" + "a" * 64, "sha256:" + "a" * 64, "sha256:" + "a" * 64),
        ("dcf3da4f775a", "dcf3da4f775a", "dcf3da4f775a"),
        ("acc/sha256:1", "acc/sha256:1", "acc/sha256:1"),
    ],
)
def test_podman_looks_up_a_short_id_without_its_sha256_prefix(
    adapter: DockerAdapter,
    podman_adapter: DockerAdapter,
    image: str,
    docker_sends: str,
    podman_sends: str,
) -> None:
    # Podman refuses "sha256:" before anything but a full id; the bare prefix is the
    # same lookup.
    for built, sent in ((adapter, docker_sends), (podman_adapter, podman_sends)):
        urls = _capture(built, "inspect_image")
        with pytest.raises(RuntimeError):
            built.inspect_image(image)
        assert urls == [sent]


@pytest.mark.parametrize(
    ("filters", "refused"),
    [
        ({"dangling": ["false"]}, "all=true"),
        ({"dangling": ["true"], "label!": ["keep"]}, "exclude_labels"),
        ({"dangling": ["true"], "label": ["a", "b=1"]}, "several labels"),
    ],
)
def test_podman_refuses_prunes_it_would_get_wrong(
    podman_adapter: DockerAdapter, filters: dict[str, list[str]], refused: str
) -> None:
    urls = _capture(podman_adapter, "_post")
    with pytest.raises(FailedPreconditionError) as caught:
        podman_adapter.prune_images(filters)
    assert refused in str(caught.value)
    assert "Podman" in str(caught.value)
    assert urls == []


def test_podman_prunes_dangling_images_of_one_label(podman_adapter: DockerAdapter) -> None:
    urls = _capture(podman_adapter, "_post")
    with pytest.raises(RuntimeError, match="captured"):
        podman_adapter.prune_images({"dangling": ["true"], "label": ["a=1"], "until": ["1"]})
    assert [url.rsplit("/", 2)[-2:] for url in urls] == [["images", "prune"]]
