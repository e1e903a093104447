"""AsyncImageClient against the live server, the sandboxed Engine and the loopback
registries: the same surface as ImageClient, awaited (run with asyncio.run, as the
repository does not use pytest-asyncio)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from devtools.sandbox import BuiltImage, Engine, Registry
from imagesvc_client import (
    AsyncImageClient,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    RegistryAuth,
    Unauthenticated,
)
from tests.integration.builds import dockerfile
from tests.integration.clients.conftest import ServedImage
from tests.integration.local_images import Throwaway, exists, unique_repo
from tests.integration.transfers import local_id, registry_manifest, remove_local, unique


def test_local_image_verbs(
    address: str, engine: Engine, throwaway: Throwaway, busybox_image: BuiltImage
) -> None:
    built = [
        throwaway.build(f"{unique_repo('async')}:1", extra_lines=[f"RUN echo {i} > /i"])
        for i in range(3)
    ]
    target = f"{unique_repo('async-tag')}:copy"

    async def scenario() -> None:
        async with AsyncImageClient(address, timeout=30) as client:
            listed = [i.id async for i in client.list(labels=[throwaway.label], page_size=1)]
            assert sorted(listed) == sorted(b.id for b in built)

            image = await client.get(busybox_image.tag)
            assert image.id == busybox_image.id
            history = await client.history(busybox_image.tag)
            assert history[0].id == busybox_image.id

            tagged = await client.tag(busybox_image.tag, target)
            assert tagged.id == busybox_image.id
            removed = await client.remove(target)
            assert list(removed.untagged) == [target]

            pruned = await client.prune(all=True, labels=[throwaway.label])
            assert {b.id for b in built} <= set(pruned.deleted)

            with pytest.raises(NotFound) as caught:
                await client.get(target)
            assert caught.value.reason == "IMAGE_NOT_FOUND"
            with pytest.raises(InvalidArgument):
                await client.remove("UPPER/case")

    try:
        asyncio.run(scenario())
    finally:
        remove_local(engine, target)
    assert not any(exists(engine, b.id) for b in built)
    assert exists(engine, busybox_image.tag)


def test_push_pull_and_credentials(
    address: str,
    engine: Engine,
    open_registry: Registry,
    auth_registry: Registry,
    served_image: ServedImage,
    busybox_image: BuiltImage,
) -> None:
    repository = unique("team/async-")
    pushed_ref = f"{open_registry.address}/{repository}:1"
    assert auth_registry.username is not None
    assert auth_registry.password is not None
    good = RegistryAuth(auth_registry.username, auth_registry.password, auth_registry.address)
    bad = RegistryAuth(auth_registry.username, "wrong", auth_registry.address)

    async def scenario() -> None:
        async with AsyncImageClient(address, timeout=30) as client:
            await client.tag(busybox_image.tag, pushed_ref)
            async with client.push(pushed_ref) as push:
                progress = [message async for message in push]
            assert progress[-1].layers_done == progress[-1].layers_total > 0
            assert push.result.digest == registry_manifest(open_registry, repository, "1").digest

            pull = client.pull(served_image.reference)
            states = {layer.state async for message in pull for layer in message.layers}
            assert "Downloading" in states
            assert pull.result.image_id == served_image.image_id
            assert pull.result.digest == served_image.digest

            assert (await client.check_auth(good)).status == "Login Succeeded"
            with pytest.raises(Unauthenticated) as refused:
                await client.check_auth(bad)
            assert refused.value.reason == "REGISTRY_UNAUTHENTICATED"
            with pytest.raises(NotFound):
                await client.pull(served_image.reference[:-2] + ":absent").wait()

    try:
        asyncio.run(scenario())
    finally:
        remove_local(engine, pushed_ref)
    assert local_id(engine, served_image.reference) == served_image.image_id


def test_build_a_directory(
    address: str, engine: Engine, busybox_image: BuiltImage, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text(
        dockerfile(f"FROM {busybox_image.tag}", "COPY . /ctx", "RUN ls /ctx")
    )
    (tmp_path / ".dockerignore").write_text("*.secret\n")
    (tmp_path / "kept.txt").write_text("kept")
    (tmp_path / "token.secret").write_text("not sent")
    failing = tmp_path / "failing"
    failing.mkdir()
    (failing / "Dockerfile").write_text(dockerfile(f"FROM {busybox_image.tag}", "RUN exit 7"))
    tag = f"{unique_repo('async-build')}:1"

    async def scenario() -> str:
        async with AsyncImageClient(address) as client:
            build = client.build(tmp_path, tags=[tag], chunk_size=512)
            text = "".join([line async for line in build])
            assert build.result.image_id == local_id(engine, tag)
            with pytest.raises(FailedPrecondition) as failed:
                await client.build(failing).wait()
            assert failed.value.reason == "BUILD_FAILED"
            return text

    try:
        text = asyncio.run(scenario())
    finally:
        remove_local(engine, tag)
    assert "kept.txt" in text
    assert "token.secret" not in text
