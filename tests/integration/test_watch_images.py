"""WatchImages against a real engine: changes made with the docker CLI seen by an open
stream (gRPC and REST NDJSON) within 250 ms, the initial images, resuming after a
disconnect, filter transitions, the Engine stopped and started, and `imagesvc-cli events`."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from devtools.engine_kinds import EngineKind
from devtools.sandbox import BuiltImage, Registry, SandboxEngine, build_busybox_image
from imagesvc.core.image_index import ImageIndex
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc
from tests.integration.conftest import BUSYBOX_TAG, server_settings
from tests.integration.local_images import Stub, Throwaway, full_id, inspect
from tests.integration.rpc_errors import error_info
from tests.integration.test_image_index import EngineEvents

pytestmark = pytest.mark.contract

# The bound for changes made by others, here from the CLI command's return.
WITHIN = 0.25
LIVE = "LIVE"
_KINDS = {
    pb.CHANGE_TYPE_ADDED: "ADDED",
    pb.CHANGE_TYPE_UPDATED: "UPDATED",
    pb.CHANGE_TYPE_DELETED: "DELETED",
}


@dataclass(frozen=True)
class Seen:
    """One message of a watch, as either transport sends it, and when it arrived."""

    kind: str  # ADDED, UPDATED, DELETED or LIVE
    image_id: str
    tags: frozenset[str]
    token: str
    at: float  # time.monotonic()

    @property
    def change(self) -> tuple[str, str, frozenset[str], str]:
        return self.kind, self.image_id, self.tags, self.token


def _from_grpc(message: pb.WatchImagesResponse) -> Seen:
    now = time.monotonic()
    if message.HasField("live"):
        return Seen(LIVE, "", frozenset(), message.resume_token, now)
    change = message.change
    return Seen(
        _KINDS[change.type],
        change.image.id,
        frozenset(change.image.repo_tags),
        message.resume_token,
        now,
    )


def _from_rest(result: dict[str, Any]) -> Seen:
    now = time.monotonic()
    token = str(result.get("resumeToken", ""))
    if "live" in result:
        return Seen(LIVE, "", frozenset(), token, now)
    change = result["change"]
    image = change["image"]
    kind = str(change["type"]).removeprefix("CHANGE_TYPE_")
    return Seen(kind, image["id"], frozenset(image.get("repoTags", [])), token, now)


class Watch:
    """A watch read by a thread of its own, so that the test notes when each message
    arrived while it runs the docker CLI."""

    def __init__(self, messages: Iterable[Seen], cancel: Callable[[], object]) -> None:
        self._messages = messages
        self._cancel = cancel
        self._queue: queue.Queue[Seen | BaseException | None] = queue.Queue()
        self.received: list[Seen] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for seen in self._messages:
                self._queue.put(seen)
        except BaseException as error:  # noqa: BLE001 (handed to the test)
            self._queue.put(error)
        else:
            self._queue.put(None)

    def next(self, timeout: float = 10.0) -> Seen:
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"no watch message within {timeout} s after {self.received}"
            ) from None
        if item is None:
            raise AssertionError("the watch ended")
        if isinstance(item, BaseException):
            raise item
        self.received.append(item)
        return item

    def until(self, wanted: Callable[[Seen], bool], timeout: float = 10.0) -> Seen:
        """The next message `wanted`, skipping others (changes of other images)."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.next(max(deadline - time.monotonic(), 0.01))
            if wanted(seen):
                return seen

    def settle(self, quiet: float = 0.5, timeout: float = 30.0) -> None:
        """Reads until nothing arrives for `quiet` seconds: the index has applied what
        earlier tests did (Podman's events arrive late, and its refreshes are slower)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                item = self._queue.get(timeout=quiet)
            except queue.Empty:
                return
            assert isinstance(item, Seen), item
            self.received.append(item)
            assert time.monotonic() < deadline, "the watch never went quiet"

    def ended(self, timeout: float) -> BaseException | None:
        """How the stream ended (None: cleanly); fails if it goes on."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                item = self._queue.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"the watch still runs after {timeout} s") from None
            if item is None or isinstance(item, BaseException):
                return item
            self.received.append(item)

    def pending(self) -> bool:
        return not self._queue.empty()

    def close(self) -> None:
        self._cancel()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive()


def grpc_watch(stub: Stub, request: pb.WatchImagesRequest) -> Watch:
    call = stub.WatchImages(request)

    def messages() -> Iterator[Seen]:
        for message in call:
            yield _from_grpc(message)

    return Watch(messages(), call.cancel)


