"""Helpers for the pull/push tests: reading transfer streams, asking the registry and
the Engine (through the docker CLI) what they hold."""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from devtools.engine_kinds import EngineKind
from devtools.sandbox import Registry, SandboxEngine, build_busybox_image
from imagesvc.v1 import image_pb2
from imagesvc.v1 import image_service_pb2 as pb

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"

# Registries are on loopback: never use a proxy from the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def _check_order(kinds: list[str | None]) -> None:
    """Progress messages first, then exactly one last message with the result."""
    assert kinds, "the stream ended without any message"
    assert kinds[-1] == "result", f"the last message is not the result: {kinds}"
    assert kinds[:-1] == ["progress"] * (len(kinds) - 1), (
        f"a result came before the end, or a message set nothing: {kinds}"
    )


def read_pull(
    messages: Iterable[pb.PullImageResponse],
) -> tuple[list[image_pb2.TransferProgress], pb.PullImageResult]:
    received = list(messages)
    _check_order([m.WhichOneof("kind") for m in received])
    return [m.progress for m in received[:-1]], received[-1].result


def read_push(
    messages: Iterable[pb.PushImageResponse],
) -> tuple[list[image_pb2.TransferProgress], pb.PushImageResult]:
    received = list(messages)
    _check_order([m.WhichOneof("kind") for m in received])
    return [m.progress for m in received[:-1]], received[-1].result


def layer_states(progress: Iterable[image_pb2.TransferProgress]) -> dict[str, list[str]]:
    """Every state each layer went through, in order, without repeats."""
    states: dict[str, list[str]] = {}
    for message in progress:
        for layer in message.layers:
            seen = states.setdefault(layer.layer_id, [])
            if not seen or seen[-1] != layer.state:
                seen.append(layer.state)
    return states


@dataclass(frozen=True)
class Manifest:
    digest: str
    size: int
    layers: tuple[str, ...] = ()  # the layer blobs' digests, in order


def basic_auth(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def pushed_manifest_type(kind: EngineKind) -> str:
    """The manifest an Engine pushes of an image it built: OCI from the containerd image
    store, Docker's schema 2 from the classic store."""
    return OCI_MANIFEST if kind.containerd_store else MANIFEST_V2


def registry_manifest(
    registry: Registry, repository: str, reference: str, media_type: str = MANIFEST_V2
) -> Manifest:
    """What the registry serves for repository:reference, which must be a manifest of
    ``media_type`` (the registry answers 404 to an Accept its manifest does not match)."""
    headers = {"Accept": media_type}
    if registry.username is not None and registry.password is not None:
        headers["Authorization"] = basic_auth(registry.username, registry.password)
    url = f"{registry.url}/v2/{repository}/manifests/{reference}"
    assert url.startswith("http://127.0.0.1:")
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (checked above)
    with _DIRECT.open(request, timeout=10) as response:
        body = response.read()
        digest = response.headers["Docker-Content-Digest"]
        content_type = response.headers["Content-Type"]
    assert content_type == media_type
    # The header must be the digest of exactly these bytes.
    assert digest == "sha256:" + hashlib.sha256(body).hexdigest()
    layers = tuple(layer["digest"] for layer in json.loads(body).get("layers", []))
    return Manifest(digest=digest, size=len(body), layers=layers)


def registry_has_manifest(registry: Registry, repository: str, reference: str) -> bool:
    """Whether the registry has repository:reference as a manifest of either type (False
    on 404 to both, fails on other errors)."""
    codes = []
    for media_type in (MANIFEST_V2, OCI_MANIFEST):
        try:
            registry_manifest(registry, repository, reference, media_type)
        except urllib.error.HTTPError as error:
            error.close()
            codes.append(error.code)
        else:
            return True
    assert codes == [404, 404], f"the registry answered {codes}"
    return False


def local_image(engine: SandboxEngine, reference: str) -> dict[str, object] | None:
    """`docker image inspect` of reference, or None when the Engine has no such image."""
    inspected = engine.docker("image", "inspect", reference, check=False)
    if inspected.returncode != 0:
        assert "No such image" in inspected.stderr, inspected.stderr
        return None
    documents = json.loads(inspected.stdout)
    assert len(documents) == 1
    document: dict[str, object] = documents[0]
    return document


def local_id(engine: SandboxEngine, reference: str) -> str | None:
    document = local_image(engine, reference)
    return None if document is None else str(document["Id"])


def repo_digests(engine: SandboxEngine, reference: str) -> list[str]:
    document = local_image(engine, reference)
    assert document is not None, f"{reference} is not on the Engine"
    digests = document["RepoDigests"]
    assert isinstance(digests, list)
    return [str(d) for d in digests]


def remove_local(engine: SandboxEngine, *references: str) -> None:
    """Remove these references from the Engine; fine if some are already gone."""
    for reference in references:
        removed = engine.docker("image", "rm", "--force", reference, check=False)
        if removed.returncode != 0:
            assert "No such image" in removed.stderr, removed.stderr
        assert local_image(engine, reference) is None


def build_big_image(engine: SandboxEngine, reference: str, *, mib: int) -> None:
    """The busybox image with one more layer of ``mib`` MiB of random bytes (nothing to
    compress or share), built as ``reference``: a transfer long enough to interrupt."""
    build_busybox_image(
        engine, reference, extra_lines=[f"RUN dd if=/dev/urandom of=/blob bs=1M count={mib}"]
    )


def push_big_image(engine: SandboxEngine, reference: str, *, mib: int) -> None:
    """``build_big_image``, pushed to the registry ``reference`` names and removed from the
    Engine again: only the registry holds it, ready to be pulled."""
    build_big_image(engine, reference, mib=mib)
    engine.docker("push", reference)
    remove_local(engine, reference)
