"""The local-image routes over REST (list, inspect, history, tag, remove, prune) against
the sandboxed engine: JSON checked against the docker CLI, errors as google.rpc.Status
with grpc-gateway's HTTP statuses, and the same answers as gRPC for the same calls."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import grpc
import httpx
import pytest
from grpc_status import rpc_status

from devtools.sandbox import BuiltImage, Engine
from imagesvc.transport.rest.json import to_value
from imagesvc.v1 import image_service_pb2 as pb
from tests.integration.local_images import (
    MALFORMED,
    Stub,
    Throwaway,
    cli_list_ids,
    engine_time,
    exists,
    inspect,
    tags_of,
    unique_repo,
)
from tests.integration.rest.conftest import expect_status, segment


@pytest.fixture
def throwaway(engine: Engine, stub: Stub) -> Iterator[Throwaway]:
    made = Throwaway(engine, stub)
    yield made
    made.cleanup()


def _time(text: str) -> tuple[int, int]:
    """Seconds and nanoseconds of a protobuf JSON timestamp."""
    head, _, fraction = text.removesuffix("Z").partition(".")
    seconds = int(datetime.fromisoformat(head + "+00:00").timestamp())
    return seconds, int(fraction.ljust(9, "0")) if fraction else 0


def test_get_image_matches_docker_inspect(
    rest: httpx.Client, stub: Stub, engine: Engine, throwaway: Throwaway
) -> None:
    repo = unique_repo("rest-get")
    built = throwaway.build(
        f"{repo}:1",
        extra_lines=["ENV GREETING=hello", "WORKDIR /srv", "EXPOSE 8080", 'CMD ["sh"]'],
        labels={"org.example.team": "images"},
    )
    registry_style = f"127.0.0.1:5999/team/{repo.split('/')[-1]}:1.0"
    engine.docker("tag", built.tag, registry_style)
    document = inspect(engine, built.id)

    response = rest.get(f"/v1/images/{segment(registry_style)}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    image = response.json()["image"]
    assert image["id"] == document["Id"] == built.id
    assert (
        sorted(image["repoTags"])
        == sorted(document["RepoTags"])
        == sorted([built.tag, registry_style])
    )
    assert image["repoDigests"] == document["RepoDigests"] == []
    assert image["parent"] == document["Parent"]
    seconds, nanos = engine_time(document["Created"])
    assert _time(image["created"]) == (seconds, nanos // 1000 * 1000)
    assert image["size"] == str(document["Size"])  # int64 as a string
    assert image["os"] == document["Os"]
    assert image["architecture"] == document["Architecture"]
    assert image["rootFsLayers"] == document["RootFS"]["Layers"]
    assert image["labels"] == document["Config"]["Labels"]
    config = image["config"]
    assert config["env"] == document["Config"]["Env"]
    assert config["cmd"] == document["Config"]["Cmd"] == ["sh"]
    assert config["workingDir"] == "/srv"
    assert config["exposedPorts"] == ["8080/tcp"]
    assert config["entrypoint"] == []  # unpopulated fields are written, as grpc-gateway does
    assert config["healthcheck"] is None
    assert json.loads(image["inspectJson"]) == document

    # The same answer as gRPC, field for field.
    grpc_reply = stub.GetImage(pb.GetImageRequest(image=registry_style), timeout=20)
    assert response.json() == to_value(grpc_reply)


def test_history_matches_the_cli_and_grpc(
    rest: httpx.Client, stub: Stub, engine: Engine, busybox_image: BuiltImage
) -> None:
    response = rest.get(f"/v1/images/{segment(busybox_image.tag)}/history")
    assert response.status_code == 200, response.text
    entries = response.json()["entries"]
    cli = engine.docker("history", "--no-trunc", "--format", "{{.ID}}", busybox_image.tag)
    assert [e["id"] for e in entries] == cli.stdout.split()
    assert entries[0]["id"] == busybox_image.id
    assert all(isinstance(e["size"], str) for e in entries)
    grpc_reply = stub.GetImageHistory(
        pb.GetImageHistoryRequest(image=busybox_image.tag), timeout=20
    )
    assert response.json() == to_value(grpc_reply)


def test_list_with_filters_and_pages(
    rest: httpx.Client, stub: Stub, engine: Engine, throwaway: Throwaway
) -> None:
    repo = unique_repo("rest-list")
    built = [
        throwaway.build(f"{repo}:{n}", extra_lines=[f"RUN echo {n} > /n"], labels={"n": str(n)})
        for n in range(3)
    ]
    params = {"filter.labels": throwaway.label, "pageSize": "2"}
    first = rest.get("/v1/images", params=params)
    assert first.status_code == 200, first.text
    page = first.json()
    assert page["totalSize"] == 3
    assert len(page["images"]) == 2
    assert page["nextPageToken"]
    second = rest.get("/v1/images", params={**params, "pageToken": page["nextPageToken"]})
    rest_page = second.json()
    assert rest_page["nextPageToken"] == ""
    listed = [i["id"] for i in page["images"] + rest_page["images"]]
    assert set(listed) == cli_list_ids(engine, f"label={throwaway.label}")
    assert set(listed) == {b.id for b in built}
    # Newest first (the list's times are whole seconds: quick builds may tie).
    created = [_time(i["created"]) for i in page["images"] + rest_page["images"]]
    assert created == sorted(created, reverse=True)

    # Repeated keys, JSON and proto names, a reference pattern.
    both = rest.get(
        f"/v1/images?filter.labels={throwaway.label}&filter.labels=n%3D1"
        f"&filter.references={repo}:*&page_size=10"
    )
    assert [i["id"] for i in both.json()["images"]] == [built[1].id]
    assert both.json() == to_value(
        stub.ListImages(
            pb.ListImagesRequest(
                filter=pb.ImageFilter(labels=[throwaway.label, "n=1"], references=[f"{repo}:*"]),
                page_size=10,
            ),
            timeout=20,
        )
    )
    dangling = rest.get(
        "/v1/images", params={"filter.labels": throwaway.label, "filter.dangling": "true"}
    )
    assert dangling.json()["images"] == []


def test_tag_then_remove(rest: httpx.Client, engine: Engine, throwaway: Throwaway) -> None:
    repo = unique_repo("rest-tag")
    built = throwaway.build(f"{repo}:1")
    target = f"127.0.0.1:5999/{repo}:copy"
    tagged = rest.post("/v1/images:tag", json={"source": built.tag, "target": target})
    assert tagged.status_code == 200, tagged.text
    assert tagged.json() == {"id": built.id, "target": target}
    assert tags_of(engine, built.id) == sorted([built.tag, target])

    removed = rest.delete(f"/v1/images/{segment(target)}")
    assert removed.status_code == 200, removed.text
    assert removed.json() == {"untagged": [target], "deleted": []}
    assert tags_of(engine, built.id) == [built.tag]

    gone = rest.delete(f"/v1/images/{segment(built.tag)}", params={"noPrune": "true"})
    assert gone.status_code == 200
    assert gone.json()["untagged"] == [built.tag]
    assert built.id in gone.json()["deleted"]
    assert not exists(engine, built.id)


def test_remove_an_image_in_use_needs_force(
    rest: httpx.Client, engine: Engine, throwaway: Throwaway
) -> None:
    built = throwaway.build(f"{unique_repo('rest-inuse')}:1")
    throwaway.create_container(built.tag)
    refused = rest.delete(f"/v1/images/{segment(built.id)}")
    expect_status(refused, 400, grpc.StatusCode.FAILED_PRECONDITION.value[0], "IMAGE_IN_USE")
    assert exists(engine, built.id)
    forced = rest.delete(f"/v1/images/{segment(built.id)}", params={"force": "1"})
    assert forced.status_code == 200, forced.text
    assert not exists(engine, built.id)


def test_prune_by_label(rest: httpx.Client, engine: Engine, throwaway: Throwaway) -> None:
    repo = unique_repo("rest-prune")
    old = throwaway.build(f"{repo}:1", extra_lines=["RUN echo old > /v"])
    throwaway.build(f"{repo}:1", extra_lines=["RUN echo new > /v"])  # leaves `old` dangling
    assert tags_of(engine, old.id) == []
    response = rest.post("/v1/images:prune", json={"labels": [throwaway.label]})
    assert response.status_code == 200, response.text
    pruned = response.json()
    assert old.id in pruned["deleted"]
    assert isinstance(pruned["spaceReclaimedBytes"], str)
    assert not exists(engine, old.id)
    assert exists(engine, f"{repo}:1")


def test_unknown_image_is_404(rest: httpx.Client, stub: Stub, busybox_image: BuiltImage) -> None:
    missing = f"{unique_repo('rest-missing')}:1"
    for method in ("GET", "DELETE"):
        response = rest.request(method, f"/v1/images/{segment(missing)}")
        status = expect_status(response, 404, 5, "IMAGE_NOT_FOUND")
        assert missing in status["message"]
    history = rest.get(f"/v1/images/{segment(missing)}/history")
    expect_status(history, 404, 5, "IMAGE_NOT_FOUND")
    tag = rest.post("/v1/images:tag", json={"source": missing, "target": "x:1"})
    expect_status(tag, 404, 5, "IMAGE_NOT_FOUND")
    # The same Status gRPC carries in its details.
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetImage(pb.GetImageRequest(image=missing), timeout=20)
    grpc_status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
    assert grpc_status is not None
    assert rest.get(f"/v1/images/{segment(missing)}").json() == to_value(grpc_status)


@pytest.mark.parametrize("reference", MALFORMED)
def test_bad_reference_is_400(rest: httpx.Client, reference: str) -> None:
    response = rest.get(f"/v1/images/{segment(reference)}")
    expect_status(response, 400, 3, "INVALID_REFERENCE")


def test_bad_requests_are_400(rest: httpx.Client, busybox_image: BuiltImage) -> None:
    expect_status(rest.get("/v1/images?pageSize=-1"), 400, 3, "INVALID_ARGUMENT")
    expect_status(rest.get("/v1/images?pageToken=garbage"), 400, 3, "INVALID_PAGE_TOKEN")
    expect_status(rest.get("/v1/images?pageSize=abc"), 400, 3, "INVALID_ARGUMENT")
    expect_status(rest.post("/v1/images:tag", content=b"{not json"), 400, 3, "INVALID_ARGUMENT")
    expect_status(
        rest.post("/v1/images:tag", json={"source": busybox_image.tag}), 400, 3, "INVALID_ARGUMENT"
    )
    expect_status(
        rest.post("/v1/images:tag", json={"source": busybox_image.tag, "target": "UPPER"}),
        400,
        3,
        "INVALID_REFERENCE",
    )


def test_routing_errors(rest: httpx.Client) -> None:
    assert rest.get("/v1/nothing").json() == {"code": 5, "message": "Not Found", "details": []}
    wrong = rest.put("/v1/images")
    assert (wrong.status_code, wrong.json()["code"]) == (501, 12)
    escape = rest.get("/v1/images/%zz")
    assert escape.status_code == 400
    assert escape.json()["message"] == 'malformed path escape "%zz"'


def test_openapi_document_is_served(rest: httpx.Client) -> None:
    response = rest.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    assert document["swagger"] == "2.0"
    assert "/v1/images/{image}" in document["paths"]