def rest_watch(http_port: int, params: dict[str, str]) -> Watch:
    """`GET /v1/images:watch` over http.client, whose socket another thread can shut down
    to end a blocked read."""
    connection = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
    connection.request("GET", f"/v1/images:watch?{urllib.parse.urlencode(params)}")
    response = connection.getresponse()
    assert response.status == 200, response.read()
    assert response.getheader("content-type") == "application/json"
    sock = connection.sock
    assert sock is not None
    sock.settimeout(None)
    closed = threading.Event()

    def messages() -> Iterator[Seen]:
        try:
            for line in response:
                document = json.loads(line)
                assert "result" in document, document
                yield _from_rest(document["result"])
        except (OSError, http.client.HTTPException):
            if not closed.is_set():
                raise

    def close() -> None:
        closed.set()
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        connection.close()

    return Watch(messages(), close)


@pytest.fixture
def watches() -> Iterator[list[Watch]]:
    """Watches to close after the test."""
    opened: list[Watch] = []
    yield opened
    for watch in opened:
        watch.close()


def _live(server: ThreadedServer, timeout: float = 60.0) -> ImageIndex:
    index = server.server.index
    assert index is not None
    deadline = time.monotonic() + timeout
    while not index.live:
        assert time.monotonic() < deadline, "the image index never went live"
        time.sleep(0.01)
    return index


@pytest.fixture
def live(server: ThreadedServer) -> ImageIndex:
    return _live(server)


def _repo(what: str) -> str:
    return f"imagesvc-test/watch-{what}-{uuid.uuid4().hex[:8]}"


def _timed(engine: SandboxEngine, *args: str) -> float:
    """Runs the docker CLI; the monotonic time it returned."""
    engine.docker(*args)
    return time.monotonic()


def _delay(seen: Seen, returned: float) -> float:
    """From the CLI's return to the message (0 when it came first)."""
    return max(seen.at - returned, 0.0)


def _is(
    kind: str, image_id: str, tag: str | None = None, *, tagged: bool = True
) -> Callable[[Seen], bool]:
    def wanted(seen: Seen) -> bool:
        if seen.kind != kind or seen.image_id != image_id:
            return False
        return tag is None or (tag in seen.tags) == tagged

    return wanted


# 1. Changes made with the docker CLI ------------------------------------------------------


@pytest.fixture(scope="module")
def registry_image(
    engine: SandboxEngine, open_registry: Registry, busybox_image: BuiltImage
) -> Iterator[str]:
    """An image of this module alone in the open registry, not on the Engine: pulling it
    adds an image, removing its only tag deletes it."""
    reference = f"{open_registry.address}/{_repo('pull')}:1"
    made = Throwaway(engine)
    made.build(reference, extra_lines=[f"LABEL watch={uuid.uuid4().hex}"])
    engine.docker("push", reference)
    engine.docker("image", "rm", reference)
    try:
        yield reference
    finally:
        engine.docker("image", "rm", "--force", reference, check=False)
        made.cleanup()


# Podman's Docker API serves its events from a file it polls: they arrive 120-180 ms after
# the command returns (measured here; dockerd's within a few ms), which leaves too little
# of 250 ms to bound the watch's delay from the command. On Podman the bound holds from
# the Engine's event, as the issue states it.
_LATE_ENGINE_EVENTS = frozenset({"podman"})


