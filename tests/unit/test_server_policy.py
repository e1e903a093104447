from __future__ import annotations

import logging
from pathlib import Path

import pytest

from imagesvc.config import Settings, SettingsError
from imagesvc.core.build_context import check_spool_dir
from imagesvc.core.models import BuildLimits
from imagesvc.core.references import parse_reference
from imagesvc.server import ImageServer
from imagesvc.server_policy import ServerPolicy
from imagesvc.server_security import SecuritySettingsError
from tests.unit.fakes import FakeDockerPort


def test_the_defaults() -> None:
    policy = ServerPolicy(Settings())
    assert policy.registry.pull.allows_everything
    assert policy.registry.push.allows_everything
    assert policy.build.limits == BuildLimits(memory_bytes=2 * 1024**3)
    assert policy.build.timeout_seconds == 3600
    assert "*TOKEN*" in policy.build.arg_denylist
    assert policy.build.arg_allowlist is None
    assert not policy.build.allow_remote_add
    assert (policy.limits.pulls.maximum, policy.limits.pushes.maximum) == (8, 8)
    assert policy.limits.builds.maximum == 4
    assert not policy.limits.rate.enabled


def test_settings_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "IMAGESVC_PULL_ALLOWLIST": "127.0.0.1:5000/**, ghcr.io/acme/*",
            "IMAGESVC_PUSH_ALLOWLIST": "127.0.0.1:5000/team/*",
            "IMAGESVC_BUILD_CPUS": "1.5",
            "IMAGESVC_BUILD_ARG_DENYLIST": "none",
            "IMAGESVC_BUILD_ARG_ALLOWLIST": "VERSION",
            "IMAGESVC_BUILD_ALLOW_REMOTE_ADD": "true",
            "IMAGESVC_RATE_LIMIT_PER_SECOND": "5",
            "IMAGESVC_MAX_CONCURRENT_BUILDS": "0",
        }
    )
    policy = ServerPolicy(settings)
    assert policy.registry.pull.allows(parse_reference("ghcr.io/acme/app:1"))
    assert not policy.registry.push.allows(parse_reference("ghcr.io/acme/app:1"))
    assert policy.build.limits.cpu_quota_us == 150_000
    assert policy.build.arg_denylist == ()
    assert policy.build.arg_allowlist == ("VERSION",)
    assert policy.build.allow_remote_add
    assert policy.limits.rate.per_second == 5
    assert policy.limits.builds.maximum == 0


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("pull_allowlist", "127.0.0.1:5000", "127.0.0.1:5000/**"),
        ("push_allowlist", "alpine:3", "not tags"),
        ("build_memory_bytes", 1024, "6 MiB"),
        ("build_cpus", -1.0, "negative"),
        ("build_cpuset_cpus", "all", "cpuset"),
        ("build_timeout_seconds", -1.0, "negative"),
        ("build_arg_denylist", "[x]", "build argument pattern"),
        ("max_concurrent_builds", -1, "negative"),
        ("rate_limit_burst", 0, "burst"),
    ],
)
def test_unusable_settings_stop_the_start(setting: str, value: object, message: str) -> None:
    overrides: dict[str, object] = {setting: value}
    if setting == "rate_limit_burst":
        overrides["rate_limit_per_second"] = 1.0
    with pytest.raises(SecuritySettingsError) as caught:
        ServerPolicy(Settings(**overrides))  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_the_start_up_log_warns_about_open_allowlists(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="imagesvc.server_policy")
    ServerPolicy(Settings(pull_allowlist="127.0.0.1:5000/**")).log_startup()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "no tag/push allowlist" in warnings[0]
    assert "--push-allowlist" in warnings[0]
    [summary] = [r for r in caplog.records if r.levelno == logging.INFO]
    assert vars(summary)["pull_allowlist"] == "127.0.0.1:5000/**"
    assert vars(summary)["push_allowlist"] == "any"


def test_an_unwritable_spool_directory_stops_the_start(tmp_path: Path) -> None:
    # A read-only root without a writable /tmp: every build over the in-memory limit
    # would fail later with an error that does not say why, so the server refuses to start.
    # (Tests run as root, which writes anywhere: a missing directory and a file stand in.)
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    for directory in (tmp_path / "missing", not_a_directory):
        settings = Settings(
            grpc_address="127.0.0.1:0", http_address="127.0.0.1:0", build_spool_dir=str(directory)
        )
        with pytest.raises(SettingsError) as caught:
            ImageServer(settings, engine=FakeDockerPort())
        assert type(caught.value) is SettingsError  # a spool directory is no security setting
        message = str(caught.value)
        assert f"build contexts are spooled to '{directory}', which is not writable" in message
        assert "--tmpfs /tmp" in message
        assert "--build-spool-dir" in message
    assert check_spool_dir(str(tmp_path)) == str(tmp_path)
