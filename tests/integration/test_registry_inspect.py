"""InspectRegistryImage and CheckImageUpdates against real registries: the answer is what
the registry itself serves (asked directly here), for a single manifest and for a
multi-platform index, and every refusal has its status and reason."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import socket
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from devtools.engine_kinds import EngineKind
from devtools.sandbox import BuiltImage, Registry, SandboxEngine, build_busybox_image
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_pb2, image_service_pb2_grpc
from imagesvc.v1 import image_service_pb2 as pb
from tests.integration.conftest import server_settings
from tests.integration.rpc_errors import error_info
from tests.integration.transfers import (
    basic_auth,
    pushed_manifest_type,
    read_pull,
    read_push,
    registry_manifest,
    remove_local,
    repo_digests,
    unique,
)

# The API contract: runs once per engine kind (tests/integration/conftest.py).
pytestmark = pytest.mark.contract

Stub = image_service_pb2_grpc.ImageServiceStub

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _manifest_url(registry: Registry, repository: str, reference: str) -> str:
    url = f"{registry.url}/v2/{repository}/manifests/{reference}"
    assert url.startswith("http://127.0.0.1:")
    return url


def _get_manifest(registry: Registry, repository: str, tag: str, media_type: str) -> bytes:
    request = urllib.request.Request(  # noqa: S310 (loopback, checked)
        _manifest_url(registry, repository, tag), headers={"Accept": media_type}
    )
    with _DIRECT.open(request, timeout=10) as response:
        assert response.headers["Content-Type"] == media_type
        body: bytes = response.read()
    return body


def _put_manifest(
    registry: Registry, repository: str, tag: str, media_type: str, body: bytes
) -> str:
    """PUTs a manifest or index under the tag, as a push does; returns its digest."""
    headers = {"Content-Type": media_type}
    if registry.username is not None and registry.password is not None:
        headers["Authorization"] = basic_auth(registry.username, registry.password)
    request = urllib.request.Request(  # noqa: S310 (loopback, checked)
        _manifest_url(registry, repository, tag), data=body, headers=headers, method="PUT"
    )
    with _DIRECT.open(request, timeout=10) as response:
        assert response.status == 201
        digest = str(response.headers["Docker-Content-Digest"])
    assert digest == "sha256:" + hashlib.sha256(body).hexdigest()
    return digest


def _push(engine: SandboxEngine, reference: str, marker: str) -> None:
    """Builds a distinct image as `reference` and pushes it with the docker CLI."""
    build_busybox_image(engine, reference, extra_lines=[f"RUN echo {marker} > /id"])
    engine.docker("push", reference)


@contextlib.contextmanager
def _allowing_pulls_of(engine: SandboxEngine, pattern: str) -> Iterator[Stub]:
    """A stub of a server of its own whose pull allowlist is `pattern`."""
    server = ThreadedServer(server_settings(engine.host, pull_allowlist=pattern))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield image_service_pb2_grpc.ImageServiceStub(channel)
    finally:
        server.stop()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _auth(registry: Registry, password: str | None = None) -> image_pb2.RegistryAuth:
    assert registry.username is not None
    assert registry.password is not None
    return image_pb2.RegistryAuth(
        username=registry.username,
        password=registry.password if password is None else password,
        server_address=registry.address,
    )


def _platforms(response: pb.InspectRegistryImageResponse) -> list[tuple[str, str, str]]:
    return [(p.os, p.architecture, p.variant) for p in response.platforms]


@pytest.fixture
def pushed(engine: SandboxEngine, open_registry: Registry) -> Iterator[tuple[str, str]]:
    """(reference, repository) of a single-platform image pushed to the open registry."""
    repository = unique("inspect/single-")
    reference = f"{open_registry.address}/{repository}:1"
    _push(engine, reference, unique(""))
    yield reference, repository
    remove_local(engine, reference)


@pytest.fixture(params=[OCI_INDEX, DOCKER_MANIFEST_LIST], ids=["oci-index", "docker-list"])
def index(
    engine: SandboxEngine,
    engine_kind: EngineKind,
    open_registry: Registry,
    request: pytest.FixtureRequest,
) -> Iterator[tuple[str, str, str, bytes]]:
    """(reference, repository, media type, bytes) of an index of two manifests (an OCI
    index or Docker's manifest list), put to the open registry as a multi-platform image."""
    index_type: str = request.param
    repository = unique("inspect/multi-")
    entries = []
    references = []
    for tag, platform in (
        ("amd64", {"os": "linux", "architecture": "amd64"}),
        ("arm64", {"os": "linux", "architecture": "arm64", "variant": "v8"}),
    ):
        reference = f"{open_registry.address}/{repository}:{tag}"
        references.append(reference)
        _push(engine, reference, unique(tag))
        media_type = pushed_manifest_type(engine_kind)
        manifest = registry_manifest(open_registry, repository, tag, media_type)
        entries.append(
            {
                "mediaType": media_type,
                "digest": manifest.digest,
                "size": manifest.size,
                "platform": platform,
            }
        )
    body = json.dumps(
        {"schemaVersion": 2, "mediaType": index_type, "manifests": entries}, indent=3
    ).encode()
    _put_manifest(open_registry, repository, "multi", index_type, body)
    yield f"{open_registry.address}/{repository}:multi", repository, index_type, body
    remove_local(engine, *references)


# InspectRegistryImage --------------------------------------------------------------


def test_inspect_single_manifest_is_what_the_registry_serves(
    stub: Stub, engine_kind: EngineKind, open_registry: Registry, pushed: tuple[str, str]
) -> None:
    reference, repository = pushed
    media_type = pushed_manifest_type(engine_kind)
    served = registry_manifest(open_registry, repository, "1", media_type)
    found = stub.InspectRegistryImage(
        pb.InspectRegistryImageRequest(reference=reference), timeout=30
    )
    assert found.reference == reference
    assert (found.digest, found.media_type, found.size_bytes) == (
        served.digest,
        media_type,
        served.size,
    )


def test_inspect_single_manifest_names_its_platform(
    stub: Stub, engine: SandboxEngine, pushed: tuple[str, str]
) -> None:
    reference, _ = pushed
    image = json.loads(engine.docker("image", "inspect", reference).stdout)[0]
    found = stub.InspectRegistryImage(
        pb.InspectRegistryImageRequest(reference=reference), timeout=30
    )
    assert _platforms(found) == [(image["Os"], image["Architecture"], image.get("Variant", ""))]


def test_inspect_index_is_what_the_registry_serves(
    stub: Stub, open_registry: Registry, index: tuple[str, str, str, bytes]
) -> None:
    reference, repository, index_type, body = index
    served = _get_manifest(open_registry, repository, "multi", index_type)
    assert served == body
    found = stub.InspectRegistryImage(
        pb.InspectRegistryImageRequest(reference=reference), timeout=30
    )
    assert found.digest == "sha256:" + hashlib.sha256(served).hexdigest()
    assert (found.media_type, found.size_bytes) == (index_type, len(served))
    assert _platforms(found) == [("linux", "amd64", ""), ("linux", "arm64", "v8")]


def test_inspect_by_digest(
    stub: Stub, engine_kind: EngineKind, open_registry: Registry, pushed: tuple[str, str]
) -> None:
    _, repository = pushed
    served = registry_manifest(open_registry, repository, "1", pushed_manifest_type(engine_kind))
    by_digest = f"{open_registry.address}/{repository}@{served.digest}"
    found = stub.InspectRegistryImage(
        pb.InspectRegistryImageRequest(reference=by_digest), timeout=30
    )
    assert (found.reference, found.digest, found.size_bytes) == (
        by_digest,
        served.digest,
        served.size,
    )


def test_inspect_with_credentials(
    stub: Stub, engine: SandboxEngine, engine_kind: EngineKind, auth_registry: Registry
) -> None:
    repository = unique("team/inspect-auth-")
    reference = f"{auth_registry.address}/{repository}:1"
    build_busybox_image(engine, reference, extra_lines=[f"RUN echo {unique('')} > /id"])
    try:
        read_push(
            stub.PushImage(
                pb.PushImageRequest(reference=reference, auth=_auth(auth_registry)), timeout=60
            )
        )
        media_type = pushed_manifest_type(engine_kind)
        served = registry_manifest(auth_registry, repository, "1", media_type)
        found = stub.InspectRegistryImage(
            pb.InspectRegistryImageRequest(reference=reference, auth=_auth(auth_registry)),
            timeout=30,
        )
        assert (found.digest, found.media_type, found.size_bytes) == (
            served.digest,
            media_type,
            served.size,
        )
    finally:
        remove_local(engine, reference)


@pytest.mark.parametrize("credentials", ["wrong password", "none"])
def test_inspect_without_valid_credentials_is_unauthenticated(
    stub: Stub, auth_registry: Registry, credentials: str
) -> None:
    wrong = unique("wrong-")
    request = pb.InspectRegistryImageRequest(reference=f"{auth_registry.address}/team/any:1")
    if credentials == "wrong password":
        request.auth.CopyFrom(_auth(auth_registry, password=wrong))
    with pytest.raises(grpc.RpcError) as caught:
        stub.InspectRegistryImage(request, timeout=30)
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert error_info(caught.value).reason == "REGISTRY_UNAUTHENTICATED"
    assert wrong not in str(caught.value.details())


@pytest.mark.parametrize("missing", ["tag", "repository"])
def test_inspect_of_what_the_registry_lacks_is_not_found(
    stub: Stub, open_registry: Registry, pushed: tuple[str, str], missing: str
) -> None:
    _, repository = pushed
    name = repository if missing == "tag" else unique("inspect/none-")
    with pytest.raises(grpc.RpcError) as caught:
        stub.InspectRegistryImage(
            pb.InspectRegistryImageRequest(reference=f"{open_registry.address}/{name}:nope"),
            timeout=30,
        )
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert error_info(caught.value).reason == "IMAGE_NOT_FOUND"


def test_inspect_at_a_registry_that_is_down_is_unavailable(stub: Stub) -> None:
    port = _closed_port()
    with pytest.raises(grpc.RpcError) as caught:
        stub.InspectRegistryImage(
            pb.InspectRegistryImageRequest(reference=f"127.0.0.1:{port}/team/app:1"), timeout=30
        )
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert error_info(caught.value).reason == "REGISTRY_UNAVAILABLE"
    assert f"127.0.0.1:{port}" in str(caught.value.details())


def test_inspect_outside_the_pull_allowlist_is_refused_before_any_request(
    engine: SandboxEngine, open_registry: Registry, pushed: tuple[str, str]
) -> None:
    reference, _ = pushed
    with (
        _allowing_pulls_of(engine, f"{open_registry.address}/allowed/**") as allowing,
        pytest.raises(grpc.RpcError) as caught,
    ):
        allowing.InspectRegistryImage(
            pb.InspectRegistryImageRequest(reference=reference), timeout=30
        )
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error_info(caught.value).reason == "REGISTRY_NOT_ALLOWED"


# CheckImageUpdates -----------------------------------------------------------------


def _check(stub: Stub, *references: str, **kwargs: object) -> list[pb.ImageUpdate]:
    answer = stub.CheckImageUpdates(
        pb.CheckImageUpdatesRequest(references=references, **kwargs),  # type: ignore[arg-type]
        timeout=60,
    )
    return list(answer.updates)


def test_update_check_follows_the_registry_tag(
    stub: Stub, engine: SandboxEngine, engine_kind: EngineKind, open_registry: Registry
) -> None:
    repository = unique("inspect/updates-")
    tag_1 = f"{open_registry.address}/{repository}:1"
    tag_2 = f"{open_registry.address}/{repository}:2"
    media_type = pushed_manifest_type(engine_kind)
    try:
        _push(engine, tag_1, unique("first"))
        _push(engine, tag_2, unique("second"))
        first = registry_manifest(open_registry, repository, "1", media_type)
        remove_local(engine, tag_1, tag_2)
        _, pulled = read_pull(stub.PullImage(pb.PullImageRequest(reference=tag_1), timeout=60))
        assert pulled.digest == first.digest

        [update] = _check(stub, tag_1)
        assert update.status == pb.UPDATE_STATUS_UP_TO_DATE, update
        assert update.registry_digest == first.digest
        assert first.digest in update.local_digests

        # A newer image is pushed under the same tag (here: tag 2's manifest put as 1).
        second = _get_manifest(open_registry, repository, "2", media_type)
        second_digest = _put_manifest(open_registry, repository, "1", media_type, second)
        [update] = _check(stub, tag_1)
        assert update.status == pb.UPDATE_STATUS_UPDATE_AVAILABLE, update
        assert update.registry_digest == second_digest
        assert list(update.local_digests) == [first.digest]

        read_pull(stub.PullImage(pb.PullImageRequest(reference=tag_1), timeout=60))
        [update] = _check(stub, tag_1)
        assert update.status == pb.UPDATE_STATUS_UP_TO_DATE, update
        assert second_digest in update.local_digests
        assert f"{open_registry.address}/{repository}@{second_digest}" in repo_digests(
            engine, tag_1
        )
    finally:
        remove_local(engine, tag_1, tag_2)


def test_update_check_of_a_pulled_index(
    stub: Stub, engine: SandboxEngine, index: tuple[str, str, str, bytes]
) -> None:
    # A multi-platform image is known by its index's digest, locally and at the registry.
    reference, _, _, body = index
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    try:
        _, pulled = read_pull(stub.PullImage(pb.PullImageRequest(reference=reference), timeout=60))
        assert pulled.digest == digest
        [update] = _check(stub, reference)
        assert (update.status, update.registry_digest) == (pb.UPDATE_STATUS_UP_TO_DATE, digest)
        assert digest in update.local_digests
    finally:
        remove_local(engine, reference)


def test_update_check_answers_each_image_on_its_own(
    stub: Stub,
    engine: SandboxEngine,
    engine_kind: EngineKind,
    open_registry: Registry,
    busybox_image: BuiltImage,
) -> None:
    repository = unique("inspect/each-")
    fine = f"{open_registry.address}/{repository}:1"
    gone = f"{open_registry.address}/{repository}:gone"
    never_pushed = f"{open_registry.address}/{unique('inspect/local-')}:1"
    # A registry the image was pulled from, stopped since.
    stopped = Registry(Path(tempfile.mkdtemp(prefix="isv-reg-", dir="/tmp")))
    stopped.start()
    down = f"{stopped.address}/team/app:1"
    try:
        _push(engine, fine, unique(""))
        engine.docker("tag", fine, down)
        engine.docker("push", down)
        remove_local(engine, fine, down)
        read_pull(stub.PullImage(pb.PullImageRequest(reference=fine), timeout=60))
        read_pull(stub.PullImage(pb.PullImageRequest(reference=down), timeout=60))
        stopped.stop()
        engine.docker("tag", fine, gone)
        engine.docker("tag", busybox_image.tag, never_pushed)
        absent = f"{open_registry.address}/{repository}:absent"
        never_pushed_reason = (
            "IMAGE_NOT_FOUND" if engine_kind.containerd_store else "NO_REGISTRY_DIGEST"
        )
        updates = _check(stub, fine, down, gone, never_pushed, absent)
        assert [(u.status, u.reason) for u in updates] == [
            (pb.UPDATE_STATUS_UP_TO_DATE, ""),
            (pb.UPDATE_STATUS_UNKNOWN, "REGISTRY_UNAVAILABLE"),
            # Tagged here, never pushed: the registry has no such tag.
            (pb.UPDATE_STATUS_UNKNOWN, "IMAGE_NOT_FOUND"),
            # Built here: no digest of that repository to compare (the containerd store
            # names every tag with the image's manifest digest: the registry is asked).
            (pb.UPDATE_STATUS_UNKNOWN, never_pushed_reason),
            # No such local image.
            (pb.UPDATE_STATUS_UNKNOWN, "IMAGE_NOT_FOUND"),
        ]
        assert stopped.address in updates[1].message
        assert updates[1].local_digests
    finally:
        stopped.stop()
        remove_local(engine, fine, down, gone, never_pushed)
        shutil.rmtree(stopped.base_dir, ignore_errors=True)


def test_update_check_with_bad_credentials_says_so_per_image(
    stub: Stub, auth_registry: Registry, engine: SandboxEngine
) -> None:
    reference = f"{auth_registry.address}/{unique('team/upd-')}:1"
    build_busybox_image(engine, reference, extra_lines=[f"RUN echo {unique('')} > /id"])
    right = _auth(auth_registry)
    wrong = unique("wrong-")
    try:
        read_push(stub.PushImage(pb.PushImageRequest(reference=reference, auth=right), timeout=60))
        remove_local(engine, reference)
        read_pull(stub.PullImage(pb.PullImageRequest(reference=reference, auth=right), timeout=60))

        [update] = _check(stub, reference, registry_auths=[right])
        assert update.status == pb.UPDATE_STATUS_UP_TO_DATE, update
        [update] = _check(stub, reference, registry_auths=[_auth(auth_registry, password=wrong)])
        assert (update.status, update.reason) == (
            pb.UPDATE_STATUS_UNKNOWN,
            "REGISTRY_UNAUTHENTICATED",
        )
        assert wrong not in update.message
        [update] = _check(stub, reference)
        assert (update.status, update.reason) == (
            pb.UPDATE_STATUS_UNKNOWN,
            "REGISTRY_UNAUTHENTICATED",
        )
    finally:
        remove_local(engine, reference)


def test_update_check_outside_the_pull_allowlist_asks_no_registry(
    engine: SandboxEngine, open_registry: Registry, busybox_image: BuiltImage
) -> None:
    reference = f"{open_registry.address}/{unique('outside/')}:1"
    engine.docker("tag", busybox_image.tag, reference)
    try:
        with _allowing_pulls_of(engine, f"{open_registry.address}/allowed/**") as allowing:
            answer = allowing.CheckImageUpdates(
                pb.CheckImageUpdatesRequest(references=[reference]), timeout=30
            )
        [update] = answer.updates
        assert (update.status, update.reason) == (pb.UPDATE_STATUS_UNKNOWN, "REGISTRY_NOT_ALLOWED")
    finally:
        engine.docker("image", "rm", reference)