def test_cli_changes_are_streamed_within_250_ms(
    stub: Stub,
    server: ThreadedServer,
    live: ImageIndex,
    engine: SandboxEngine,
    engine_kind: EngineKind,
    busybox_image: BuiltImage,
    registry_image: str,
    watches: list[Watch],
) -> None:
    """docker tag, rmi and pull: UPDATED, ADDED and DELETED with the image after the
    change, on gRPC and on REST, each within 250 ms of the command's return and of the
    Engine's event (as a client of the Engine's own event stream receives it)."""
    over_grpc = grpc_watch(stub, pb.WatchImagesRequest())
    over_rest = rest_watch(server.http_port, {})
    watches += [over_grpc, over_rest]
    for watch in (over_grpc, over_rest):
        assert watch.next().kind == LIVE
    events = EngineEvents(engine)
    for watch in (over_grpc, over_rest):
        watch.settle()
    repo = _repo("cli")
    from_cli: dict[str, list[float]] = {"grpc": [], "rest": []}
    from_event: dict[str, list[float]] = {"grpc": [], "rest": []}

    def run(*args: str) -> tuple[float, int]:
        """The CLI's command: when it returned, and where its events start."""
        before = len(events.received)
        return _timed(engine, *args), before

    steps: list[str] = []

    def expect(wanted: Callable[[Seen], bool], ran: tuple[float, int]) -> list[Seen]:
        returned, first_event = ran
        deadline = time.monotonic() + 10
        while len(events.received) <= first_event:
            assert time.monotonic() < deadline, "the Engine sent no event"
            time.sleep(0.001)
        event_at, event = events.received[first_event]
        steps.append(str(event.get("Action")))
        found = []
        for name, watch in (("grpc", over_grpc), ("rest", over_rest)):
            seen = watch.until(wanted)
            from_cli[name].append(_delay(seen, returned))
            from_event[name].append(_delay(seen, event_at))
            found.append(seen)
        return found

    try:
        for n in range(5):
            target = f"{repo}:{n}"
            ran = run("tag", busybox_image.tag, target)
            for seen in expect(_is("UPDATED", busybox_image.id, target), ran):
                assert seen.tags == frozenset(inspect(engine, busybox_image.id)["RepoTags"])
            ran = run("image", "rm", target)
            for seen in expect(_is("UPDATED", busybox_image.id, target, tagged=False), ran):
                assert busybox_image.tag in seen.tags
        for _ in range(2):
            ran = run("pull", registry_image)
            pulled = full_id(inspect(engine, registry_image)["Id"])
            for seen in expect(_is("ADDED", pulled), ran):
                assert registry_image in seen.tags
            ran = run("image", "rm", registry_image)
            for seen, watch in zip(
                expect(_is("DELETED", pulled), ran), (over_grpc, over_rest), strict=True
            ):
                # As it last was: the Engine may untag it (an event of its own) first.
                before = [s for s in watch.received[:-1] if s.image_id == pulled][-1]
                assert before.kind in ("ADDED", "UPDATED")
                assert seen.tags == before.tags
    finally:
        events.close()
    print(
        f"\nWatchImages delays (s), max from the CLI's return: "
        f"{ {k: round(max(v), 4) for k, v in from_cli.items()} }, from the Engine's event: "
        f"{ {k: round(max(v), 4) for k, v in from_event.items()} }"
    )
    for name in ("grpc", "rest"):
        assert max(from_event[name]) < WITHIN, (
            name,
            list(zip(steps, from_event[name], strict=True)),
        )
        if engine_kind.name not in _LATE_ENGINE_EVENTS:
            assert max(from_cli[name]) < WITHIN, (
                name,
                list(zip(steps, from_cli[name], strict=True)),
            )


# 2. The initial images -------------------------------------------------------------------


def test_initial_images_are_the_list_then_the_live_marker(
    stub: Stub, live: ImageIndex, busybox_image: BuiltImage, watches: list[Watch]
) -> None:
    listed = stub.ListImages(pb.ListImagesRequest(all=True, page_size=1000)).images
    watch = grpc_watch(stub, pb.WatchImagesRequest(send_initial_images=True))
    watches.append(watch)
    initial = [watch.next() for _ in listed]
    marker = watch.next()
    assert [(s.kind, s.image_id, s.tags, s.token) for s in initial] == [
        ("ADDED", image.id, frozenset(image.repo_tags), "") for image in listed
    ]
    assert busybox_image.id in {s.image_id for s in initial}
    assert marker.kind == LIVE
    assert marker.token


# 3. Resume -------------------------------------------------------------------------------


