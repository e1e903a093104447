"""Helpers for the tests of the local-image RPCs (list, get, history, tag, remove, prune):
throwaway images under a unique label, and what the docker CLI says about images.

Every throwaway image carries ``SCOPE_LABEL=<scope>`` so that a test can filter on it
and ``Throwaway.cleanup()`` can remove everything it made by that label, whatever state
the test left it in. The session busybox image carries no label, so it is never touched.
"""

from __future__ import annotations

import re
import time
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest

from devtools.sandbox import BuiltImage, SandboxEngine, build_busybox_image
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc
from tests.integration.rpc_errors import error_info

SCOPE_LABEL = "org.imagesvc-test.scope"

Stub = image_service_pb2_grpc.ImageServiceStub

# "UPPER/case": Engine 26's reference parser takes UPPER for a registry host, Engine 20.10
# refuses the name ("repository name must be lowercase"); the service refuses it itself
# (core/references.py), so every engine gives INVALID_REFERENCE, never a missing image.
MALFORMED = ["UPPER/case", "UPPERCASE", "a b", "x:", "x@sha256:zz", "-x", "x::1", " x"]

# Images built on images built on ... a throwaway: more than the tests make.
_CLEANUP_PASSES = 10

_BARE_ID = re.compile(r"[0-9a-f]{64}")
_ENGINE_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z")


def unique_repo(kind: str) -> str:
    """A repository name no other test uses."""
    return f"imagesvc-test/{kind}-{uuid.uuid4().hex[:12]}"


def familiar_name(name: str) -> str:
    """Docker's familiar form of an image name (what Docker itself reports and the
    service promises on every engine): Podman says ``docker.io/library/busybox:1`` for
    Docker's ``busybox:1`` and ``docker.io/acc/x:1`` for ``acc/x:1``."""
    rest = name.removeprefix("docker.io/")
    if rest == name:
        return name
    official = rest.removeprefix("library/")
    if official != rest and "/" not in official.split("@")[0].split(":")[0]:
        return official
    return rest


def full_id(text: str) -> str:
    """An image id as Docker prints it: Podman's CLI prints the bare hex."""
    return f"sha256:{text}" if _BARE_ID.fullmatch(text) else text


def engine_document(engine: SandboxEngine, ref: str) -> dict[str, Any]:
    """The Engine's inspect document as it is (``inspect_json``), asked of its API at its
    newest version, as the service asks: a docker CLI older than the Engine (Debian 12's
    20.10 CLI beside Engine 26) would get an older API version's fields."""
    document = engine.api_get(f"/images/{urllib.parse.quote(ref, safe='/:@')}/json")
    assert isinstance(document, dict)
    return document


def inspect(engine: SandboxEngine, ref: str) -> dict[str, Any]:
    """``docker image inspect REF`` as Docker words it: familiar names, ``sha256:`` ids
    (what the service's fields promise on every engine)."""
    document = engine_document(engine, ref)
    for key in ("RepoTags", "RepoDigests"):
        if document.get(key):
            document[key] = [familiar_name(name) for name in document[key]]
    if document.get("Parent"):
        document["Parent"] = full_id(document["Parent"])
    return document


def exists(engine: SandboxEngine, ref: str) -> bool:
    """Whether the Engine has an image by this reference or id."""
    result = engine.docker("image", "inspect", "--format", "{{.Id}}", ref, check=False)
    return result.returncode == 0


def tags_of(engine: SandboxEngine, ref: str) -> list[str]:
    return sorted(inspect(engine, ref)["RepoTags"] or [])


def cli_list_ids(engine: SandboxEngine, *filters: str, all: bool = False) -> set[str]:
    """Ids ``docker image ls --filter ...`` shows (one per image, however many tags)."""
    args = ["image", "ls", "--no-trunc", "--quiet"]
    if all:
        args.append("--all")
    for condition in filters:
        args += ["--filter", condition]
    return {full_id(text) for text in engine.docker(*args).stdout.split()}


def engine_time(text: str) -> tuple[int, int]:
    """Seconds and nanoseconds of an Engine timestamp such as 2026-01-02T03:04:05.123456789Z."""
    match = _ENGINE_TIME.fullmatch(text)
    assert match is not None, f"unexpected Engine time {text!r}"
    seconds = int(datetime.fromisoformat(match[1]).replace(tzinfo=UTC).timestamp())
    return seconds, int((match[2] or "").ljust(9, "0"))


