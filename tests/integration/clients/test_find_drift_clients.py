"""FindImage's drift report through the Python clients and `imagesvc-cli find
--check-registry`: the node holds an older push of the tag (STALE), then pulls it again
(CURRENT)."""

from __future__ import annotations

import asyncio

from devtools.sandbox import Engine, Registry, build_busybox_image
from imagesvc_client import AsyncImageClient, ImageClient
from imagesvc_client.v1 import fleet_service_pb2 as fleet_pb
from tests.integration.clients.test_cli import cli, cli_json
from tests.integration.transfers import registry_manifest, remove_local, unique


def _push_new(engine: Engine, reference: str) -> None:
    build_busybox_image(engine, reference, extra_lines=[f"RUN echo {unique('')} > /id"])
    engine.docker("push", reference)


def test_drift_through_the_clients_and_the_cli(
    address: str, engine: Engine, open_registry: Registry
) -> None:
    repository = unique("team/drift-client-")
    reference = f"{open_registry.address}/{repository}:1"
    try:
        _push_new(engine, reference)
        remove_local(engine, reference)
        engine.docker("pull", reference)  # the node holds the registry's digest
        first = registry_manifest(open_registry, repository, "1").digest
        with ImageClient(address) as client:
            answer = client.find_image_drift(reference)
            assert answer.registry_digest == first
            assert [n.drift for n in answer.nodes] == [fleet_pb.NodeImage.DRIFT_CURRENT]
        table = cli(address, "find", "--check-registry", reference).stdout
        assert f"Registry digest: {first}" in table
        assert "DRIFT" in table.splitlines()[1]
        assert "current" in table.splitlines()[2]

        # Pushed again from another image, then the node goes back to the older one.
        old_id = engine.docker("image", "inspect", "--format", "{{.Id}}", reference).stdout.strip()
        _push_new(engine, reference)
        engine.docker("tag", old_id, reference)
        second = registry_manifest(open_registry, repository, "1").digest
        assert second != first

        async def from_async() -> fleet_pb.FindImageResponse:
            async with AsyncImageClient(address) as client:
                return await client.find_image_drift(reference)

        answer = asyncio.run(from_async())
        assert answer.registry_digest == second
        assert [n.drift for n in answer.nodes] == [fleet_pb.NodeImage.DRIFT_STALE]
        stale = cli(address, "find", "--check-registry", reference, code=1).stdout
        assert "stale" in stale.splitlines()[2]
        document = cli_json(address, "find", "--check-registry", reference, code=1)
        assert document["registryDigest"] == second
        assert [n["drift"] for n in document["nodes"]] == ["DRIFT_STALE"]
    finally:
        remove_local(engine, reference)