def _expect_status(call: Callable[[], object], code: grpc.StatusCode, reason: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    error = caught.value
    assert isinstance(error, grpc.Call)
    assert error.code() == code, error.details()
    assert error_info(error).reason == reason, error.details()


def test_resume_gets_exactly_the_missed_changes(
    stub: Stub,
    live: ImageIndex,
    engine: SandboxEngine,
    busybox_image: BuiltImage,
    watches: list[Watch],
) -> None:
    repo = _repo("resume")
    request = pb.WatchImagesRequest(filter=pb.ImageFilter(references=[repo]))
    # One watch stays open throughout: what the resumed one must repeat.
    whole = grpc_watch(stub, request)
    first = grpc_watch(stub, request)
    watches += [whole, first]
    for watch in (whole, first):
        assert watch.next().kind == LIVE
    busy = busybox_image.id
    engine.docker("tag", busybox_image.tag, f"{repo}:1")
    engine.docker("tag", busybox_image.tag, f"{repo}:2")
    # The index may apply both tags in one refresh: one change or two.
    read = first.until(lambda seen: f"{repo}:2" in seen.tags)
    assert first.received[1].change[:2] == ("ADDED", busy)
    first.close()
    watches.remove(first)
    token = read.token
    # Missed while disconnected.
    engine.docker("tag", busybox_image.tag, f"{repo}:3")
    engine.docker("image", "rm", f"{repo}:1")
    engine.docker("image", "rm", f"{repo}:2")
    engine.docker("image", "rm", f"{repo}:3")
    last = whole.until(_is("DELETED", busy))
    tokens = [s.token for s in whole.received]
    assert token in tokens
    missed = [s.change for s in whole.received[tokens.index(token) + 1 :]]
    assert missed, "the changes made while disconnected"
    resumed = grpc_watch(stub, pb.WatchImagesRequest(filter=request.filter, resume_token=token))
    watches.append(resumed)
    marker = resumed.next()
    assert (marker.kind, marker.token) == (LIVE, token)
    got = [resumed.next().change for _ in missed]
    assert got == missed
    assert got[-1][:2] == ("DELETED", busy)
    assert busybox_image.tag in last.tags
    # None repeated, nothing more: the next change is a new one.
    engine.docker("tag", busybox_image.tag, f"{repo}:4")
    after = resumed.next()
    assert after.change == whole.until(_is("ADDED", busy, f"{repo}:4")).change
    engine.docker("image", "rm", f"{repo}:4")
    assert resumed.next().kind == "DELETED"


def test_a_token_of_another_generation_is_watch_expired(stub: Stub, live: ImageIndex) -> None:
    # A token as another instance of the server would make: 16 bytes of its generation,
    # then a sequence number.
    other = base64.urlsafe_b64encode(os.urandom(16) + (1).to_bytes(8, "big")).rstrip(b"=")
    request = pb.WatchImagesRequest(resume_token=other.decode())
    _expect_status(
        lambda: next(iter(stub.WatchImages(request, timeout=10))),
        grpc.StatusCode.FAILED_PRECONDITION,
        "WATCH_EXPIRED",
    )


# 4. Filter transitions -------------------------------------------------------------------


def test_a_reference_filter_sees_images_enter_and_leave(
    stub: Stub,
    live: ImageIndex,
    engine: SandboxEngine,
    busybox_image: BuiltImage,
    watches: list[Watch],
) -> None:
    repo_x = _repo("x")
    unrelated = f"{_repo('other')}:1"
    busy = busybox_image.id
    watch = grpc_watch(
        stub, pb.WatchImagesRequest(filter=pb.ImageFilter(references=[f"{repo_x}/*"]))
    )
    watches.append(watch)
    assert watch.next().kind == LIVE
    try:
        # Each step's message is the next one: the unrelated changes before it sent none.
        engine.docker("tag", busybox_image.tag, unrelated)
        engine.docker("tag", busybox_image.tag, f"{repo_x}/a:1")
        seen = watch.next()
        assert (seen.kind, seen.image_id) == ("ADDED", busy)
        assert seen.tags == frozenset({busybox_image.tag, unrelated, f"{repo_x}/a:1"})
        engine.docker("tag", busybox_image.tag, f"{repo_x}/b:1")
        assert watch.next().change[:2] == ("UPDATED", busy)
        engine.docker("image", "rm", f"{repo_x}/a:1")
        seen = watch.next()
        assert (seen.kind, seen.image_id) == ("UPDATED", busy)
        assert f"{repo_x}/a:1" not in seen.tags
        engine.docker("image", "rm", f"{repo_x}/b:1")
        seen = watch.next()
        assert (seen.kind, seen.image_id) == ("DELETED", busy)
        assert f"{repo_x}/b:1" in seen.tags  # as it last matched
        engine.docker("image", "rm", unrelated)
        engine.docker("tag", busybox_image.tag, f"{repo_x}/c:1")
        seen = watch.next()
        assert (seen.kind, seen.image_id) == ("ADDED", busy)
        assert seen.tags == frozenset({busybox_image.tag, f"{repo_x}/c:1"})
        engine.docker("image", "rm", f"{repo_x}/c:1")
        assert watch.next().change[:2] == ("DELETED", busy)
    finally:
        for tag in (unrelated, f"{repo_x}/a:1", f"{repo_x}/b:1", f"{repo_x}/c:1"):
            engine.docker("image", "rm", tag, check=False)


# 5. The Engine stopped and started -------------------------------------------------------


@pytest.fixture(scope="module")
def own_engine(engine_kind: EngineKind) -> Iterator[SandboxEngine]:
    """An engine of this kind for this module alone, which it stops and starts."""
    base = Path(tempfile.mkdtemp(prefix="isv-watch-", dir="/tmp"))
    own = engine_kind.make(base / "engine")
    own.start()
    try:
        yield own
    finally:
        own.stop()
        assert not own.leftover_processes()
        shutil.rmtree(base)


@pytest.fixture(scope="module")
def own_server(own_engine: SandboxEngine) -> Iterator[ThreadedServer]:
    server = ThreadedServer(server_settings(own_engine.host))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def own_stub(own_server: ThreadedServer) -> Iterator[Stub]:
    with grpc.insecure_channel(f"127.0.0.1:{own_server.port}") as channel:
        yield image_service_pb2_grpc.ImageServiceStub(channel)


def test_the_engine_stopped_and_started(
    stub: Stub,
    own_stub: Stub,
    own_server: ThreadedServer,
    own_engine: SandboxEngine,
    watches: list[Watch],
) -> None:
    index = _live(own_server)
    repo = _repo("restart")
    watch = grpc_watch(own_stub, pb.WatchImagesRequest())
    watches.append(watch)
    assert watch.next().kind == LIVE
    busy = full_id(build_busybox_image(own_engine, BUSYBOX_TAG))
    watch.until(_is("ADDED", busy, BUSYBOX_TAG))
    own_engine.docker("tag", BUSYBOX_TAG, f"{repo}:1")
    before = watch.until(_is("UPDATED", busy, f"{repo}:1"))
    own_engine.stop()
    try:
        deadline = time.monotonic() + 30
        while index.live:
            assert time.monotonic() < deadline, "the index never noticed the Engine stop"
            time.sleep(0.01)
        _expect_status(
            lambda: next(iter(own_stub.WatchImages(pb.WatchImagesRequest(), timeout=10))),
            grpc.StatusCode.UNAVAILABLE,
            "WATCH_UNAVAILABLE",
        )
    finally:
        own_engine.start()
    # At once, most likely before the index has subscribed and listed again.
    own_engine.docker("tag", BUSYBOX_TAG, f"{repo}:2")
    own_engine.docker("image", "rm", f"{repo}:1")
    # The open watch goes on and reports them (from the index's re-list or events).
    after = watch.until(
        lambda s: s.image_id == busy and s.tags == frozenset({BUSYBOX_TAG, f"{repo}:2"}), 60
    )
    assert after.kind == "UPDATED"
    assert frozenset(inspect(own_engine, busy)["RepoTags"]) == after.tags
    own_engine.docker("image", "rm", f"{repo}:2")
    watch.until(_is("UPDATED", busy, f"{repo}:2", tagged=False))
    # A watch resumed from before the stop gets every change since, in order.
    tokens = [s.token for s in watch.received]
    since = [s.change for s in watch.received[tokens.index(before.token) + 1 :]]
    resumed = grpc_watch(own_stub, pb.WatchImagesRequest(resume_token=before.token))
    watches.append(resumed)
    assert resumed.next().change == (LIVE, "", frozenset(), before.token)
    assert [resumed.next().change for _ in since] == since
    # Another server's token is from another generation.
    _expect_status(
        lambda: next(iter(stub.WatchImages(pb.WatchImagesRequest(resume_token=before.token)))),
        grpc.StatusCode.FAILED_PRECONDITION,
        "WATCH_EXPIRED",
    )


# 6. imagesvc-cli events --------------------------------------------------------------------


def test_cli_events_shows_a_docker_tag(
    server: ThreadedServer, live: ImageIndex, engine: SandboxEngine, busybox_image: BuiltImage
) -> None:
    cli = Path(sys.executable).with_name("imagesvc-cli")
    target = f"{_repo('cli-events')}:1"
    process = subprocess.Popen(
        [str(cli), "--server", f"127.0.0.1:{server.port}", "events", "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    # Each line is a WatchImagesResponse in the JSON mapping, as REST's `result` is.
    lines = (_from_rest(json.loads(line)) for line in process.stdout)
    printed = Watch(lines, process.terminate)
    try:
        first = printed.next()
        assert first.kind == LIVE
        assert first.token
        engine.docker("tag", busybox_image.tag, target)
        seen = printed.until(lambda seen: target in seen.tags)
        assert (seen.kind, seen.image_id) == ("UPDATED", busybox_image.id)
        assert seen.token not in ("", first.token)
    finally:
        printed.close()
        process.communicate(timeout=10)
        engine.docker("image", "rm", target, check=False)
