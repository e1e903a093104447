from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from imagesvc.core.build_context import ContextLimits
from imagesvc.core.errors import (
    EngineError,
    FailedPreconditionError,
    ImageServiceError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    Reason,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)
from imagesvc.core.image_core import CoreSettings, ImageCore
from imagesvc.core.models import (
    BuildOptions,
    BuildResult,
    ImageFilter,
    PruneOptions,
    PullResult,
    PushResult,
    RegistryAuth,
    TransferProgress,
)
from tests.unit.aio import run, run_collect
from tests.unit.conftest import CONTEXT_LIMIT
from tests.unit.fakes import FakeDockerPort, FakeEngineStream, engine_image, image_id
from tests.unit.tarballs import ChunkSource, context_tar, make_tar, regular_files, split

L1 = "a1b2c3d4e5f6"
L2 = "0f1e2d3c4b5a"
DIGEST = "sha256:" + "d1" * 32
PUSH_DIGEST = "sha256:" + "e2" * 32
SECRET = "hunter2-s3cret"
AUTH = RegistryAuth(username="alice", password=SECRET, server_address="127.0.0.1:5001")


def layer(layer_id: str, status: str, current: int | None = None, total: int | None = None) -> Any:
    detail = {} if current is None else {"current": current, "total": total or 0}
    return {"status": status, "progressDetail": detail, "id": layer_id}


def error_message(text: str) -> dict[str, Any]:
    return {"errorDetail": {"message": text}, "error": text}


def pull_script(tag: str = "latest", name: str = "busybox") -> list[Any]:
    return [
        {"status": f"Pulling from library/{name}", "id": tag},
        layer(L1, "Pulling fs layer"),
        layer(L2, "Pulling fs layer"),
        layer(L1, "Downloading", 1_000, 3_000),
        layer(L2, "Downloading", 500, 500),
        layer(L1, "Downloading", 3_000, 3_000),
        layer(L1, "Verifying Checksum"),
        layer(L1, "Download complete"),
        layer(L2, "Download complete"),
        layer(L1, "Extracting", 3_000, 3_000),
        layer(L1, "Pull complete"),
        layer(L2, "Pull complete"),
        {"status": f"Digest: {DIGEST}"},
        {"status": f"Status: Downloaded newer image for {name}:{tag}"},
    ]


def push_script(tag: str, *, aux: bool = True) -> list[Any]:
    messages: list[Any] = [
        {"status": "The push refers to repository [127.0.0.1:5000/team/app]"},
        layer(L1, "Preparing"),
        layer(L2, "Preparing"),
        layer(L1, "Waiting"),
        layer(L2, "Layer already exists"),
        layer(L1, "Pushing", 512, 2_048),
        layer(L1, "Pushing", 2_048, 2_048),
        layer(L1, "Pushed"),
        {"status": f"{tag}: digest: {PUSH_DIGEST} size: 527"},
    ]
    if aux:
        messages.append(
            {"progressDetail": {}, "aux": {"Tag": tag, "Digest": PUSH_DIGEST, "Size": 527}}
        )
    return messages


def chunks_of(data: bytes, size: int = 1024) -> ChunkSource:
    return ChunkSource(split(data, size))


# Health ------------------------------------------------------------------------------


def test_ping_answers_what_the_port_says(core: ImageCore, port: FakeDockerPort) -> None:
    assert run(core.ping()) is True
    port.alive = False
    assert run(core.ping()) is False
    assert port.methods_called == ["ping", "ping"]


# List --------------------------------------------------------------------------------


def test_list_is_one_engine_call_and_translates_filters(
    core: ImageCore, port: FakeDockerPort
) -> None:
    image_filter = ImageFilter(
        references=("busybox", "127.0.0.1:5000/team/*"),
        labels=("team=core", "tier"),
        dangling=False,
        before="busybox:1.36",
        since=image_id(1),
    )
    page = run(core.list_images(image_filter, all=True, page_size=0, page_token=""))
    assert page.images == ()
    assert page.next_page_token == ""
    assert page.total_size == 0
    calls = port.calls_to("list_images")
    assert len(calls) == 1
    # Several references (any of them) and labels (all of them) are matched by the
    # service: the Engine gets only one label, which narrows, and no reference.
    assert calls[0].kwargs == {
        "all": True,
        "filters": {
            "label": ["team=core"],
            "dangling": ["false"],
            "before": ["busybox:1.36"],
            "since": [image_id(1)],
        },
    }
    assert port.methods_called == ["list_images"]


def test_list_sends_a_single_reference_to_the_engine(core: ImageCore, port: FakeDockerPort) -> None:
    image_filter = ImageFilter(references=("busybox",))
    run(core.list_images(image_filter, all=False, page_size=0, page_token=""))
    assert port.calls_to("list_images")[0].kwargs["filters"] == {"reference": ["busybox"]}


def test_list_matches_every_label_by_dockers_rule(core: ImageCore, port: FakeDockerPort) -> None:
    # Podman 4.3 matches no image for two label conditions; the service decides itself.
    port.add(engine_image(1, tags=["a:1"], created=100, labels={"team": "core", "tier": "1"}))
    port.add(engine_image(2, tags=["b:1"], created=200, labels={"team": "core"}))
    port.add(engine_image(3, tags=["c:1"], created=300, labels={"team": "edge", "tier": ""}))
    port.add(engine_image(4, tags=["d:1"], created=400))

    def listed(*labels: str) -> list[str]:
        page = run(
            core.list_images(ImageFilter(labels=labels), all=False, page_size=0, page_token="")
        )
        return sorted(image.repo_tags[0] for image in page.images)

    assert listed("team=core", "tier") == ["a:1"]
    assert listed("team") == ["a:1", "b:1", "c:1"]
    assert listed("tier=") == ["c:1"]
    assert listed("team=cor") == []


@pytest.mark.parametrize(
    ("dangling", "expected"),
    [(None, {}), (True, {"dangling": ["true"]}), (False, {"dangling": ["false"]})],
)
def test_list_dangling_filter(
    core: ImageCore, port: FakeDockerPort, dangling: bool | None, expected: dict[str, list[str]]
) -> None:
    port.add(engine_image(1, tags=["busybox:1.36"], created=200))
    port.add(engine_image(2, tags=[], created=100))
    page = run(
        core.list_images(ImageFilter(dangling=dangling), all=False, page_size=0, page_token="")
    )
    assert port.calls_to("list_images")[0].kwargs == {"all": False, "filters": expected}
    ids = [image.id for image in page.images]
    if dangling is None:
        assert ids == [image_id(1), image_id(2)]
    else:
        assert ids == ([image_id(2)] if dangling else [image_id(1)])