def cli_time(text: str) -> int:
    """Unix seconds of an RFC 3339 time the CLI prints (``--human=false``)."""
    return int(datetime.fromisoformat(text).timestamp())


def expect_error(
    call: Any, request: Any, code: grpc.StatusCode, reason: str, *, timeout: float = 20
) -> grpc.RpcError:
    """Makes a call that must fail with this code and ErrorInfo reason; returns the error."""
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=timeout)
    error = caught.value
    assert isinstance(error, grpc.Call)
    assert error.code() == code, (error.code(), error.details())
    assert error_info(error).reason == reason, error.details()
    return error


def in_step(stub: Stub, engine: SandboxEngine, *, within: float = 10.0) -> None:
    """Returns once the service lists what the Engine lists (ids and tags, with `all`).

    For tests that change images on the Engine directly, as others (the docker CLI,
    kubelet) do: the service's live image index shows such a change a few milliseconds
    after the Engine's event, not at once (README, Consistency). A change the index
    never shows fails here."""
    deadline = time.monotonic() + within
    while True:
        summaries = engine.api_get("/images/json?all=1")
        assert isinstance(summaries, list)
        engine_view = {
            full_id(str(s["Id"])): [t for t in s.get("RepoTags") or () if t != "<none>:<none>"]
            for s in summaries
        }
        reply = stub.ListImages(pb.ListImagesRequest(all=True, page_size=1000), timeout=20)
        service_view = {image.id: sorted(image.repo_tags) for image in reply.images}
        if _familiar_view(service_view) == _familiar_view(engine_view):
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the service does not list the Engine's images after {within:g} s:"
                f" service {service_view}, Engine {engine_view}"
            )
        time.sleep(0.02)


def _familiar_view(view: Mapping[str, list[str]]) -> dict[str, list[str]]:
    return {image_id: sorted(familiar_name(t) for t in tags) for image_id, tags in view.items()}


def assert_serving(stub: Stub, busybox: BuiltImage) -> None:
    """The server still answers: GetImage of the session busybox image succeeds."""
    reply = stub.GetImage(pb.GetImageRequest(image=busybox.tag), timeout=10)
    assert reply.image.id == busybox.id


class Throwaway:
    """Builds images labelled with a scope of their own; ``cleanup()`` removes them all,
    every tag set on them and the containers created through ``create_container``."""

    def __init__(self, engine: SandboxEngine, stub: Stub | None = None) -> None:
        """With `stub`, each build returns once the service lists it (`in_step`)."""
        self.engine = engine
        self.scope = uuid.uuid4().hex[:16]
        self._stub = stub
        self._containers: list[str] = []

    @property
    def label(self) -> str:
        """The label filter that selects this scope's images: ``key=value``."""
        return f"{SCOPE_LABEL}={self.scope}"

    def build(
        self,
        tag: str,
        *,
        extra_lines: Sequence[str] = (),
        labels: Mapping[str, str] | None = None,
    ) -> BuiltImage:
        image_id = build_busybox_image(
            self.engine,
            tag,
            extra_lines=extra_lines,
            labels={SCOPE_LABEL: self.scope, **(labels or {})},
        )
        if self._stub is not None:
            in_step(self._stub, self.engine)
        return BuiltImage(tag=tag, id=image_id)

    def create_container(self, image: str) -> str:
        """A created (never started) container of ``image``, removed by ``cleanup()``."""
        created = self.engine.docker("create", "--network", "none", image, "true")
        container = created.stdout.strip()
        self._containers.append(container)
        return container

    def remove_container(self, container: str) -> None:
        self.engine.docker("rm", "--force", container)
        self._containers.remove(container)

    def cleanup(self) -> None:
        if self._containers:
            self.engine.docker("rm", "--force", *self._containers, check=False)
            self._containers.clear()
        # Removed by id rather than `image prune --all`, which Podman refuses. An image
        # with children cannot be removed before them: each pass removes at least the
        # images nothing is built on (their untagged parents go with them).
        for _ in range(_CLEANUP_PASSES):
            left = cli_list_ids(self.engine, f"label={self.label}", all=True)
            if not left:
                return
            self.engine.docker("image", "rm", "--force", *sorted(left), check=False)
        raise AssertionError(f"images of scope {self.scope} left after clean-up: {left}")
