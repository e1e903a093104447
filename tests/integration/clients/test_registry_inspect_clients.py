"""InspectRegistryImage and CheckImageUpdates through the Python clients, imagesvc-cli
(`manifest inspect`, `ls --check-updates`) and REST, against the open and the htpasswd
registry."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from devtools.sandbox import Engine, Registry, build_busybox_image
from imagesvc.server import ThreadedServer
from imagesvc_client import AsyncImageClient, ImageClient, NotFound, RegistryAuth, Unauthenticated
from imagesvc_client.v1 import image_service_pb2 as pb
from tests.integration.clients.test_cli import cli, cli_json, error_of
from tests.integration.transfers import registry_manifest, remove_local, unique


@pytest.fixture
def pushed(engine: Engine, open_registry: Registry) -> Iterator[tuple[str, str]]:
    """(reference, digest) of an image pushed to the open registry and then pulled back
    (so that the local image has the registry's digest)."""
    repository = unique("team/inspect-client-")
    reference = f"{open_registry.address}/{repository}:1"
    build_busybox_image(engine, reference, extra_lines=[f"RUN echo {unique('')} > /id"])
    engine.docker("push", reference)
    remove_local(engine, reference)
    engine.docker("pull", reference)
    yield reference, registry_manifest(open_registry, repository, "1").digest
    remove_local(engine, reference)


def test_python_clients(address: str, pushed: tuple[str, str], open_registry: Registry) -> None:
    reference, digest = pushed
    missing = f"{open_registry.address}/{unique('team/none-')}:1"
    with ImageClient(address) as client:
        found = client.inspect_registry_image(reference)
        assert (found.reference, found.digest) == (reference, digest)
        with pytest.raises(NotFound) as caught:
            client.inspect_registry_image(missing)
        assert caught.value.reason == "IMAGE_NOT_FOUND"
        [update, unknown] = client.check_image_updates([reference, missing])
        assert (update.status, update.registry_digest) == (pb.UPDATE_STATUS_UP_TO_DATE, digest)
        assert (unknown.status, unknown.reason) == (pb.UPDATE_STATUS_UNKNOWN, "IMAGE_NOT_FOUND")

    async def scenario() -> None:
        async with AsyncImageClient(address) as client:
            found = await client.inspect_registry_image(reference)
            assert found.digest == digest
            [update] = await client.check_image_updates([reference])
            assert update.status == pb.UPDATE_STATUS_UP_TO_DATE

    asyncio.run(scenario())


def test_python_client_credentials(address: str, engine: Engine, auth_registry: Registry) -> None:
    assert auth_registry.username is not None
    assert auth_registry.password is not None
    good = RegistryAuth(auth_registry.username, auth_registry.password, auth_registry.address)
    bad = RegistryAuth(auth_registry.username, "not-the-password", auth_registry.address)
    reference = f"{auth_registry.address}/{unique('team/inspect-cred-')}:1"
    build_busybox_image(engine, reference, extra_lines=[f"RUN echo {unique('')} > /id"])
    try:
        with ImageClient(address) as client:
            pushed = client.push(reference, auth=good).wait()
            assert client.inspect_registry_image(reference, auth=good).digest == pushed.digest
            with pytest.raises(Unauthenticated) as caught:
                client.inspect_registry_image(reference, auth=bad)
            assert caught.value.reason == "REGISTRY_UNAUTHENTICATED"
            assert "not-the-password" not in str(caught.value)
    finally:
        remove_local(engine, reference)


def test_cli_manifest_inspect(address: str, pushed: tuple[str, str]) -> None:
    reference, digest = pushed
    shown = cli(address, "manifest", "inspect", reference).stdout
    assert f"Digest:     {digest}" in shown
    assert f"Name:       {reference}" in shown
    assert "Platforms:  linux/" in shown
    document = cli_json(address, "manifest", "inspect", reference)
    assert document["digest"] == digest
    assert int(document["sizeBytes"]) > 0


def test_cli_manifest_inspect_of_a_missing_tag(address: str, pushed: tuple[str, str]) -> None:
    reference, _ = pushed
    failed = cli(address, "-o", "json", "manifest", "inspect", reference[:-2] + ":nope", code=1)
    assert error_of(failed)["reason"] == "IMAGE_NOT_FOUND"


def test_cli_manifest_inspect_with_credentials(
    address: str, engine: Engine, auth_registry: Registry
) -> None:
    assert auth_registry.username is not None
    assert auth_registry.password is not None
    reference = f"{auth_registry.address}/{unique('team/inspect-cli-')}:1"
    build_busybox_image(engine, reference, extra_lines=[f"RUN echo {unique('')} > /id"])
    try:
        with ImageClient(address) as client:
            auth = RegistryAuth(
                auth_registry.username, auth_registry.password, auth_registry.address
            )
            digest = client.push(reference, auth=auth).wait().digest
        login = ("--username", auth_registry.username, "--password-stdin")
        document = cli_json(
            address, "manifest", "inspect", reference, *login, stdin=auth_registry.password
        )
        assert document["digest"] == digest
        refused = cli(
            address, "-o", "json", "manifest", "inspect", reference, *login, stdin="wrong", code=1
        )
        assert error_of(refused)["reason"] == "REGISTRY_UNAUTHENTICATED"
    finally:
        remove_local(engine, reference)


def test_cli_ls_check_updates(address: str, engine: Engine, pushed: tuple[str, str]) -> None:
    reference, _ = pushed
    repository = reference.rsplit(":", 1)[0]
    local_only = f"{repository}:local"
    engine.docker("tag", reference, local_only)  # never pushed: the registry lacks it
    try:
        table = cli(address, "ls", repository, "--check-updates").stdout.splitlines()
        assert table[0].split()[-1] == "UPDATE"
        rows = {line.split()[1]: line for line in table[1:]}
        assert rows["1"].endswith("up to date")
        assert rows["local"].endswith("unknown (IMAGE_NOT_FOUND)")

        # A newer image pushed under tag 1; the local tag 1 stays on the image pulled.
        newer = f"{repository}:newer"
        build_busybox_image(engine, newer, extra_lines=[f"RUN echo {unique('')} > /id"])
        engine.docker("tag", newer, reference)
        engine.docker("push", reference)
        engine.docker("tag", local_only, reference)
        table = cli(address, "ls", repository, "--check-updates").stdout.splitlines()
        rows = {line.split()[1]: line for line in table[1:]}
        assert rows["1"].endswith("update available"), table

        [listed] = [
            image
            for image in cli_json(address, "ls", repository, "--check-updates")
            if reference in image["repoTags"]
        ]
        [update] = [u for u in listed["updates"] if u["reference"] == reference]
        assert update["status"] == "UPDATE_STATUS_UPDATE_AVAILABLE"
    finally:
        remove_local(engine, local_only, f"{repository}:newer")


def test_cli_ls_check_updates_usage(address: str) -> None:
    refused = cli(address, "ls", "--check-updates", "--quiet", code=2)
    assert "--quiet" in refused.stderr
    refused = cli(address, "ls", "--username", "u", code=2)
    assert "--check-updates" in refused.stderr


def test_rest(server: ThreadedServer, pushed: tuple[str, str]) -> None:
    reference, digest = pushed
    with httpx.Client(
        base_url=f"http://127.0.0.1:{server.http_port}", timeout=60, trust_env=False
    ) as rest:
        found = rest.post("/v1/images:inspectRegistry", json={"reference": reference})
        assert found.status_code == 200, found.text
        assert found.json()["digest"] == digest
        [platform] = found.json()["platforms"]
        assert platform["os"] == "linux"

        missing = rest.post("/v1/images:inspectRegistry", json={"reference": reference + "x"})
        assert missing.status_code == 404
        assert missing.json()["details"][0]["reason"] == "IMAGE_NOT_FOUND"

        checked = rest.post("/v1/images:checkUpdates", json={"references": [reference]})
        assert checked.status_code == 200, checked.text
        [update] = checked.json()["updates"]
        assert update["status"] == "UPDATE_STATUS_UP_TO_DATE"
        assert update["registryDigest"] == digest