def test_list_label_filter_reaches_the_engine(core: ImageCore, port: FakeDockerPort) -> None:
    port.add(engine_image(1, tags=["a:1"], labels={"team": "core"}))
    port.add(engine_image(2, tags=["b:1"], labels={"team": "web"}))
    page = run(
        core.list_images(ImageFilter(labels=("team=web",)), all=False, page_size=0, page_token="")
    )
    assert [image.repo_tags for image in page.images] == [("b:1",)]
    assert page.images[0].labels == {"team": "web"}


def test_list_pages_end_to_end_newest_first(core: ImageCore, port: FakeDockerPort) -> None:
    created = {1: 500, 2: 900, 3: 700, 4: 700, 5: 100, 6: 800, 7: 300}
    for n, when in created.items():
        port.add(engine_image(n, tags=[f"img{n}:latest"], created=when))
    expected = [image_id(n) for n in (2, 6, 3, 4, 1, 7, 5)]
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = run(core.list_images(ImageFilter(), all=False, page_size=3, page_token=token))
        pages += 1
        assert page.total_size == 7
        assert len(page.images) <= 3
        seen.extend(image.id for image in page.images)
        token = page.next_page_token
        if not token:
            break
    assert seen == expected
    assert pages == 3
    assert len(port.calls_to("list_images")) == pages
    first = run(core.list_images(ImageFilter(), all=False, page_size=3, page_token=""))
    assert first.images[0].created == datetime.fromtimestamp(900, tz=UTC)
    assert first.images[0].repo_tags == ("img2:latest",)


def test_list_page_boundary_survives_changes_between_calls(
    core: ImageCore, port: FakeDockerPort
) -> None:
    for n in range(1, 7):
        port.add(engine_image(n, tags=[f"img{n}:1"], created=1000 - n))
    first = run(core.list_images(ImageFilter(), all=False, page_size=3, page_token=""))
    assert [image.id for image in first.images] == [image_id(n) for n in (1, 2, 3)]
    port.add(engine_image(99, tags=["newest:1"], created=5000))
    del port.images[image_id(4)]
    second = run(
        core.list_images(ImageFilter(), all=False, page_size=3, page_token=first.next_page_token)
    )
    assert [image.id for image in second.images] == [image_id(5), image_id(6)]
    assert second.next_page_token == ""
    assert second.total_size == 6


def test_list_token_from_another_query_is_rejected_before_calling_the_engine(
    core: ImageCore, port: FakeDockerPort
) -> None:
    for n in range(1, 5):
        port.add(engine_image(n, tags=[f"img{n}:1"], created=n))
    first = run(core.list_images(ImageFilter(), all=False, page_size=2, page_token=""))
    assert first.next_page_token
    for image_filter, all_images in (
        (ImageFilter(dangling=True), False),
        (ImageFilter(labels=("x",)), False),
        (ImageFilter(), True),
    ):
        with pytest.raises(InvalidArgumentError) as caught:
            run(
                core.list_images(
                    image_filter, all=all_images, page_size=2, page_token=first.next_page_token
                )
            )
        assert caught.value.reason is Reason.INVALID_PAGE_TOKEN
    with pytest.raises(InvalidArgumentError) as garbage:
        run(core.list_images(ImageFilter(), all=False, page_size=2, page_token="garbage"))
    assert garbage.value.reason is Reason.INVALID_PAGE_TOKEN
    assert len(port.calls_to("list_images")) == 1


