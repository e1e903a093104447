"""One harmless call per ImageService RPC, over gRPC: what an authorized caller gets is
known (an unknown local image is NOT_FOUND, an empty build context INVALID_ARGUMENT, a
prune whose label matches nothing OK, ...), so a probe proves that the call passed
authorization and reached the core, without changing anything that matters."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
from grpc_status import rpc_status

from devtools.sandbox import Registry
from imagesvc.v1 import image_pb2, image_service_pb2_grpc
from imagesvc.v1 import image_service_pb2 as pb
from tests.integration.rpc_errors import error_info

Stub = image_service_pb2_grpc.ImageServiceStub
Metadata = tuple[tuple[str, str], ...]

ABSENT_IMAGE = "imagesvc-test/authz-absent:0"
NO_MATCH_LABEL = "imagesvc-test.authz-never-set=1"


@dataclass(frozen=True)
class Probe:
    rpc: str
    # The outcome of this call for a caller that may make it.
    authorized_code: grpc.StatusCode
    call: Callable[[Stub, Metadata], object]


def _drain(responses: Iterator[object]) -> list[object]:
    return list(responses)


def _build_requests() -> Iterator[pb.BuildImageRequest]:
    # Options only: the context is empty, which the core refuses before the Engine.
    yield pb.BuildImageRequest(options=pb.BuildOptions(tags=["imagesvc-test/authz-build:1"]))


def grpc_probes(open_registry: Registry, auth_registry: Registry) -> dict[str, Probe]:
    registry_auth = image_pb2.RegistryAuth(
        username=auth_registry.username or "",
        password=auth_registry.password or "",
        server_address=auth_registry.address,
    )
    absent_remote = f"{open_registry.address}/imagesvc-authz/absent:1"
    probes = [
        Probe(
            "ListImages",
            grpc.StatusCode.OK,
            lambda stub, md: stub.ListImages(
                pb.ListImagesRequest(
                    filter=pb.ImageFilter(references=["imagesvc-test/authz-none*"]), page_size=1
                ),
                metadata=md,
                timeout=30,
            ),
        ),
        Probe(
            "GetImage",
            grpc.StatusCode.NOT_FOUND,
            lambda stub, md: stub.GetImage(
                pb.GetImageRequest(image=ABSENT_IMAGE), metadata=md, timeout=30
            ),
        ),
        Probe(
            "GetImageHistory",
            grpc.StatusCode.NOT_FOUND,
            lambda stub, md: stub.GetImageHistory(
                pb.GetImageHistoryRequest(image=ABSENT_IMAGE), metadata=md, timeout=30
            ),
        ),
        Probe(
            "PullImage",
            grpc.StatusCode.NOT_FOUND,
            lambda stub, md: _drain(
                stub.PullImage(
                    pb.PullImageRequest(reference=absent_remote), metadata=md, timeout=60
                )
            ),
        ),
        Probe(
            "CheckRegistryAuth",
            grpc.StatusCode.OK,
            lambda stub, md: stub.CheckRegistryAuth(
                pb.CheckRegistryAuthRequest(auth=registry_auth), metadata=md, timeout=60
            ),
        ),
        Probe(
            "BuildImage",
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda stub, md: _drain(stub.BuildImage(_build_requests(), metadata=md, timeout=60)),
        ),
        Probe(
            "TagImage",
            grpc.StatusCode.NOT_FOUND,
            lambda stub, md: stub.TagImage(
                pb.TagImageRequest(source=ABSENT_IMAGE, target="imagesvc-test/authz-tag:1"),
                metadata=md,
                timeout=30,
            ),
        ),
        Probe(
            "PushImage",
            grpc.StatusCode.NOT_FOUND,
            lambda stub, md: _drain(
                stub.PushImage(
                    pb.PushImageRequest(reference=absent_remote), metadata=md, timeout=60
                )
            ),
        ),
        Probe(
            "RemoveImage",
            grpc.StatusCode.NOT_FOUND,
            lambda stub, md: stub.RemoveImage(
                pb.RemoveImageRequest(image=ABSENT_IMAGE), metadata=md, timeout=30
            ),
        ),
        Probe(
            "PruneImages",
            grpc.StatusCode.OK,
            lambda stub, md: stub.PruneImages(
                pb.PruneImagesRequest(labels=[NO_MATCH_LABEL]), metadata=md, timeout=60
            ),
        ),
    ]
    return {probe.rpc: probe for probe in probes}


def failure(call: Callable[[], object]) -> grpc.RpcError | None:
    """The error of the failed call, or None when it succeeded."""
    try:
        call()
    except grpc.RpcError as error:
        return error
    return None


def outcome(probe: Probe, stub: Stub, metadata: Metadata) -> grpc.RpcError | None:
    return failure(lambda: probe.call(stub, metadata))


def code_and_reason(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    """How a call ended: its code and, for a failure this service answered, its reason."""
    error = failure(call)
    if error is None:
        return grpc.StatusCode.OK, ""
    assert isinstance(error, grpc.Call)
    if rpc_status.from_call(error) is None:
        # Not answered by this service (e.g. the TLS handshake failed): no rich status.
        assert error.code() is grpc.StatusCode.UNAVAILABLE, error
        return error.code(), ""
    return error.code(), error_info(error).reason
