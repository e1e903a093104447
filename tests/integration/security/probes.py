"""One harmless call per ImageService and FleetService RPC, over gRPC and REST: what an
authorized caller gets is known (an unknown local image is NOT_FOUND, an empty build
context INVALID_ARGUMENT, a prune whose label matches nothing OK, ...), so a probe proves
that the call passed authorization and reached the core, without changing anything that
matters."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import grpc
import httpx
from grpc_status import rpc_status

from devtools.sandbox import Registry
from imagesvc.v1 import fleet_service_pb2 as fleet_pb
from imagesvc.v1 import fleet_service_pb2_grpc, image_pb2, image_service_pb2_grpc
from imagesvc.v1 import image_service_pb2 as pb
from tests.integration.rpc_errors import error_info

Stub = image_service_pb2_grpc.ImageServiceStub
FleetStub = fleet_service_pb2_grpc.FleetServiceStub
Metadata = tuple[tuple[str, str], ...]

ABSENT_IMAGE = "imagesvc-test/authz-absent:0"
NO_MATCH_LABEL = "imagesvc-test.authz-never-set=1"
# Refused before anything is read (a watch that started would never end by itself).
MALFORMED_REFERENCE = "UPPER/Case"


@dataclass(frozen=True)
class Probe:
    rpc: str
    # The outcome of this call for a caller that may make it.
    authorized_code: grpc.StatusCode
    # Called with the ImageService stub, or with the FleetService stub when `fleet`.
    call: Callable[[Any, Metadata], object]
    fleet: bool = False


def _drain(responses: Iterator[object]) -> list[object]:
    return list(responses)


def _build_requests() -> Iterator[pb.BuildImageRequest]:
    # Options only: the context is empty, which the core refuses before the Engine.
    yield pb.BuildImageRequest(options=pb.BuildOptions(tags=["imagesvc-test/authz-build:1"]))


def _import_requests() -> Iterator[pb.ImportImagesRequest]:
    # No archive at all, which the core refuses before the Engine.
    return iter(())


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
            "WatchImages",
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda stub, md: _drain(
                stub.WatchImages(
                    pb.WatchImagesRequest(filter=pb.ImageFilter(before=MALFORMED_REFERENCE)),
                    metadata=md,
                    timeout=30,
                )
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
            "InspectRegistryImage",
            grpc.StatusCode.NOT_FOUND,
            lambda stub, md: stub.InspectRegistryImage(
                pb.InspectRegistryImageRequest(reference=absent_remote), metadata=md, timeout=60
            ),
        ),
        Probe(
            "CheckImageUpdates",
            grpc.StatusCode.OK,  # the absent local image is that image's UNKNOWN answer
            lambda stub, md: stub.CheckImageUpdates(
                pb.CheckImageUpdatesRequest(references=[absent_remote]), metadata=md, timeout=60
            ),
        ),
        Probe(
            "BuildImage",
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda stub, md: _drain(stub.BuildImage(_build_requests(), metadata=md, timeout=60)),
        ),
        Probe(
            "ImportImages",
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda stub, md: _drain(stub.ImportImages(_import_requests(), metadata=md, timeout=60)),
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
        Probe(
            "ExportImages",
            grpc.StatusCode.NOT_FOUND,
            lambda stub, md: _drain(
                stub.ExportImages(
                    pb.ExportImagesRequest(images=[ABSENT_IMAGE]), metadata=md, timeout=30
                )
            ),
        ),
        Probe(
            "GetDiskUsage",
            grpc.StatusCode.OK,
            lambda stub, md: stub.GetDiskUsage(pb.GetDiskUsageRequest(), metadata=md, timeout=60),
        ),
        # FleetService, on a server without peers: the fleet is that node.
        Probe(
            "ListNodes",
            grpc.StatusCode.OK,
            lambda stub, md: stub.ListNodes(fleet_pb.ListNodesRequest(), metadata=md, timeout=30),
            fleet=True,
        ),
        Probe(
            "FindImage",
            grpc.StatusCode.OK,  # absent on the node: its answer, not a failure
            lambda stub, md: stub.FindImage(
                fleet_pb.FindImageRequest(image=ABSENT_IMAGE), metadata=md, timeout=30
            ),
            fleet=True,
        ),
        Probe(
            "PullImageOnNodes",
            grpc.StatusCode.OK,  # the node's NOT_FOUND is in the summary, not the status
            lambda stub, md: _drain(
                stub.PullImageOnNodes(
                    fleet_pb.PullImageOnNodesRequest(reference=absent_remote),
                    metadata=md,
                    timeout=60,
                )
            ),
            fleet=True,
        ),
        Probe(
            "RemoveImageOnNodes",
            grpc.StatusCode.OK,  # absent on the node: skipped, not a failure
            lambda stub, md: stub.RemoveImageOnNodes(
                fleet_pb.RemoveImageOnNodesRequest(image=ABSENT_IMAGE), metadata=md, timeout=30
            ),
            fleet=True,
        ),
        Probe(
            "PruneImagesOnNodes",
            grpc.StatusCode.OK,
            lambda stub, md: stub.PruneImagesOnNodes(
                fleet_pb.PruneImagesOnNodesRequest(
                    prune=pb.PruneImagesRequest(labels=[NO_MATCH_LABEL])
                ),
                metadata=md,
                timeout=60,
            ),
            fleet=True,
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


def outcome(probe: Probe, stub: Stub | FleetStub, metadata: Metadata) -> grpc.RpcError | None:
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


# REST --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RestProbe:
    rpc: str
    # The outcome of this call for a caller that may make it.
    authorized_code: grpc.StatusCode
    method: str
    path: str
    json: dict[str, object] | None = None
    content: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()


def rest_probes(open_registry: Registry, auth_registry: Registry) -> dict[str, RestProbe]:
    image = quote(ABSENT_IMAGE, safe="")
    absent_remote = f"{open_registry.address}/imagesvc-authz/absent:1"
    registry_auth = {
        "username": auth_registry.username or "",
        "password": auth_registry.password or "",
        "serverAddress": auth_registry.address,
    }
    probes = [
        RestProbe(
            "ListImages",
            grpc.StatusCode.OK,
            "GET",
            "/v1/images?pageSize=1&filter.references=imagesvc-test%2Fauthz-none*",
        ),
        RestProbe("GetImage", grpc.StatusCode.NOT_FOUND, "GET", f"/v1/images/{image}"),
        RestProbe(
            "GetImageHistory", grpc.StatusCode.NOT_FOUND, "GET", f"/v1/images/{image}/history"
        ),
        RestProbe(
            "WatchImages",
            grpc.StatusCode.INVALID_ARGUMENT,
            "GET",
            f"/v1/images:watch?filter.before={quote(MALFORMED_REFERENCE, safe='')}",
        ),
        RestProbe(
            "PullImage",
            grpc.StatusCode.NOT_FOUND,
            "POST",
            "/v1/images:pull",
            {"reference": absent_remote},
        ),
        RestProbe(
            "CheckRegistryAuth",
            grpc.StatusCode.OK,
            "POST",
            "/v1/registries:checkAuth",
            {"auth": registry_auth},
        ),
        RestProbe(
            "BuildImage",
            grpc.StatusCode.INVALID_ARGUMENT,
            "POST",
            "/v1/images:build?tags=imagesvc-test%2Fauthz-build%3A1",
            content=b"",
            headers=(("content-type", "application/x-tar"),),
        ),
        RestProbe(
            "ImportImages",
            grpc.StatusCode.INVALID_ARGUMENT,
            "POST",
            "/v1/images:import",
            content=b"",
            headers=(("content-type", "application/x-tar"),),
        ),
        RestProbe(
            "TagImage",
            grpc.StatusCode.NOT_FOUND,
            "POST",
            "/v1/images:tag",
            {"source": ABSENT_IMAGE, "target": "imagesvc-test/authz-tag:1"},
        ),
        RestProbe(
            "PushImage",
            grpc.StatusCode.NOT_FOUND,
            "POST",
            "/v1/images:push",
            {"reference": absent_remote},
        ),
        RestProbe("RemoveImage", grpc.StatusCode.NOT_FOUND, "DELETE", f"/v1/images/{image}"),
        RestProbe(
            "PruneImages",
            grpc.StatusCode.OK,
            "POST",
            "/v1/images:prune",
            {"labels": [NO_MATCH_LABEL]},
        ),
        RestProbe(
            "InspectRegistryImage",
            grpc.StatusCode.NOT_FOUND,
            "POST",
            "/v1/images:inspectRegistry",
            {"reference": absent_remote},
        ),
        RestProbe(
            "CheckImageUpdates",
            grpc.StatusCode.OK,
            "POST",
            "/v1/images:checkUpdates",
            {"references": [absent_remote]},
        ),
        RestProbe(
            "ExportImages", grpc.StatusCode.NOT_FOUND, "GET", f"/v1/images:export?images={image}"
        ),
        RestProbe("GetDiskUsage", grpc.StatusCode.OK, "GET", "/v1/diskUsage"),
        RestProbe("ListNodes", grpc.StatusCode.OK, "GET", "/v1/nodes"),
        RestProbe("FindImage", grpc.StatusCode.OK, "GET", f"/v1/images:findOnNodes?image={image}"),
        RestProbe(
            "PullImageOnNodes",
            grpc.StatusCode.OK,
            "POST",
            "/v1/images:pullOnNodes",
            {"reference": absent_remote},
        ),
        RestProbe(
            "RemoveImageOnNodes",
            grpc.StatusCode.OK,
            "POST",
            "/v1/images:removeOnNodes",
            {"image": ABSENT_IMAGE},
        ),
        RestProbe(
            "PruneImagesOnNodes",
            grpc.StatusCode.OK,
            "POST",
            "/v1/images:pruneOnNodes",
            {"prune": {"labels": [NO_MATCH_LABEL]}},
        ),
    ]
    return {probe.rpc: probe for probe in probes}


@dataclass(frozen=True)
class RestOutcome:
    http_status: int
    # The google.rpc.Status of a failure: the body, or a stream's `error` line.
    error: dict[str, Any] | None
    # Whether result lines came before the error (the HTTP status is 200 then).
    streamed: bool

    @property
    def code(self) -> grpc.StatusCode:
        if self.error is None:
            return grpc.StatusCode.OK
        [code] = [c for c in grpc.StatusCode if c.value[0] == self.error["code"]]
        return code


def rest_call(
    http: httpx.Client, probe: RestProbe, headers: tuple[tuple[str, str], ...]
) -> RestOutcome:
    response = http.request(
        probe.method,
        probe.path,
        json=probe.json,
        content=probe.content,
        headers=[*probe.headers, *headers],
    )
    lines = [json.loads(line) for line in response.text.splitlines() if line.strip()]
    if response.status_code != 200:
        [document] = lines
        return RestOutcome(response.status_code, document.get("error", document), False)
    errors = [line["error"] for line in lines if isinstance(line, dict) and "error" in line]
    return RestOutcome(200, errors[-1] if errors else None, bool(errors))


def rest_reason(status: dict[str, Any] | None) -> str:
    assert status is not None
    [info] = [d for d in status["details"] if d["@type"].endswith("google.rpc.ErrorInfo")]
    assert info["domain"] == "imagesvc"
    reason: str = info["reason"]
    return reason