def test_list_rejects_negative_page_size_and_bad_before_without_engine_call(
    core: ImageCore, port: FakeDockerPort
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        run(core.list_images(ImageFilter(), all=False, page_size=-1, page_token=""))
    assert caught.value.reason is Reason.INVALID_ARGUMENT
    with pytest.raises(InvalidArgumentError) as bad:
        run(
            core.list_images(ImageFilter(before="Not Valid"), all=False, page_size=0, page_token="")
        )
    assert bad.value.reason is Reason.INVALID_REFERENCE
    assert port.calls == []


def test_list_page_size_default_and_cap(core: ImageCore, port: FakeDockerPort) -> None:
    for n in range(1, 1102):
        port.add(engine_image(n, tags=[], created=n))
    default = run(core.list_images(ImageFilter(), all=True, page_size=0, page_token=""))
    assert len(default.images) == 100
    capped = run(core.list_images(ImageFilter(), all=True, page_size=5000, page_token=""))
    assert len(capped.images) == 1000
    assert capped.total_size == 1101
    rest = run(
        core.list_images(ImageFilter(), all=True, page_size=5000, page_token=capped.next_page_token)
    )
    assert len(rest.images) == 101
    assert {i.id for i in capped.images}.isdisjoint({i.id for i in rest.images})


def test_concurrent_lists_cost_one_engine_call_each(core: ImageCore, port: FakeDockerPort) -> None:
    port.add(engine_image(1, tags=["a:1"]))

    async def many() -> list[int]:
        pages = await asyncio.gather(
            *(
                core.list_images(ImageFilter(), all=False, page_size=0, page_token="")
                for _ in range(10)
            )
        )
        return [len(page.images) for page in pages]

    assert run(many()) == [1] * 10
    assert len(port.calls_to("list_images")) == 10


# Get, history --------------------------------------------------------------------------


def test_get_image_inspects_and_converts(core: ImageCore, port: FakeDockerPort) -> None:
    port.add(engine_image(7, tags=["busybox:1.36"], labels={"a": "b"}, size=4321))
    image = run(core.get_image("busybox:1.36"))
    assert image.id == image_id(7)
    assert image.repo_tags == ("busybox:1.36",)
    assert image.size == 4321
    assert image.labels == {"a": "b"}
    assert image.config is not None
    assert image.config.cmd == ("sh",)
    assert '"Id": "' + image_id(7) in image.inspect_json
    assert [call.args for call in port.calls_to("inspect_image")] == [("busybox:1.36",)]


def test_get_image_by_id_prefix(core: ImageCore, port: FakeDockerPort) -> None:
    port.add(engine_image(7, tags=[]))
    assert run(core.get_image(image_id(7)[:19])).id == image_id(7)


def test_get_image_invalid_reference_never_reaches_the_engine(
    core: ImageCore, port: FakeDockerPort
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        run(core.get_image("Bad Name"))
    assert caught.value.reason is Reason.INVALID_REFERENCE
    assert port.calls == []


def test_get_missing_image_is_not_found(core: ImageCore, port: FakeDockerPort) -> None:
    with pytest.raises(NotFoundError) as caught:
        run(core.get_image("nosuch:1"))
    assert caught.value.reason is Reason.IMAGE_NOT_FOUND


def test_history(core: ImageCore, port: FakeDockerPort) -> None:
    port.add(engine_image(3, tags=["busybox:1.36"]))
    port.histories[image_id(3)] = [
        {
            "Id": image_id(3),
            "Created": 200,
            "CreatedBy": "CMD",
            "Tags": ["busybox:1.36"],
            "Size": 0,
        },
        {"Id": "<missing>", "Created": 100, "CreatedBy": "ADD", "Tags": None, "Size": 42},
    ]
    history = run(core.image_history("busybox:1.36"))
    assert [(h.id, h.created_by, h.size, h.tags) for h in history] == [
        (image_id(3), "CMD", 0, ("busybox:1.36",)),
        ("<missing>", "ADD", 42, ()),
    ]
    assert port.methods_called == ["image_history"]
    with pytest.raises(InvalidArgumentError):
        run(core.image_history("UPPER"))
    assert port.methods_called == ["image_history"]


# Tag, remove, prune --------------------------------------------------------------------


def test_tag_defaults_latest_and_reports_the_id(core: ImageCore, port: FakeDockerPort) -> None:
    port.add(engine_image(5, tags=["busybox:1.36"]))
    result = run(core.tag_image("busybox:1.36", "127.0.0.1:5000/team/app"))
    assert result.id == image_id(5)
    assert result.target == "127.0.0.1:5000/team/app:latest"
    tag_calls = port.calls_to("tag")
    assert [call.args for call in tag_calls] == [
        ("busybox:1.36", "127.0.0.1:5000/team/app", "latest")
    ]
    assert port.methods_called == ["tag", "inspect_image"]
    assert port.calls_to("inspect_image")[0].args == ("127.0.0.1:5000/team/app:latest",)
    assert "127.0.0.1:5000/team/app:latest" in port.images[image_id(5)]["RepoTags"]


@pytest.mark.parametrize(
    ("source", "target"),
    [("busybox", f"app@{DIGEST}"), ("busybox", "App:1"), ("Bad Source", "app:1"), ("x", "")],
)
def test_tag_rejects_bad_input_before_the_engine(
    core: ImageCore, port: FakeDockerPort, source: str, target: str
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        run(core.tag_image(source, target))
    assert caught.value.reason is Reason.INVALID_REFERENCE
    assert port.calls == []


def test_remove_tag_then_image(core: ImageCore, port: FakeDockerPort) -> None:
    port.add(engine_image(4, tags=["app:1", "app:2"]))
    first = run(core.remove_image("app:1", force=False, no_prune=True))
    assert first.untagged == ("app:1",)
    assert first.deleted == ()
    second = run(core.remove_image(image_id(4), force=True, no_prune=False))
    assert second.untagged == ("app:2",)
    assert second.deleted == (image_id(4),)
    calls = port.calls_to("remove_image")
    assert [(c.args, c.kwargs) for c in calls] == [
        (("app:1",), {"force": False, "no_prune": True}),
        ((image_id(4),), {"force": True, "no_prune": False}),
    ]


def test_remove_in_use_image_is_failed_precondition(core: ImageCore, port: FakeDockerPort) -> None:
    port.add(engine_image(4, tags=["app:1"], containers=1))
    with pytest.raises(FailedPreconditionError) as caught:
        run(core.remove_image("app:1", force=False, no_prune=False))
    assert caught.value.reason is Reason.IMAGE_IN_USE
    assert image_id(4) in port.images


def test_remove_invalid_identifier_never_reaches_the_engine(
    core: ImageCore, port: FakeDockerPort
) -> None:
    with pytest.raises(InvalidArgumentError):
        run(core.remove_image("a:b:c", force=False, no_prune=False))
    assert port.calls == []


@pytest.mark.parametrize(
    ("options", "filters"),
    [
        (PruneOptions(), {"dangling": ["true"]}),
        (PruneOptions(all=True), {"dangling": ["false"]}),
        (
            PruneOptions(
                labels=("team=core",),
                exclude_labels=("keep", "tier=prod"),
                until=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
            ),
            {
                "dangling": ["true"],
                "label": ["team=core"],
                "label!": ["keep", "tier=prod"],
                "until": ["1704164645"],
            },
        ),
    ],
)
def test_prune_translates_options_to_engine_filters(
    core: ImageCore, port: FakeDockerPort, options: PruneOptions, filters: dict[str, list[str]]
) -> None:
    result = run(core.prune_images(options))
    assert [call.args for call in port.calls_to("prune_images")] == [(filters,)]
    assert result.deleted == ()
    assert result.untagged == ()
    assert result.space_reclaimed_bytes == 0


def test_prune_reports_what_was_deleted(core: ImageCore, port: FakeDockerPort) -> None:
    port.prune_report = {
        "ImagesDeleted": [
            {"Untagged": "app:old"},
            {"Deleted": image_id(1)},
            {"Deleted": image_id(2)},
        ],
        "SpaceReclaimed": 123_456,
    }
    result = run(core.prune_images(PruneOptions(all=True)))
    assert result.deleted == (image_id(1), image_id(2))
    assert result.untagged == ("app:old",)
    assert result.space_reclaimed_bytes == 123_456


def test_prune_of_a_dangling_image_untags_nothing(core: ImageCore, port: FakeDockerPort) -> None:
    """Engine 26.1's containerd store reports a dangling image it prunes as "Untagged" by
    its id (as it answered a real prune): no reference was untagged, as the classic store
    says by naming none. Its manifest and config blobs are what it deleted."""
    port.prune_report = {
        "ImagesDeleted": [
            {"Untagged": image_id(1)},
            {"Deleted": image_id(1)},
            {"Deleted": image_id(2)},
            {"Untagged": "app:old"},
            {"Untagged": f"app@{image_id(3)}"},
            {"Deleted": image_id(3)},
        ],
        "SpaceReclaimed": 1917,
    }
    result = run(core.prune_images(PruneOptions(labels=("team=core",))))
    assert result.untagged == ("app:old", f"app@{image_id(3)}")
    assert result.deleted == (image_id(1), image_id(2), image_id(3))
    assert result.space_reclaimed_bytes == 1917


def test_prune_until_before_1970_is_invalid(core: ImageCore, port: FakeDockerPort) -> None:
    """The Engine cannot parse a negative Unix time: refused before it is asked (found by
    schemathesis through the REST gateway)."""
    options = PruneOptions(until=datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC))
    with pytest.raises(InvalidArgumentError) as caught:
        run(core.prune_images(options))
    assert caught.value.metadata == {"field": "until"}
    assert port.calls_to("prune_images") == []


# Registry auth -----------------------------------------------------------------------


def test_check_auth_requires_credentials(core: ImageCore, port: FakeDockerPort) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        run(core.check_registry_auth(RegistryAuth(server_address="127.0.0.1:5001")))
    assert caught.value.reason is Reason.INVALID_ARGUMENT
    assert port.calls == []


def test_check_auth_returns_status_and_identity_token(
    core: ImageCore, port: FakeDockerPort
) -> None:
    port.auth_answer = {"Status": "Login Succeeded", "IdentityToken": "idtoken-9"}
    result = run(core.check_registry_auth(AUTH))
    assert result.status == "Login Succeeded"
    assert result.identity_token == "idtoken-9"
    assert "idtoken-9" not in repr(result)
    assert [call.args for call in port.calls_to("check_auth")] == [(AUTH,)]
    assert port.calls_to("check_auth")[0].args[0] is AUTH


def test_check_auth_failure_never_echoes_the_password(
    core: ImageCore, port: FakeDockerPort
) -> None:
    port.failures["check_auth"] = UnauthenticatedError(
        f"Get https://127.0.0.1:5001/v2/: unauthorized: password {SECRET} incorrect",
        metadata={"registry": "127.0.0.1:5001"},
    )
    with pytest.raises(UnauthenticatedError) as caught:
        run(core.check_registry_auth(AUTH))
    assert SECRET not in str(caught.value)
    assert "[REDACTED]" in caught.value.message
    assert caught.value.reason is Reason.REGISTRY_UNAUTHENTICATED
    assert caught.value.metadata == {"registry": "127.0.0.1:5001"}


# Pull ----------------------------------------------------------------------------------


def test_pull_streams_progress_then_one_result(core: ImageCore, port: FakeDockerPort) -> None:
    port.add(engine_image(9, tags=["busybox:latest"]))
    stream = FakeEngineStream(pull_script())
    port.pull_streams.append(stream)
    items = run_collect(core.pull_image("busybox", platform="", auth=None))
    assert isinstance(items[-1], PullResult)
    assert all(isinstance(item, TransferProgress) for item in items[:-1])
    assert sum(isinstance(item, PullResult) for item in items) == 1
    assert items[-1] == PullResult(
        image_id=image_id(9),
        digest=DIGEST,
        reference="docker.io/library/busybox:latest",
        status="Downloaded newer image for busybox:latest",
    )
    # No tag means :latest, never "all tags".
    pull = port.calls_to("pull")
    assert [(c.args, c.kwargs) for c in pull] == [
        (("busybox", "latest"), {"platform": "", "auth": None})
    ]
    assert [c.args for c in port.calls_to("inspect_image")] == [("busybox:latest",)]
    assert port.methods_called == ["pull", "inspect_image"]
    assert stream.closed
    progress = [item for item in items if isinstance(item, TransferProgress)]
    last = progress[-1]
    assert (last.layers_done, last.layers_total) == (2, 2)
    assert (last.bytes_done, last.bytes_total) == (3_500, 3_500)
    assert progress[0].status == "latest: Pulling from library/busybox"
    layer_states = [lp.state for item in progress for lp in item.layers if lp.layer_id == L1]
    assert layer_states[0] == "Pulling fs layer"
    assert layer_states[-1] == "Pull complete"


def test_pull_passes_tag_digest_platform_and_auth(core: ImageCore, port: FakeDockerPort) -> None:
    port.add(engine_image(1, tags=["127.0.0.1:5001/x:1.0"], digests=[f"127.0.0.1:5001/x@{DIGEST}"]))
    port.pull_streams.append(FakeEngineStream(pull_script("1.0", "x")))
    port.pull_streams.append(FakeEngineStream([{"status": "Status: Image is up to date"}]))
    run_collect(core.pull_image("127.0.0.1:5001/x:1.0", platform="linux/arm64", auth=AUTH))
    items = run_collect(core.pull_image(f"127.0.0.1:5001/x@{DIGEST}", platform="", auth=None))
    calls = port.calls_to("pull")
    assert calls[0].args == ("127.0.0.1:5001/x", "1.0")
    assert calls[0].kwargs == {"platform": "linux/arm64", "auth": AUTH}
    assert calls[0].kwargs["auth"] is AUTH
    assert calls[1].args == ("127.0.0.1:5001/x", DIGEST)
    # The credentials of the first pull are not remembered for the next one.
    assert calls[1].kwargs == {"platform": "", "auth": None}
    result = items[-1]
    assert isinstance(result, PullResult)
    # Without a "Digest:" line the digest pulled by is reported.
    assert result.digest == DIGEST
    assert result.status == "Image is up to date"
    assert result.reference == f"127.0.0.1:5001/x@{DIGEST}"
    assert all(value is not AUTH for value in vars(core).values())


def test_pull_rejects_bad_reference_or_platform_before_the_engine(
    core: ImageCore, port: FakeDockerPort
) -> None:
    with pytest.raises(InvalidArgumentError) as bad_reference:
        run_collect(core.pull_image("Busybox", platform="", auth=None))
    assert bad_reference.value.reason is Reason.INVALID_REFERENCE
    with pytest.raises(InvalidArgumentError) as bad_platform:
        run_collect(core.pull_image("busybox", platform="Linux/AMD64", auth=None))
    assert bad_platform.value.reason is Reason.INVALID_ARGUMENT
    assert port.calls == []


@pytest.mark.parametrize(
    ("message", "kind", "reason"),
    [
        (
            "manifest for 127.0.0.1:5000/x:1 not found: manifest unknown: manifest unknown",
            NotFoundError,
            Reason.IMAGE_NOT_FOUND,
        ),
        (
            "unauthorized: authentication required",
            UnauthenticatedError,
            Reason.REGISTRY_UNAUTHENTICATED,
        ),
        (
            'Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused',
            UnavailableError,
            Reason.REGISTRY_UNAVAILABLE,
        ),
    ],
)
def test_pull_in_stream_error_is_classified_and_closes_the_stream(
    core: ImageCore,
    port: FakeDockerPort,
    message: str,
    kind: type[ImageServiceError],
    reason: Reason,
) -> None:
    stream = FakeEngineStream(
        [
            {"status": "Pulling from x", "id": "1"},
            layer(L1, "Pulling fs layer"),
            error_message(message),
            layer(L1, "Downloading", 1, 2),
        ]
    )
    port.pull_streams.append(stream)
    seen: list[object] = []

    async def consume() -> None:
        async for item in core.pull_image("127.0.0.1:5000/x:1", platform="", auth=None):
            seen.append(item)

    with pytest.raises(kind) as caught:
        run(consume())
    error = caught.value
    assert type(error) is kind
    assert error.reason is reason
    assert error.message == message
    assert len(seen) == 2
    assert not any(isinstance(item, PullResult) for item in seen)
    assert stream.closed
    assert stream.delivered == 3
    assert port.calls_to("inspect_image") == []


def test_pull_error_with_only_the_error_field(core: ImageCore, port: FakeDockerPort) -> None:
    port.pull_streams.append(FakeEngineStream([{"error": "No such image: x"}]))
    with pytest.raises(NotFoundError):
        run_collect(core.pull_image("x", platform="", auth=None))


def test_pull_never_leaks_the_password_even_if_the_engine_echoes_it(
    core: ImageCore, port: FakeDockerPort
) -> None:
    stream = FakeEngineStream([error_message(f"unauthorized: login alice:{SECRET} failed")])
    port.pull_streams.append(stream)
    with pytest.raises(UnauthenticatedError) as caught:
        run_collect(core.pull_image("127.0.0.1:5001/x", platform="", auth=AUTH))
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value.args)
    assert caught.value.message == "unauthorized: login alice:[REDACTED] failed"
    assert caught.value.reason is Reason.REGISTRY_UNAUTHENTICATED
    assert stream.closed


def test_pull_port_failure_is_redacted_too(core: ImageCore, port: FakeDockerPort) -> None:
    port.failures["pull"] = PermissionDeniedError(f"denied: token {SECRET} lacks pull scope")
    with pytest.raises(PermissionDeniedError) as caught:
        run_collect(core.pull_image("127.0.0.1:5001/x", platform="", auth=AUTH))
    assert SECRET not in str(caught.value)
    assert caught.value.reason is Reason.REGISTRY_DENIED


def test_pull_coalesces_byte_updates_with_the_configured_interval(
    port: FakeDockerPort, executor: ThreadPoolExecutor
) -> None:
    slow = ImageCore(
        port,
        executor,
        CoreSettings(build_context=ContextLimits(max_bytes=1), progress_interval_seconds=3600),
    )
    port.add(engine_image(1, tags=["busybox:latest"]))
    script: list[Any] = [layer(L1, "Pulling fs layer")]
    script += [layer(L1, "Downloading", i * 100, 10_000) for i in range(1, 101)]
    script += [layer(L1, "Download complete"), layer(L1, "Pull complete")]
    port.pull_streams.append(FakeEngineStream(script))
    items = run_collect(slow.pull_image("busybox", platform="", auth=None))
    progress = [item for item in items if isinstance(item, TransferProgress)]
    states = [lp.state for item in progress for lp in item.layers]
    # Every state change, but only the first of the 100 byte updates (1 h interval).
    assert states == ["Pulling fs layer", "Downloading", "Download complete", "Pull complete"]
    assert progress[-1].bytes_done == 10_000


def test_pull_flushes_held_back_progress_before_the_result(
    port: FakeDockerPort, executor: ThreadPoolExecutor
) -> None:
    slow = ImageCore(
        port,
        executor,
        CoreSettings(build_context=ContextLimits(max_bytes=1), progress_interval_seconds=3600),
    )
    port.add(engine_image(1, tags=["busybox:latest"]))
    port.pull_streams.append(
        FakeEngineStream([layer(L1, "Downloading", 10, 100), layer(L1, "Downloading", 60, 100)])
    )
    items = run_collect(slow.pull_image("busybox", platform="", auth=None))
    assert len(items) == 3
    flushed = items[1]
    assert isinstance(flushed, TransferProgress)
    assert [(lp.state, lp.current) for lp in flushed.layers] == [("Downloading", 60)]
    assert isinstance(items[2], PullResult)


def test_pull_stream_is_closed_when_the_consumer_stops_early(
    core: ImageCore, port: FakeDockerPort
) -> None:
    stream = FakeEngineStream(pull_script())
    port.pull_streams.append(stream)

    async def stop_after_two() -> int:
        pull = core.pull_image("busybox", platform="", auth=None)
        assert isinstance(pull, AsyncIterator)
        taken = 0
        async for _ in pull:
            taken += 1
            if taken == 2:
                break
        await pull.aclose()
        # The Engine response must be closed by the time aclose() returns.
        assert stream.closed
        return taken

    assert run(stop_after_two()) == 2
    assert stream.delivered < len(pull_script())
    assert port.calls_to("inspect_image") == []


def test_pull_stream_is_closed_when_the_consumer_is_cancelled_mid_read(
    core: ImageCore, port: FakeDockerPort
) -> None:
    # The daemon stalls after two messages; cancelling the consumer (a deadline, a
    # client hang-up) must close the response, which also unblocks the reading thread.
    stream = FakeEngineStream(pull_script(), block_at=2)
    port.pull_streams.append(stream)

    async def consume(received: list[object]) -> None:
        async for item in core.pull_image("busybox", platform="", auth=None):
            received.append(item)

    async def scenario() -> int:
        received: list[object] = []
        task = asyncio.create_task(consume(received))
        assert await asyncio.to_thread(stream.blocked.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert stream.closed
        return len(received)

    assert run(asyncio.wait_for(scenario(), timeout=5)) == 2
    assert stream.close_calls >= 1
    assert port.calls_to("inspect_image") == []


# Push ----------------------------------------------------------------------------------


def test_push_reports_progress_then_the_aux_result(core: ImageCore, port: FakeDockerPort) -> None:
    stream = FakeEngineStream(push_script("1.0"))
    port.push_streams.append(stream)
    items = run_collect(core.push_image("127.0.0.1:5000/team/app:1.0", auth=AUTH))
    assert items[-1] == PushResult(
        digest=PUSH_DIGEST, size=527, tag="1.0", reference="127.0.0.1:5000/team/app:1.0"
    )
    progress = [item for item in items[:-1] if isinstance(item, TransferProgress)]
    assert len(progress) == len(items) - 1
    assert (progress[-1].layers_done, progress[-1].layers_total) == (2, 2)
    assert progress[-1].bytes_done == 2_048
    calls = port.calls_to("push")
    assert [(c.args, c.kwargs) for c in calls] == [
        (("127.0.0.1:5000/team/app", "1.0"), {"auth": AUTH})
    ]
    assert stream.closed


def test_push_defaults_to_latest(core: ImageCore, port: FakeDockerPort) -> None:
    port.push_streams.append(FakeEngineStream(push_script("latest")))
    items = run_collect(core.push_image("team/app", auth=None))
    assert port.calls_to("push")[0].args == ("team/app", "latest")
    result = items[-1]
    assert isinstance(result, PushResult)
    assert result.reference == "team/app:latest"
    assert result.tag == "latest"


def test_push_falls_back_to_the_digest_line(core: ImageCore, port: FakeDockerPort) -> None:
    port.push_streams.append(FakeEngineStream(push_script("latest", aux=False)))
    items = run_collect(core.push_image("127.0.0.1:5000/team/app", auth=None))
    assert items[-1] == PushResult(
        digest=PUSH_DIGEST, size=527, tag="latest", reference="127.0.0.1:5000/team/app:latest"
    )


def test_push_without_any_digest_is_an_engine_error(core: ImageCore, port: FakeDockerPort) -> None:
    port.push_streams.append(FakeEngineStream([layer(L1, "Preparing"), layer(L1, "Pushed")]))
    with pytest.raises(EngineError) as caught:
        run_collect(core.push_image("127.0.0.1:5000/team/app:1", auth=None))
    assert caught.value.reason is Reason.ENGINE_ERROR
    assert "127.0.0.1:5000/team/app:1" in caught.value.message


def test_push_rejects_digest_references(core: ImageCore, port: FakeDockerPort) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        run_collect(core.push_image(f"127.0.0.1:5000/team/app@{DIGEST}", auth=None))
    assert caught.value.reason is Reason.INVALID_REFERENCE
    assert port.calls == []


@pytest.mark.parametrize(
    ("message", "kind", "reason"),
    [
        (
            "unauthorized: authentication required",
            UnauthenticatedError,
            Reason.REGISTRY_UNAUTHENTICATED,
        ),
        (
            "denied: requested access to the resource is denied",
            PermissionDeniedError,
            Reason.REGISTRY_DENIED,
        ),
        (
            "An image does not exist locally with the tag: 127.0.0.1:5000/team/app",
            NotFoundError,
            Reason.IMAGE_NOT_FOUND,
        ),
    ],
)
def test_push_in_stream_errors(
    core: ImageCore,
    port: FakeDockerPort,
    message: str,
    kind: type[ImageServiceError],
    reason: Reason,
) -> None:
    stream = FakeEngineStream(
        [
            {"status": "The push refers to repository [127.0.0.1:5000/team/app]"},
            layer(L1, "Preparing"),
            error_message(message),
        ]
    )
    port.push_streams.append(stream)
    with pytest.raises(kind) as caught:
        run_collect(core.push_image("127.0.0.1:5000/team/app:1", auth=AUTH))
    assert type(caught.value) is kind
    assert caught.value.reason is reason
    assert stream.closed


def test_push_never_leaks_the_password(core: ImageCore, port: FakeDockerPort) -> None:
    port.push_streams.append(
        FakeEngineStream([error_message(f"unauthorized: bad credentials {SECRET}")])
    )
    with pytest.raises(UnauthenticatedError) as caught:
        run_collect(core.push_image("127.0.0.1:5001/x:1", auth=AUTH))
    assert SECRET not in str(caught.value)


def test_push_stream_is_closed_when_the_consumer_stops_early(
    core: ImageCore, port: FakeDockerPort
) -> None:
    stream = FakeEngineStream(push_script("1"))
    port.push_streams.append(stream)

    async def stop_after_one() -> None:
        push = core.push_image("127.0.0.1:5000/team/app:1", auth=None)
        first = await push.__anext__()
        assert isinstance(first, TransferProgress)
        await push.aclose()
        assert stream.closed

    run(stop_after_one())


# Build ---------------------------------------------------------------------------------

BUILD_ID = "sha256:" + "b0" * 32


def build_log(*, with_aux: bool = True) -> list[Any]:
    messages: list[Any] = [
        {"stream": "Step 1/2 : FROM busybox:1.36\n"},
        {"stream": " ---> 0123456789ab\n"},
        {"stream": "Step 2/2 : RUN true\n"},
        {"stream": " ---> Running in 111111111111\n"},
        {"stream": " ---> 222222222222\n"},
    ]
    if with_aux:
        messages.append({"aux": {"ID": BUILD_ID}})
    messages += [
        {"stream": "Successfully built 222222222222\n"},
        {"stream": "Successfully tagged app:latest\n"},
    ]
    return messages


def test_build_streams_log_lines_then_the_result(core: ImageCore, port: FakeDockerPort) -> None:
    stream = FakeEngineStream(build_log())
    port.build_streams.append(stream)
    data = context_tar()
    options = BuildOptions(tags=("app", "127.0.0.1:5000/team/app:1.0"), build_args={"V": "1"})
    items = run_collect(core.build_image(options, chunks_of(data, 100)))
    assert items[-1] == BuildResult(
        image_id=BUILD_ID, tags=("app:latest", "127.0.0.1:5000/team/app:1.0")
    )
    assert items[:-1] == [
        "Step 1/2 : FROM busybox:1.36\n",
        " ---> 0123456789ab\n",
        "Step 2/2 : RUN true\n",
        " ---> Running in 111111111111\n",
        " ---> 222222222222\n",
        "Successfully built 222222222222\n",
        "Successfully tagged app:latest\n",
    ]
    [build] = port.builds
    # The Engine gets the context as the core rewrote it: a plain tar, same files.
    assert regular_files(build.context) == regular_files(data)
    assert build.gzip is False
    assert build.tags == ("app:latest", "127.0.0.1:5000/team/app:1.0")
    assert build.build_args == {"V": "1"}
    assert port.methods_called == ["build"]
    assert stream.closed
    assert port.build_files[0].closed


def test_build_with_gzip_context_and_custom_dockerfile(
    core: ImageCore, port: FakeDockerPort
) -> None:
    port.build_streams.append(FakeEngineStream(build_log()))
    data = make_tar({"ci/Build.dockerfile": b"FROM scratch\n"}, compress=True)
    options = BuildOptions(dockerfile="ci/Build.dockerfile", target="final", platform="linux/amd64")
    items = run_collect(core.build_image(options, chunks_of(data)))
    assert isinstance(items[-1], BuildResult)
    [build] = port.builds
    assert build.gzip is False  # unpacked by the core
    assert build.context[:2] != b"\x1f\x8b"
    assert regular_files(build.context) == regular_files(data)
    assert (build.dockerfile, build.target, build.platform) == (
        "ci/Build.dockerfile",
        "final",
        "linux/amd64",
    )


def test_build_large_context_is_spooled_and_passed_whole(
    core: ImageCore, port: FakeDockerPort
) -> None:
    port.build_streams.append(FakeEngineStream(build_log()))
    data = context_tar(extra={"blob": bytes(range(256)) * 100})  # > memory_bytes (4 KiB)
    assert len(data) < CONTEXT_LIMIT
    run_collect(core.build_image(BuildOptions(), chunks_of(data, 333)))
    assert regular_files(port.builds[0].context) == regular_files(data)


def test_build_failure_quotes_the_failing_step(core: ImageCore, port: FakeDockerPort) -> None:
    failure = "The command '/bin/sh -c false' returned a non-zero code: 1"
    stream = FakeEngineStream(
        [
            {"stream": "Step 1/3 : FROM busybox:1.36\n"},
            {"stream": " ---> 0123456789ab\n"},
            {"stream": "Step 2/3 : RUN false\n"},
            {"stream": " ---> Running in 111111111111\n"},
            {"errorDetail": {"code": 1, "message": failure}, "error": failure},
            {"stream": "never read\n"},
        ]
    )
    port.build_streams.append(stream)
    lines: list[object] = []

    async def consume() -> None:
        async for item in core.build_image(BuildOptions(tags=("app",)), chunks_of(context_tar())):
            lines.append(item)

    with pytest.raises(FailedPreconditionError) as caught:
        run(consume())
    assert caught.value.reason is Reason.BUILD_FAILED
    assert caught.value.message == f"Step 2/3 : RUN false: {failure}"
    assert len(lines) == 4
    assert stream.closed
    assert port.build_files[0].closed


def test_build_failure_in_a_multi_line_chunk_uses_the_last_step(
    core: ImageCore, port: FakeDockerPort
) -> None:
    failure = "The command '/bin/sh -c exit 2' returned a non-zero code: 2"
    port.build_streams.append(
        FakeEngineStream(
            [
                {"stream": "Step 1/3 : FROM busybox\n ---> abc\nStep 2/3 : RUN exit 2\n"},
                error_message(failure),
            ]
        )
    )
    with pytest.raises(FailedPreconditionError) as caught:
        run_collect(core.build_image(BuildOptions(), chunks_of(context_tar())))
    assert caught.value.message == f"Step 2/3 : RUN exit 2: {failure}"


def test_build_failures_of_other_kinds_keep_their_message(
    core: ImageCore, port: FakeDockerPort
) -> None:
    message = (
        "pull access denied for nosuch, repository does not exist or may require 'docker login'"
    )
    port.build_streams.append(
        FakeEngineStream([{"stream": "Step 1/1 : FROM nosuch\n"}, error_message(message)])
    )
    with pytest.raises(NotFoundError) as caught:
        run_collect(core.build_image(BuildOptions(), chunks_of(context_tar())))
    assert caught.value.message == message


def test_build_error_never_leaks_registry_passwords(core: ImageCore, port: FakeDockerPort) -> None:
    port.build_streams.append(
        FakeEngineStream([error_message(f"unauthorized: {SECRET} was rejected")])
    )
    options = BuildOptions(registry_auths=(AUTH,))
    with pytest.raises(UnauthenticatedError) as caught:
        run_collect(core.build_image(options, chunks_of(context_tar())))
    assert SECRET not in str(caught.value)
    assert port.builds[0].registry_auths == (AUTH,)


def test_build_oversize_context_is_rejected_before_the_engine(
    core: ImageCore, port: FakeDockerPort
) -> None:
    chunks = ChunkSource([b"\0" * 10_000] * 20)  # 200 kB against a 64 KiB limit
    with pytest.raises(ResourceExhaustedError) as caught:
        run_collect(core.build_image(BuildOptions(), chunks))
    assert caught.value.reason is Reason.BUILD_CONTEXT_TOO_LARGE
    assert chunks.taken == 7
    assert port.received_no_upload()


def test_build_invalid_options_are_rejected_before_reading_the_context(
    core: ImageCore, port: FakeDockerPort
) -> None:
    chunks = chunks_of(context_tar())
    with pytest.raises(InvalidArgumentError) as caught:
        run_collect(core.build_image(BuildOptions(dockerfile="../Dockerfile"), chunks))
    assert caught.value.reason is Reason.INVALID_BUILD_OPTIONS
    assert chunks.taken == 0
    assert port.calls == []


@pytest.mark.parametrize(
    ("data", "options", "reason"),
    [
        (b"not a tar archive", BuildOptions(), Reason.INVALID_BUILD_CONTEXT),
        (make_tar({"README": b"x"}), BuildOptions(), Reason.INVALID_BUILD_OPTIONS),
        (context_tar(), BuildOptions(dockerfile="other/Dockerfile"), Reason.INVALID_BUILD_OPTIONS),
        (b"", BuildOptions(), Reason.INVALID_BUILD_CONTEXT),
    ],
)
def test_build_bad_context_never_reaches_the_engine(
    core: ImageCore, port: FakeDockerPort, data: bytes, options: BuildOptions, reason: Reason
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        run_collect(core.build_image(options, chunks_of(data)))
    assert caught.value.reason is reason
    assert port.received_no_upload()


def test_build_without_aux_asks_the_engine_for_the_id(
    core: ImageCore, port: FakeDockerPort
) -> None:
    port.add(engine_image(8, tags=["app:latest"]))
    port.build_streams.append(FakeEngineStream(build_log(with_aux=False)))
    items = run_collect(core.build_image(BuildOptions(tags=("app",)), chunks_of(context_tar())))
    assert items[-1] == BuildResult(image_id=image_id(8), tags=("app:latest",))
    assert [c.args for c in port.calls_to("inspect_image")] == [("app:latest",)]


def test_build_without_aux_or_tags_is_an_engine_error(
    core: ImageCore, port: FakeDockerPort
) -> None:
    port.build_streams.append(FakeEngineStream(build_log(with_aux=False)))
    with pytest.raises(EngineError) as caught:
        run_collect(core.build_image(BuildOptions(), chunks_of(context_tar())))
    assert "image id" in caught.value.message


def test_build_stream_and_context_are_closed_when_the_consumer_stops_early(
    core: ImageCore, port: FakeDockerPort
) -> None:
    stream = FakeEngineStream(build_log())
    port.build_streams.append(stream)

    async def stop_after_first_line() -> None:
        build = core.build_image(BuildOptions(), chunks_of(context_tar()))
        first = await build.__anext__()
        assert first == "Step 1/2 : FROM busybox:1.36\n"
        await build.aclose()
        assert port.build_files[0].closed
        assert stream.closed

    run(stop_after_first_line())


# Podman's Docker API: fully-qualified names, bare ids, no "Digest:" line ----------------


def test_list_shows_familiar_names_and_filters_by_them(
    core: ImageCore, port: FakeDockerPort
) -> None:
    port.add(
        engine_image(
            1,
            tags=["docker.io/acc/tiny:1", "docker.io/other/tiny:1"],
            digests=["docker.io/acc/tiny@" + DIGEST],
            created=200,
        )
    )
    port.add(engine_image(2, tags=["docker.io/library/busybox:1.36"], created=100))
    page = run(core.list_images(ImageFilter(), all=False, page_size=0, page_token=""))
    assert [i.repo_tags for i in page.images] == [("acc/tiny:1", "other/tiny:1"), ("busybox:1.36",)]
    assert page.images[0].repo_digests == ("acc/tiny@" + DIGEST,)
    # The fake Engine, like Podman, matches more than Docker would ("tiny" and both tags):
    # the service lists what Docker lists, only the matching tags.
    port._matches = lambda document, filters: True  # type: ignore[method-assign]

    def listed(pattern: str) -> list[tuple[str, ...]]:
        image_filter = ImageFilter(references=(pattern,))
        page = run(core.list_images(image_filter, all=False, page_size=0, page_token=""))
        assert page.total_size == len(page.images)
        return [i.repo_tags for i in page.images]

    assert listed("acc/tiny") == [("acc/tiny:1",)]
    assert listed("*/tiny:1") == [("acc/tiny:1", "other/tiny:1")]
    assert listed("tiny") == []
    assert listed("busybox") == [("busybox:1.36",)]


def test_list_with_a_malformed_reference_pattern_makes_no_engine_call(
    core: ImageCore, port: FakeDockerPort
) -> None:
    with pytest.raises(InvalidArgumentError):
        run(
            core.list_images(
                ImageFilter(references=("a/[",)), all=False, page_size=0, page_token=""
            )
        )
    assert port.methods_called == []


def test_get_image_shows_familiar_names(core: ImageCore, port: FakeDockerPort) -> None:
    port.add(engine_image(3, tags=["docker.io/acc/tiny:1", "localhost/x:1"]))
    image = run(core.get_image(image_id(3)))
    assert image.repo_tags == ("acc/tiny:1", "localhost/x:1")


def test_remove_and_prune_results_use_docker_ids_and_names(
    core: ImageCore, port: FakeDockerPort
) -> None:
    bare = "ab" * 32
    port.remove_image = lambda image, **_: [  # type: ignore[method-assign]
        {"Untagged": "docker.io/acc/tiny:1"},
        {"Deleted": bare},
    ]
    port.prune_images = lambda filters: {  # type: ignore[method-assign]
        "ImagesDeleted": [{"Deleted": bare}],
        "SpaceReclaimed": 5,
    }
    removed = run(core.remove_image("acc/tiny:1", force=False, no_prune=False))
    assert removed.untagged == ("acc/tiny:1",)
    assert removed.deleted == (f"sha256:{bare}",)
    pruned = run(core.prune_images(PruneOptions()))
    assert pruned.deleted == (f"sha256:{bare}",)


@pytest.mark.parametrize(
    ("digests", "expected"),
    [
        (["127.0.0.1:5000/acc/tiny@" + DIGEST], DIGEST),
        # Several digests in the repository: which one the pull fetched is unknown.
        (["127.0.0.1:5000/acc/tiny@" + DIGEST, "127.0.0.1:5000/acc/tiny@" + PUSH_DIGEST], ""),
        (["127.0.0.1:5000/other@" + DIGEST], ""),
    ],
)
def test_pull_without_a_digest_line_takes_the_images_only_digest_in_the_repository(
    core: ImageCore, port: FakeDockerPort, digests: list[str], expected: str
) -> None:
    port.add(engine_image(4, tags=["127.0.0.1:5000/acc/tiny:1"], digests=digests))
    # What Podman 4.3 streams: layer lines only.
    port.pull_streams.append(
        FakeEngineStream([layer(L1, "Pulling fs layer"), layer(L1, "Download complete")])
    )
    result = run_collect(core.pull_image("127.0.0.1:5000/acc/tiny:1", platform="", auth=None))[-1]
    assert isinstance(result, PullResult)
    assert result.image_id == image_id(4)
    assert result.digest == expected
