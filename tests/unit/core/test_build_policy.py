from __future__ import annotations

import pytest

from imagesvc.core.build_policy import (
    DEFAULT_BUILD_ARG_DENYLIST,
    BuildRestrictions,
    build_limits,
    parse_arg_patterns,
)
from imagesvc.core.dockerfile_sources import dockerfile_sources
from imagesvc.core.errors import PermissionDeniedError, Reason
from imagesvc.core.models import BuildLimits, BuildOptions
from imagesvc.core.registry_policy import RegistryPolicy
from tests.unit.core.refusals import refusal

DEFAULTS = BuildRestrictions(arg_denylist=parse_arg_patterns(DEFAULT_BUILD_ARG_DENYLIST))


@pytest.mark.parametrize("mode", ["", "default", "none"])
def test_default_network_and_none_are_allowed(mode: str) -> None:
    assert refusal(DEFAULTS.check_options, BuildOptions(network_mode=mode)) is None


@pytest.mark.parametrize("mode", ["host", "bridge", "container:abc", "my-network", "HOST", "None"])
def test_other_network_modes_are_denied(mode: str) -> None:
    with pytest.raises(PermissionDeniedError) as caught:
        DEFAULTS.check_options(BuildOptions(network_mode=mode))
    assert caught.value.reason is Reason.BUILD_OPTION_NOT_ALLOWED
    assert caught.value.metadata == {"field": "network_mode"}
    assert repr(mode) in caught.value.message


@pytest.mark.parametrize(
    "name",
    ["PASSWORD", "db_password", "NPM_TOKEN", "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "Api_Key"],
)
def test_secret_looking_build_args_are_denied_by_default(name: str) -> None:
    with pytest.raises(PermissionDeniedError) as caught:
        DEFAULTS.check_options(BuildOptions(build_args={name: "s3cr3t-value"}))
    assert caught.value.reason is Reason.BUILD_OPTION_NOT_ALLOWED
    assert caught.value.metadata == {"field": "build_args"}
    assert "history" in caught.value.message
    assert repr(name) in caught.value.message
    assert "s3cr3t-value" not in caught.value.message


def test_ordinary_build_args_pass() -> None:
    ordinary = BuildOptions(build_args={"VERSION": "1", "HTTP_PROXY": "x", "A": ""})
    assert refusal(DEFAULTS.check_options, ordinary) is None


def test_an_arg_allowlist_admits_only_matching_names() -> None:
    restrictions = BuildRestrictions(arg_allowlist=parse_arg_patterns("version, go_*"))
    admitted = BuildOptions(build_args={"VERSION": "1", "GO_FLAGS": "-x"})
    assert refusal(restrictions.check_options, admitted) is None
    with pytest.raises(PermissionDeniedError, match="allowlist"):
        restrictions.check_options(BuildOptions(build_args={"OTHER": "1"}))


def test_arg_patterns_are_validated() -> None:
    assert parse_arg_patterns("a*, b?c") == ("A*", "B?C")
    with pytest.raises(ValueError, match="build argument pattern"):
        parse_arg_patterns("[abc]")


def test_build_limits_from_settings() -> None:
    assert build_limits(memory_bytes=0, cpus=0, cpu_shares=0, cpuset_cpus="") == BuildLimits()
    limits = build_limits(memory_bytes=64 << 20, cpus=1.5, cpu_shares=512, cpuset_cpus="0-1")
    assert limits == BuildLimits(
        memory_bytes=64 << 20,
        cpu_period_us=100_000,
        cpu_quota_us=150_000,
        cpu_shares=512,
        cpuset_cpus="0-1",
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"memory_bytes": -1},
        {"memory_bytes": 1024},
        {"cpus": -1.0},
        {"cpus": 0.001},
        {"cpu_shares": -5},
        {"cpuset_cpus": "all"},
    ],
)
def test_impossible_build_limits_are_refused(kwargs: dict[str, object]) -> None:
    values: dict[str, object] = {"memory_bytes": 0, "cpus": 0.0, "cpu_shares": 0, "cpuset_cpus": ""}
    values.update(kwargs)
    with pytest.raises(ValueError, match="build"):
        build_limits(**values)  # type: ignore[arg-type]


def test_sources_are_checked_against_the_pull_allowlist_in_order() -> None:
    policy = RegistryPolicy.from_text("127.0.0.1:5000/**", "")
    allowed = dockerfile_sources(b"FROM 127.0.0.1:5000/base\nFROM scratch\n", {})
    assert refusal(BuildRestrictions().check_sources, allowed, policy, "Dockerfile") is None
    denied = dockerfile_sources(
        b"FROM 127.0.0.1:5000/base AS b\nFROM scratch\nCOPY --from=alpine:3 /a /b\n", {}
    )
    with pytest.raises(PermissionDeniedError) as caught:
        BuildRestrictions().check_sources(denied, policy, "ci/Dockerfile")
    assert caught.value.reason is Reason.REGISTRY_NOT_ALLOWED
    assert caught.value.message.startswith("COPY --from on line 3 of ci/Dockerfile: ")
    assert caught.value.metadata["repository"] == "docker.io/library/alpine"


def test_an_undetermined_image_is_refused_only_under_a_pull_allowlist() -> None:
    sources = dockerfile_sources(b"ARG BASE\nFROM $BASE\n", {})
    assert (
        refusal(BuildRestrictions().check_sources, sources, RegistryPolicy(), "Dockerfile") is None
    )
    with pytest.raises(PermissionDeniedError) as caught:
        BuildRestrictions().check_sources(
            sources, RegistryPolicy.from_text("127.0.0.1:5000/**", ""), "Dockerfile"
        )
    assert caught.value.reason is Reason.BASE_IMAGE_UNRESOLVED
    assert caught.value.metadata == {"dockerfile": "Dockerfile", "line": "2"}
    assert "$BASE is not set" in caught.value.message


def test_remote_add_is_refused_unless_allowed() -> None:
    sources = dockerfile_sources(b"FROM scratch\nADD http://10.0.0.1/x /x\n", {})
    with pytest.raises(PermissionDeniedError) as caught:
        BuildRestrictions().check_sources(sources, RegistryPolicy(), "Dockerfile")
    assert caught.value.reason is Reason.BUILD_OPTION_NOT_ALLOWED
    assert "line 2" in caught.value.message
    BuildRestrictions(allow_remote_add=True).check_sources(sources, RegistryPolicy(), "Dockerfile")
