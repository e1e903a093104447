"""ListImages against the sandboxed engine: filters, ``all``, pagination, and one Engine
list call per request. The docker CLI is the oracle for which images match."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO

import grpc
import pytest

from devtools.engine_kinds import EngineKind
from devtools.sandbox import BuiltImage, SandboxEngine
from imagesvc.core.models import RegistryAuth
from imagesvc.core.port import BuildRequest, EngineBytes, JsonDocument
from imagesvc.engine.docker_adapter import DockerAdapter, DockerEngineStream
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_pb2, image_service_pb2_grpc
from imagesvc.v1 import image_service_pb2 as pb
from tests.integration.conftest import server_settings
from tests.integration.local_images import (
    Stub,
    Throwaway,
    assert_serving,
    cli_list_ids,
    engine_time,
    expect_error,
    in_step,
    inspect,
    unique_repo,
)

# The API contract: runs once per engine kind (tests/integration/conftest.py).
pytestmark = pytest.mark.contract

# (repository suffix, tag, extra labels) of the images built in order, oldest first.
_CATALOGUE: tuple[tuple[str, str, Mapping[str, str]], ...] = (
    ("alpha", "1.0", {"parity": "even"}),
    ("alpha", "1.1", {"parity": "odd", "tier": "gold"}),
    ("alpha", "2.0", {"parity": "even", "tier": "silver"}),
    ("beta", "1.0", {"parity": "odd"}),
    ("beta", "2.0", {"parity": "even", "tier": "gold"}),
    ("beta", "2.1", {"parity": "odd"}),
    ("alpha", "3.0", {"parity": "even"}),
)


@dataclass(frozen=True)
class Catalogue:
    """Throwaway images for this module, all labelled with ``throwaway.label``."""

    throwaway: Throwaway
    prefix: str  # repositories are f"{prefix}-alpha" and f"{prefix}-beta"
    images: tuple[BuiltImage, ...]  # _CATALOGUE, oldest first
    replaced: BuiltImage  # built first as f"{prefix}-gamma:1", then replaced: dangling
    replacement: BuiltImage  # the newest image, f"{prefix}-gamma:1"

    @property
    def label(self) -> str:
        return self.throwaway.label

    def all_ids(self) -> set[str]:
        return {i.id for i in self.images} | {self.replaced.id, self.replacement.id}


@pytest.fixture(scope="module")
def catalogue(engine: SandboxEngine, busybox_image: BuiltImage, stub: Stub) -> Iterator[Catalogue]:
    throwaway = Throwaway(engine)
    prefix = unique_repo("list")
    try:
        images = tuple(
            throwaway.build(
                f"{prefix}-{repo}:{tag}",
                labels={"org.imagesvc-test.index": str(index), **labels},
            )
            for index, (repo, tag, labels) in enumerate(_CATALOGUE)
        )
        gamma = f"{prefix}-gamma:1"
        replaced = throwaway.build(gamma, extra_lines=["ENV VERSION=1"])
        replacement = throwaway.build(gamma, extra_lines=["ENV VERSION=2"])
        assert inspect(engine, replaced.id)["RepoTags"] == []
        in_step(stub, engine)  # built on the Engine directly, as others do
        yield Catalogue(throwaway, prefix, images, replaced, replacement)
    finally:
        throwaway.cleanup()


def _list(stub: Stub, request: pb.ListImagesRequest) -> pb.ListImagesResponse:
    reply: pb.ListImagesResponse = stub.ListImages(request, timeout=20)
    return reply


def _ids(reply: pb.ListImagesResponse) -> list[str]:
    return [image.id for image in reply.images]


def _newest_first(engine: SandboxEngine, ids: set[str]) -> list[str]:
    """The order the API promises: newest first (by the Engine's Created second), then id."""
    created = {image_id: engine_time(inspect(engine, image_id)["Created"])[0] for image_id in ids}
    return sorted(ids, key=lambda image_id: (-created[image_id], image_id))


# --------------------------------------------------------------------------- pagination


@pytest.mark.parametrize("page_size", [3, 4])
def test_pages_concatenate_to_the_whole_list_newest_first(
    stub: Stub, engine: SandboxEngine, catalogue: Catalogue, page_size: int
) -> None:
    image_filter = pb.ImageFilter(labels=[catalogue.label])
    expected = cli_list_ids(engine, f"label={catalogue.label}")
    assert expected == catalogue.all_ids()
    assert len(expected) == 9

    pages: list[list[str]] = []
    token = ""
    while True:
        reply = _list(
            stub, pb.ListImagesRequest(filter=image_filter, page_size=page_size, page_token=token)
        )
        assert reply.total_size == len(expected)
        pages.append(_ids(reply))
        token = reply.next_page_token
        if not token:
            break
        assert len(pages) < 10, "paging does not end"

    sizes = [len(page) for page in pages]
    full_pages, rest = divmod(len(expected), page_size)
    assert sizes == [page_size] * full_pages + ([rest] if rest else [])
    listed = [image_id for page in pages for image_id in page]
    assert len(listed) == len(set(listed)), "an image was listed twice"
    assert listed == _newest_first(engine, expected)

    # One unpaged call returns the same list in the same order.
    whole = _list(stub, pb.ListImagesRequest(filter=image_filter))
    assert _ids(whole) == listed
    assert whole.next_page_token == ""
    assert whole.total_size == len(expected)


def test_page_token_of_another_query_is_rejected(
    stub: Stub, catalogue: Catalogue, busybox_image: BuiltImage
) -> None:
    image_filter = pb.ImageFilter(labels=[catalogue.label])
    first = _list(stub, pb.ListImagesRequest(filter=image_filter, page_size=3))
    assert first.next_page_token

    # The token continues the query it came from...
    second = _list(
        stub,
        pb.ListImagesRequest(filter=image_filter, page_size=3, page_token=first.next_page_token),
    )
    assert len(second.images) == 3
    assert not set(_ids(first)) & set(_ids(second))

    # ...but not one with another filter, another `all`, or a forged token.
    other_filters = [
        pb.ListImagesRequest(
            filter=pb.ImageFilter(labels=[catalogue.label, "parity=even"]),
            page_size=3,
            page_token=first.next_page_token,
        ),
        pb.ListImagesRequest(
            filter=pb.ImageFilter(labels=[catalogue.label], dangling=False),
            page_size=3,
            page_token=first.next_page_token,
        ),
        pb.ListImagesRequest(
            filter=image_filter, all=True, page_size=3, page_token=first.next_page_token
        ),
        pb.ListImagesRequest(filter=image_filter, page_size=3, page_token="not-a-page-token"),
        pb.ListImagesRequest(
            filter=image_filter, page_size=3, page_token=first.next_page_token[:-2]
        ),
    ]
    for request in other_filters:
        error = expect_error(
            stub.ListImages, request, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN"
        )
        assert "page_token" in (error.details() or "")
    assert_serving(stub, busybox_image)


def test_negative_page_size_is_invalid(stub: Stub, busybox_image: BuiltImage) -> None:
    expect_error(
        stub.ListImages,
        pb.ListImagesRequest(page_size=-1),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )
    assert_serving(stub, busybox_image)


# --------------------------------------------------------------------------- fields


def test_listed_fields_match_the_engine(
    stub: Stub, engine: SandboxEngine, engine_kind: EngineKind, catalogue: Catalogue
) -> None:
    reply = _list(stub, pb.ListImagesRequest(filter=pb.ImageFilter(labels=[catalogue.label])))
    assert {image.id for image in reply.images} == catalogue.all_ids()
    listed = engine.api_get("/images/json?all=1")
    assert isinstance(listed, list)
    listed_sizes = {entry["Id"]: entry["Size"] for entry in listed}
    for image in reply.images:
        document = inspect(engine, image.id)
        assert sorted(image.repo_tags) == sorted(document["RepoTags"] or [])
        assert sorted(image.repo_digests) == sorted(document["RepoDigests"] or [])
        assert image.parent == document["Parent"]
        assert image.created.seconds == engine_time(document["Created"])[0]
        # The containerd store's list counts an image's compressed content as well as its
        # unpacked layers, its inspect only the latter: a list reports the list's size.
        assert image.size == listed_sizes[image.id]
        if not engine_kind.containerd_store:
            assert image.size == document["Size"]
        assert dict(image.labels) == document["Config"]["Labels"]
        # Docker does not count containers in a plain list (the CLI shows "N/A"); Podman
        # does (no container uses these images).
        assert image.containers == (0 if engine_kind.counts_list_containers else -1)
        # A list fills only what the Engine's list call returns: no inspect behind it.
        assert not image.HasField("config")
        assert image.inspect_json == ""
        assert list(image.root_fs_layers) == []
    by_id = {image.id: image for image in reply.images}
    assert list(by_id[catalogue.replaced.id].repo_tags) == []
    assert list(by_id[catalogue.replacement.id].repo_tags) == [f"{catalogue.prefix}-gamma:1"]
    assert by_id[catalogue.images[1].id].labels["tier"] == "gold"


def test_session_image_is_listed_without_filters(
    stub: Stub, engine: SandboxEngine, busybox_image: BuiltImage
) -> None:
    reply = _list(stub, pb.ListImagesRequest())
    assert set(_ids(reply)) == cli_list_ids(engine)
    assert reply.total_size == len(reply.images)
    listed = {image.id: image for image in reply.images}
    assert busybox_image.tag in listed[busybox_image.id].repo_tags


# --------------------------------------------------------------------------- filters


def _reference_cases(prefix: str) -> list[tuple[list[str], set[int]]]:
    """Reference patterns and the _CATALOGUE indexes they select."""
    return [
        ([f"{prefix}-alpha"], {0, 1, 2, 6}),
        ([f"{prefix}-alpha:1.*"], {0, 1}),
        ([f"{prefix}-*:2.*"], {2, 4, 5}),
        ([f"{prefix}-beta:2.0", f"{prefix}-alpha:3.0"], {4, 6}),
        ([f"{prefix}-alpha:9.9"], set()),
    ]


def test_reference_filters(
    stub: Stub, engine: SandboxEngine, engine_kind: EngineKind, catalogue: Catalogue
) -> None:
    for patterns, indexes in _reference_cases(catalogue.prefix):
        expected = {catalogue.images[i].id for i in indexes}
        if engine_kind.dockers_list_filters:  # the expectations are Docker's own answers
            cli = cli_list_ids(engine, *(f"reference={p}" for p in patterns))
            assert cli == expected, patterns
        reply = _list(stub, pb.ListImagesRequest(filter=pb.ImageFilter(references=patterns)))
        assert set(_ids(reply)) == expected, patterns
        assert reply.total_size == len(expected)


@pytest.mark.parametrize(
    ("labels", "indexes"),
    [
        (["tier"], {1, 2, 4}),
        (["tier=gold"], {1, 4}),
        (["parity=even", "tier"], {2, 4}),
        (["parity=odd", "tier=silver"], set()),
        (["org.imagesvc-test.index=5"], {5}),
    ],
)
def test_label_filters(
    stub: Stub,
    engine: SandboxEngine,
    engine_kind: EngineKind,
    catalogue: Catalogue,
    labels: list[str],
    indexes: set[int],
) -> None:
    conditions = [catalogue.label, *labels]
    expected = {catalogue.images[i].id for i in indexes}
    if engine_kind.dockers_list_filters:  # the expectations are Docker's own answers
        assert cli_list_ids(engine, *(f"label={c}" for c in conditions)) == expected
    reply = _list(stub, pb.ListImagesRequest(filter=pb.ImageFilter(labels=conditions)))
    assert set(_ids(reply)) == expected
    assert reply.total_size == len(expected)


def test_dangling_filter(stub: Stub, engine: SandboxEngine, catalogue: Catalogue) -> None:
    scoped = f"label={catalogue.label}"
    dangling = _list(
        stub, pb.ListImagesRequest(filter=pb.ImageFilter(labels=[catalogue.label], dangling=True))
    )
    assert set(_ids(dangling)) == {catalogue.replaced.id}
    assert set(_ids(dangling)) == cli_list_ids(engine, scoped, "dangling=true")

    tagged = _list(
        stub, pb.ListImagesRequest(filter=pb.ImageFilter(labels=[catalogue.label], dangling=False))
    )
    assert set(_ids(tagged)) == catalogue.all_ids() - {catalogue.replaced.id}
    assert set(_ids(tagged)) == cli_list_ids(engine, scoped, "dangling=false")
    assert all(image.repo_tags for image in tagged.images)


def test_before_and_since_filters(stub: Stub, engine: SandboxEngine, catalogue: Catalogue) -> None:
    images = catalogue.images
    scoped = f"label={catalogue.label}"
    cases: list[tuple[pb.ImageFilter, list[str], set[str]]] = [
        (
            pb.ImageFilter(labels=[catalogue.label], before=images[3].tag),
            [f"before={images[3].tag}"],
            {images[i].id for i in (0, 1, 2)},
        ),
        (
            pb.ImageFilter(labels=[catalogue.label], since=images[4].tag),
            [f"since={images[4].tag}"],
            {images[5].id, images[6].id, catalogue.replaced.id, catalogue.replacement.id},
        ),
        (
            # By id, and both at once.
            pb.ImageFilter(labels=[catalogue.label], since=images[1].id, before=images[5].id),
            [f"since={images[1].id}", f"before={images[5].id}"],
            {images[i].id for i in (2, 3, 4)},
        ),
    ]
    for image_filter, cli_filters, expected in cases:
        assert cli_list_ids(engine, scoped, *cli_filters) == expected, cli_filters
        reply = _list(stub, pb.ListImagesRequest(filter=image_filter))
        assert set(_ids(reply)) == expected, cli_filters
        assert reply.total_size == len(expected)


def test_before_an_unknown_image_is_not_found(stub: Stub, busybox_image: BuiltImage) -> None:
    missing = unique_repo("no-such-image") + ":1"
    error = expect_error(
        stub.ListImages,
        pb.ListImagesRequest(filter=pb.ImageFilter(since=missing)),
        grpc.StatusCode.NOT_FOUND,
        "IMAGE_NOT_FOUND",
    )
    assert missing in (error.details() or "")
    expect_error(
        stub.ListImages,
        pb.ListImagesRequest(filter=pb.ImageFilter(before="Not A Reference")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REFERENCE",
    )
    assert_serving(stub, busybox_image)


def test_all_lists_intermediate_images(
    stub: Stub, engine: SandboxEngine, busybox_image: BuiltImage
) -> None:
    throwaway = Throwaway(engine)
    marker = f"org.imagesvc-test.layers={throwaway.scope}"
    try:
        # The LABEL line is an early step: the two ENV steps after it make intermediate
        # images that carry the label too.
        built = throwaway.build(
            unique_repo("list-all") + ":1",
            extra_lines=[f"LABEL {marker}", f"ENV FIRST={throwaway.scope}", "ENV SECOND=2"],
        )
        top_only = cli_list_ids(engine, f"label={marker}")
        with_intermediates = cli_list_ids(engine, f"label={marker}", all=True)
        assert top_only == {built.id}
        assert len(with_intermediates) == 4  # LABEL, ENV, ENV, and the final --label step
        assert top_only < with_intermediates
        in_step(stub, engine)  # built on the Engine directly

        plain = _list(stub, pb.ListImagesRequest(filter=pb.ImageFilter(labels=[marker])))
        assert set(_ids(plain)) == top_only
        everything = _list(
            stub, pb.ListImagesRequest(filter=pb.ImageFilter(labels=[marker]), all=True)
        )
        assert set(_ids(everything)) == with_intermediates
        assert everything.total_size == len(with_intermediates)
        # The intermediates are the three parents of the image, untagged.
        chain = [built.id]
        for _ in range(3):
            chain.append(inspect(engine, chain[-1])["Parent"])
        assert set(chain) == with_intermediates
        for image in everything.images:
            assert image.parent == inspect(engine, image.id)["Parent"]
            if image.id != built.id:
                assert list(image.repo_tags) == []
    finally:
        throwaway.cleanup()


# --------------------------------------------------------------------------- Engine calls


class CountingPort:
    """A DockerPort that forwards to a real DockerAdapter and counts the calls made."""

    def __init__(self, inner: DockerAdapter) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()

    def _count(self, name: str) -> None:
        with self._lock:
            self.calls[name] += 1

    def take(self) -> Counter[str]:
        """The calls counted since the last take()."""
        with self._lock:
            calls, self.calls = self.calls, Counter()
        return calls

    def close(self) -> None:
        self._inner.close()

    def ping(self) -> bool:
        # Not counted: the health watcher pings in the background.
        return self._inner.ping()

    def version(self) -> JsonDocument:
        self._count("version")
        return self._inner.version()

    def list_images(self, *, all: bool, filters: Mapping[str, list[str]]) -> list[JsonDocument]:
        self._count("list_images")
        return self._inner.list_images(all=all, filters=filters)

    def inspect_image(self, image: str) -> JsonDocument:
        self._count("inspect_image")
        return self._inner.inspect_image(image)

    def image_history(self, image: str) -> list[JsonDocument]:
        self._count("image_history")
        return self._inner.image_history(image)

    def pull(
        self, name: str, tag_or_digest: str, *, platform: str, auth: RegistryAuth | None
    ) -> DockerEngineStream:
        self._count("pull")
        return self._inner.pull(name, tag_or_digest, platform=platform, auth=auth)

    def push(self, name: str, tag: str, *, auth: RegistryAuth | None) -> DockerEngineStream:
        self._count("push")
        return self._inner.push(name, tag, auth=auth)

    def tag(self, source: str, repository: str, tag: str) -> None:
        self._count("tag")
        self._inner.tag(source, repository, tag)

    def build(
        self, context: IO[bytes] | Iterator[bytes], *, gzip: bool, request: BuildRequest
    ) -> DockerEngineStream:
        self._count("build")
        return self._inner.build(context, gzip=gzip, request=request)

    def load(self, archive: IO[bytes] | Iterator[bytes]) -> DockerEngineStream:
        self._count("load")
        return self._inner.load(archive)

    def remove_image(self, image: str, *, force: bool, no_prune: bool) -> list[JsonDocument]:
        self._count("remove_image")
        return self._inner.remove_image(image, force=force, no_prune=no_prune)

    def prune_images(self, filters: Mapping[str, list[str]]) -> JsonDocument:
        self._count("prune_images")
        return self._inner.prune_images(filters)

    def check_auth(self, auth: RegistryAuth) -> JsonDocument:
        self._count("check_auth")
        return self._inner.check_auth(auth)

    def inspect_distribution(self, name: str, *, auth: RegistryAuth | None) -> JsonDocument:
        self._count("inspect_distribution")
        return self._inner.inspect_distribution(name, auth=auth)

    def export_images(self, images: Sequence[str], *, chunk_size: int) -> EngineBytes:
        self._count("export_images")
        return self._inner.export_images(images, chunk_size=chunk_size)

    def disk_usage(self) -> JsonDocument:
        self._count("disk_usage")
        return self._inner.disk_usage()

    def image_events(self, *, since: str = "") -> DockerEngineStream:
        return self._inner.image_events(since=since)


@dataclass(frozen=True)
class CountedServer:
    port: CountingPort
    stub: Stub


@pytest.fixture(scope="module")
def counted(engine: SandboxEngine) -> Iterator[CountedServer]:
    port = CountingPort(DockerAdapter(engine.host))
    # The health loop's periodic gauge refresh is an unfiltered list of its own, not one
    # a request made: put it out of this module's reach so the counts are the requests'.
    # The Engine path is what this counts: no image index answering from memory.
    settings = server_settings(
        engine.host, image_stats_interval_seconds=24 * 3600.0, disable_image_index=True
    )
    running = ThreadedServer(settings, engine=port)
    try:
        # ...and let the one it makes at start (the gauges begin stale) be done first.
        deadline = time.monotonic() + 20
        while port.calls["list_images"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert port.calls["list_images"] == 1, "the start-up gauge refresh never listed"
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield CountedServer(port, image_service_pb2_grpc.ImageServiceStub(channel))
    finally:
        running.stop()


def test_one_engine_list_call_per_request(
    counted: CountedServer, engine: SandboxEngine, catalogue: Catalogue
) -> None:
    requests = [
        pb.ListImagesRequest(),
        pb.ListImagesRequest(all=True),
        pb.ListImagesRequest(
            filter=pb.ImageFilter(
                references=[f"{catalogue.prefix}-*"],
                labels=[catalogue.label, "parity"],
                dangling=False,
                since=catalogue.images[0].tag,
                before=catalogue.replacement.id,
            )
        ),
    ]
    counted.port.take()
    for request in requests:
        reply = _list(counted.stub, request)
        assert reply.images, request
        assert counted.port.take() == Counter({"list_images": 1}), request

    # Paging through nine images, three at a time: one list call per page, no inspect.
    image_filter = pb.ImageFilter(labels=[catalogue.label])
    token = ""
    listed: list[image_pb2.Image] = []
    while True:
        reply = _list(
            counted.stub, pb.ListImagesRequest(filter=image_filter, page_size=3, page_token=token)
        )
        assert counted.port.take() == Counter({"list_images": 1})
        listed.extend(reply.images)
        token = reply.next_page_token
        if not token:
            break
    assert {image.id for image in listed} == catalogue.all_ids()
    assert len(listed) == 9


def test_a_bad_page_token_costs_no_engine_call(counted: CountedServer) -> None:
    counted.port.take()
    expect_error(
        counted.stub.ListImages,
        pb.ListImagesRequest(page_token="bm90IGEgdG9rZW4"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_TOKEN",
    )
    assert counted.port.take() == Counter()
