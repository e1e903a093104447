"""The servicer guard: every RPC is wrapped, refused calls never reach the wrapped
servicer (a build's context is not even read), and each write leaves one audit record
with its outcome, including a stream the caller abandoned."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, cast

import pytest

from imagesvc.core.access import WRITE_RPCS
from imagesvc.core.errors import NotFoundError
from imagesvc.core.identity import (
    CallOrigin,
    Identity,
    credential_problem,
    current_identity,
    current_origin,
)
from imagesvc.transport.access_guard import GuardedServicer
from imagesvc.transport.grpc.servicer import ImageServiceServicer
from imagesvc.v1 import image_service_pb2 as pb


class Inner:
    """Stands in for the real servicer: records what reached it."""

    def __init__(self) -> None:
        self.reached: list[str] = []

    async def TagImage(self, request: pb.TagImageRequest, context: object) -> pb.TagImageResponse:
        self.reached.append("TagImage")
        raise NotFoundError(f"no such image: {request.source}")

    async def PullImage(
        self, request: pb.PullImageRequest, context: object
    ) -> AsyncIterator[pb.PullImageResponse]:
        self.reached.append("PullImage")
        for _ in range(3):
            yield pb.PullImageResponse()
        yield pb.PullImageResponse(result=pb.PullImageResult(image_id="sha256:1", digest="d"))

    async def BuildImage(
        self, requests: AsyncIterator[pb.BuildImageRequest], context: object
    ) -> AsyncIterator[pb.BuildImageResponse]:
        self.reached.append("BuildImage")
        async for _ in requests:
            pass
        yield pb.BuildImageResponse(result=pb.BuildImageResult(image_id="sha256:2"))


def _guarded() -> tuple[GuardedServicer, Inner]:
    inner = Inner()
    return GuardedServicer(cast(ImageServiceServicer, inner)), inner


def _as(roles: set[str] | None, problem: str | None = None) -> None:
    identity = Identity("ci", frozenset(roles), "token") if roles is not None else None
    current_identity.set(identity)
    credential_problem.set(problem)
    current_origin.set(CallOrigin("grpc", "req-1", "ipv4:127.0.0.1:1"))


def _audit(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.__dict__ for r in caplog.records if r.name == "imagesvc.audit"]


def test_every_rpc_is_overridden() -> None:
    service = pb.DESCRIPTOR.services_by_name["ImageService"]
    for method in service.methods:
        assert method.name in GuardedServicer.__dict__, method.name
    assert {method.name for method in service.methods} >= WRITE_RPCS


def test_a_refused_build_reads_nothing(caplog: pytest.LogCaptureFixture) -> None:
    guarded, inner = _guarded()
    read: list[int] = []

    async def requests() -> AsyncIterator[pb.BuildImageRequest]:
        read.append(1)
        yield pb.BuildImageRequest(options=pb.BuildOptions(tags=["x:1"]))

    async def run() -> None:
        _as({"puller"})
        async for _ in guarded.BuildImage(requests(), cast(Any, None)):
            pass

    caplog.set_level(logging.INFO, "imagesvc.audit")
    with pytest.raises(Exception, match="needs the builder role"):
        asyncio.run(run())
    assert inner.reached == []
    assert read == []
    [record] = _audit(caplog)
    assert (record["rpc"], record["outcome"], record["code"]) == (
        "BuildImage",
        "denied",
        "PERMISSION_DENIED",
    )


def test_a_build_is_audited_with_its_tags_and_image(caplog: pytest.LogCaptureFixture) -> None:
    guarded, _ = _guarded()

    async def requests() -> AsyncIterator[pb.BuildImageRequest]:
        yield pb.BuildImageRequest(options=pb.BuildOptions(tags=["a:1", "b:2"]))
        yield pb.BuildImageRequest(context_chunk=b"tar")

    async def run() -> None:
        _as({"builder"})
        async for _ in guarded.BuildImage(requests(), cast(Any, None)):
            pass

    caplog.set_level(logging.INFO, "imagesvc.audit")
    asyncio.run(run())
    [record] = _audit(caplog)
    assert record["subject"] == {"tags": ["a:1", "b:2"]}
    assert record["result"] == {"image_id": "sha256:2"}
    assert (record["identity"], record["via"], record["transport"], record["request_id"]) == (
        "ci",
        "token",
        "grpc",
        "req-1",
    )


def test_a_failed_write_is_audited_with_its_code(caplog: pytest.LogCaptureFixture) -> None:
    guarded, inner = _guarded()

    async def run() -> None:
        _as({"admin"})
        await guarded.TagImage(pb.TagImageRequest(source="a", target="b"), cast(Any, None))

    caplog.set_level(logging.INFO, "imagesvc.audit")
    with pytest.raises(NotFoundError):
        asyncio.run(run())
    assert inner.reached == ["TagImage"]
    [record] = _audit(caplog)
    assert (record["outcome"], record["code"], record["reason"]) == (
        "failed",
        "NOT_FOUND",
        "IMAGE_NOT_FOUND",
    )


def test_an_abandoned_pull_is_audited_as_cancelled(caplog: pytest.LogCaptureFixture) -> None:
    guarded, _ = _guarded()

    async def run() -> None:
        _as({"puller"})
        stream = cast(
            AsyncGenerator[pb.PullImageResponse, None],
            guarded.PullImage(pb.PullImageRequest(reference="r"), cast(Any, None)),
        )
        await anext(stream)
        await stream.aclose()

    caplog.set_level(logging.INFO, "imagesvc.audit")
    asyncio.run(run())
    [record] = _audit(caplog)
    assert (record["outcome"], record["code"]) == ("cancelled", "CANCELLED")


def test_an_invalid_credential_is_refused_even_with_an_identity(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guarded, inner = _guarded()

    async def run() -> None:
        _as({"admin"}, problem="the bearer token is not valid (unknown or revoked)")
        await guarded.TagImage(pb.TagImageRequest(source="a", target="b"), cast(Any, None))

    caplog.set_level(logging.INFO, "imagesvc.audit")
    with pytest.raises(Exception, match="unknown or revoked"):
        asyncio.run(run())
    assert inner.reached == []
    assert _audit(caplog)[0]["reason"] == "CALLER_UNAUTHENTICATED"


def test_long_subjects_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    guarded, _ = _guarded()

    async def run() -> None:
        _as(None)
        await guarded.TagImage(pb.TagImageRequest(source="a" * 10_000, target="b"), cast(Any, None))

    caplog.set_level(logging.INFO, "imagesvc.audit")
    with pytest.raises(Exception, match="needs credentials"):
        asyncio.run(run())
    [record] = _audit(caplog)
    assert len(record["subject"]["source"]) <= 257


def test_user_information_in_subjects_is_not_audited(caplog: pytest.LogCaptureFixture) -> None:
    """`user:password@registry/app` is a common mistake; the audit keeps no password."""
    guarded, _ = _guarded()

    async def run() -> None:
        _as({"admin"})
        await guarded.TagImage(
            pb.TagImageRequest(source="ci:hunter2@127.0.0.1:5000/a:1", target="b"),
            cast(Any, None),
        )

    caplog.set_level(logging.INFO, "imagesvc.audit")
    with pytest.raises(NotFoundError):
        asyncio.run(run())
    [record] = _audit(caplog)
    assert record["subject"]["source"] == "[REDACTED]@127.0.0.1:5000/a:1"
    assert "hunter2" not in caplog.text
