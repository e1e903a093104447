"""Tests of the test harness itself: the sandboxed engine, registries and images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devtools.sandbox import (
    BuiltImage,
    DockerCommandError,
    Engine,
    Registry,
    build_busybox_image,
)


def test_engine_answers_ping(engine: Engine) -> None:
    assert engine.ping()
    assert engine.host.startswith("unix:///")
    version = engine.docker("version", "--format", "{{.Server.APIVersion}}").stdout.strip()
    assert version.split(".")[0] == "1"


def test_busybox_image_runs(engine: Engine, busybox_image: BuiltImage) -> None:
    assert busybox_image.id.startswith("sha256:")
    run = engine.docker("run", "--rm", "--network", "none", busybox_image.tag, "echo", "hi")
    assert run.stdout == "hi\n"


def test_build_busybox_image_labels_and_extra_lines(engine: Engine) -> None:
    image_id = build_busybox_image(
        engine,
        "imagesvc-test/harness-labels:1",
        extra_lines=["ENV HARNESS=yes"],
        labels={"org.example.harness": "labels"},
    )
    try:
        inspect = json.loads(engine.docker("image", "inspect", image_id).stdout)[0]
        assert inspect["Config"]["Labels"] == {"org.example.harness": "labels"}
        assert "HARNESS=yes" in inspect["Config"]["Env"]
        assert "imagesvc-test/harness-labels:1" in inspect["RepoTags"]
    finally:
        engine.docker("image", "rm", "imagesvc-test/harness-labels:1")


def test_push_to_open_registry_and_pull_back(
    engine: Engine, open_registry: Registry, busybox_image: BuiltImage
) -> None:
    ref = f"{open_registry.address}/harness/busybox:push"
    engine.docker("tag", busybox_image.tag, ref)
    engine.docker("push", ref)
    engine.docker("image", "rm", ref)
    with pytest.raises(DockerCommandError):
        engine.docker("image", "inspect", ref)
    engine.docker("pull", ref)
    pulled = engine.docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()
    assert pulled == busybox_image.id
    engine.docker("image", "rm", ref)


def test_auth_registry_needs_login(
    engine: Engine, auth_registry: Registry, busybox_image: BuiltImage, tmp_path: Path
) -> None:
    assert auth_registry.username == "imagesvc-test"
    assert auth_registry.password
    ref = f"{auth_registry.address}/harness/busybox:auth"
    engine.docker("tag", busybox_image.tag, ref)
    anonymous = {"DOCKER_CONFIG": str(tmp_path / "anonymous")}
    logged_in = {"DOCKER_CONFIG": str(tmp_path / "logged-in")}
    try:
        push = engine.docker("push", ref, check=False, env=anonymous)
        assert push.returncode != 0
        # The engine says "no basic auth credentials" when it has none to send, and
        # "unauthorized: authentication required" when the registry rejects what it sent.
        output = push.stdout + push.stderr
        assert "no basic auth credentials" in output or "authentication required" in output

        wrong = engine.docker(
            "login",
            "--username",
            auth_registry.username,
            "--password-stdin",
            auth_registry.address,
            input="not-the-password\n",
            check=False,
            env=anonymous,
        )
        assert wrong.returncode != 0

        engine.docker(
            "login",
            "--username",
            auth_registry.username,
            "--password-stdin",
            auth_registry.address,
            input=f"{auth_registry.password}\n",
            env=logged_in,
        )
        config = json.loads((tmp_path / "logged-in" / "config.json").read_text())
        assert auth_registry.address in config["auths"]
        engine.docker("push", ref, env=logged_in)
        engine.docker("image", "rm", ref)
        engine.docker("pull", ref, env=logged_in)
    finally:
        engine.docker("image", "rm", ref, check=False)


def test_engine_stop_and_start_keeps_images(engine: Engine, busybox_image: BuiltImage) -> None:
    with engine.stopped():
        assert not engine.ping()
        assert not engine.is_running()
    assert engine.ping()
    kept = engine.docker("image", "inspect", "--format", "{{.Id}}", busybox_image.tag)
    assert kept.stdout.strip() == busybox_image.id
