"""WatchImages through the real server (every interceptor, the guard, both ports) on a
fake Engine, with the live index stood in for by a dict whose changes the test
publishes to the server's change log: gRPC, REST NDJSON, the Python clients, the CLI,
metrics, and the end of every watch at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2

from imagesvc.config import Settings
from imagesvc.core.image_changes import ImageChangeLog
from imagesvc.core.image_entries import IndexEntry
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc
from imagesvc_client import (
    WATCH_EXPIRED,
    AsyncImageClient,
    FailedPrecondition,
    ImageClient,
    InvalidArgument,
)
from imagesvc_client.cli.main import main as cli_main
from tests.scrape import scrape
from tests.unit.fakes import FakeDockerPort, image_id


def entry(n: int, *, tags: list[str] | None = None, team: str = "a") -> IndexEntry:
    return IndexEntry.from_summary(
        {
            "Id": image_id(n),
            "RepoTags": list(tags or []),
            "RepoDigests": [],
            "ParentId": "",
            "Created": 1_700_000_000 + n,
            "Size": 1000 + n,
            "Labels": {"team": team},
            "Containers": -1,
        }
    )


class Served:
    """A server whose image index is a dict the test changes (on the server's loop, where
    the change log lives, as the real index does)."""

    def __init__(self, *, with_index: bool = True) -> None:
        self.entries: dict[str, IndexEntry] = {}
        self.threaded = ThreadedServer(
            Settings(
                grpc_address="127.0.0.1:0",
                http_address="127.0.0.1:0",
                disable_image_index=not with_index,
            ),
            FakeDockerPort(),
            image_snapshot=self.snapshot if with_index else None,
        )
        self.address = f"127.0.0.1:{self.threaded.port}"
        self.http = f"http://127.0.0.1:{self.threaded.http_port}"

    @property
    def log(self) -> ImageChangeLog:
        return self.threaded.server.image_changes

    def snapshot(self) -> list[IndexEntry]:
        return list(self.entries.values())

    def put(self, new: IndexEntry) -> None:
        def apply() -> None:
            previous = self.entries.get(new.id)
            self.entries[new.id] = new
            self.log.publish(previous, new)

        self.threaded.run_on_loop(apply)

    def delete(self, n: int) -> None:
        self.threaded.run_on_loop(lambda: self.log.publish(self.entries.pop(image_id(n)), None))

    def wait_for_watchers(self, count: int) -> None:
        _wait_for(lambda: self.log.watchers == count, f"{count} watchers")


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


@pytest.fixture
def served() -> Iterator[Served]:
    server = Served()
    try:
        yield server
    finally:
        server.threaded.stop()


def kinds(messages: list[Any]) -> list[tuple[str, str]]:
    """(change type, image id) of each WatchImagesResponse, the server's or the client's."""
    out = []
    for message in messages:
        if message.HasField("live"):
            out.append(("LIVE", ""))
        else:
            out.append((pb.ChangeType.Name(message.change.type), message.change.image.id))
    return out


def error_reason(error: grpc.RpcError) -> str:
    call = cast("grpc.Call", error)
    for key, value in call.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(cast("bytes", value))
            info = error_details_pb2.ErrorInfo()
            status.details[0].Unpack(info)
            return str(info.reason)
    return ""


# gRPC ---------------------------------------------------------------------------------------


def test_initial_images_live_marker_changes_and_resume_over_grpc(served: Served) -> None:
    served.put(entry(1, tags=["app:1"]))
    served.put(entry(2, team="b"))
    with grpc.insecure_channel(served.address) as channel:
        stub = image_service_pb2_grpc.ImageServiceStub(channel)
        request = pb.WatchImagesRequest(
            filter=pb.ImageFilter(labels=["team=a"]), send_initial_images=True
        )
        call = stub.WatchImages(request, timeout=30)
        stream = iter(call)
        first = [next(stream), next(stream)]
        assert kinds(first) == [("CHANGE_TYPE_ADDED", image_id(1)), ("LIVE", "")]
        assert first[0].resume_token == ""
        assert list(first[0].change.image.repo_tags) == ["app:1"]
        served.put(entry(2, team="a"))  # starts matching
        served.put(entry(1, tags=["app:1", "app:2"]))
        changes = [next(stream), next(stream)]
        assert kinds(changes) == [
            ("CHANGE_TYPE_ADDED", image_id(2)),
            ("CHANGE_TYPE_UPDATED", image_id(1)),
        ]
        call.cancel()
        served.wait_for_watchers(0)

        # Changes while disconnected: the resumed watch gets exactly those.
        served.delete(2)
        served.put(entry(3))
        resumed = iter(
            stub.WatchImages(
                pb.WatchImagesRequest(
                    filter=pb.ImageFilter(labels=["team=a"]),
                    resume_token=changes[-1].resume_token,
                ),
                timeout=30,
            )
        )
        got = [next(resumed), next(resumed), next(resumed)]
        assert kinds(got) == [
            ("LIVE", ""),
            ("CHANGE_TYPE_DELETED", image_id(2)),
            ("CHANGE_TYPE_ADDED", image_id(3)),
        ]
        assert got[0].resume_token == changes[-1].resume_token


def test_an_expired_token_is_failed_precondition_watch_expired(served: Served) -> None:
    other = Served()
    try:
        foreign = other.log.current_token()
    finally:
        other.threaded.stop()
    with grpc.insecure_channel(served.address) as channel:
        stub = image_service_pb2_grpc.ImageServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            list(stub.WatchImages(pb.WatchImagesRequest(resume_token=foreign), timeout=10))
    assert error.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(error.value) == "WATCH_EXPIRED"
    assert "list the images again" in (error.value.details() or "")
    metrics = scrape(served.threaded.http_port)
    assert (
        metrics.value("imagesvc_image_watch_expirations_total", {"cause": "other_generation"}) == 1
    )


def test_without_the_index_watch_is_unavailable() -> None:
    server = Served(with_index=False)
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = image_service_pb2_grpc.ImageServiceStub(channel)
            with pytest.raises(grpc.RpcError) as error:
                list(stub.WatchImages(pb.WatchImagesRequest(), timeout=10))
        assert error.value.code() is grpc.StatusCode.UNAVAILABLE
        assert error_reason(error.value) == "WATCH_UNAVAILABLE"
    finally:
        server.threaded.stop()


def test_stopping_the_server_ends_watches_at_once_with_shutting_down() -> None:
    server = Served()
    with grpc.insecure_channel(server.address) as channel:
        stub = image_service_pb2_grpc.ImageServiceStub(channel)
        stream = iter(stub.WatchImages(pb.WatchImagesRequest(), timeout=30))
        assert kinds([next(stream)]) == [("LIVE", "")]
        started = time.monotonic()
        stopping = threading.Thread(target=server.threaded.stop, kwargs={"grace": 10.0})
        stopping.start()
        with pytest.raises(grpc.RpcError) as error:
            next(stream)
        stopping.join()
    assert error.value.code() is grpc.StatusCode.UNAVAILABLE
    assert error_reason(error.value) == "SHUTTING_DOWN"
    # Not held for the 10 s grace period.
    assert time.monotonic() - started < 5


def test_watch_metrics(served: Served) -> None:
    with grpc.insecure_channel(served.address) as channel:
        stub = image_service_pb2_grpc.ImageServiceStub(channel)
        call = stub.WatchImages(pb.WatchImagesRequest(), timeout=30)
        stream = iter(call)
        next(stream)
        served.put(entry(1))
        served.delete(1)
        next(stream)
        next(stream)
        metrics = scrape(served.threaded.http_port)
        assert metrics.value("imagesvc_image_watchers") == 1
        assert metrics.value("imagesvc_image_changes_published_total") == 2
        call.cancel()
        served.wait_for_watchers(0)
    assert scrape(served.threaded.http_port).value("imagesvc_image_watchers") == 0


# REST ---------------------------------------------------------------------------------------


def test_rest_streams_ndjson_and_a_disconnect_ends_the_watch(served: Served) -> None:
    served.put(entry(1, tags=["app:1"]))
    with (
        httpx.Client(base_url=served.http, timeout=10) as client,
        client.stream(
            "GET",
            "/v1/images:watch",
            params={"sendInitialImages": "true", "filter.labels": "team=a"},
        ) as response,
    ):
        assert response.status_code == 200
        lines = response.iter_lines()
        added = json.loads(next(lines))
        assert added["result"]["change"]["type"] == "CHANGE_TYPE_ADDED"
        assert added["result"]["change"]["image"]["repoTags"] == ["app:1"]
        assert added["result"]["resumeToken"] == ""
        live = json.loads(next(lines))
        assert live["result"]["live"] == {}
        assert live["result"]["resumeToken"]
        served.delete(1)
        deleted = json.loads(next(lines))["result"]
        assert deleted["change"]["type"] == "CHANGE_TYPE_DELETED"
        assert deleted["change"]["image"]["id"] == image_id(1)
        assert deleted["resumeToken"] not in ("", live["result"]["resumeToken"])
    served.wait_for_watchers(0)


def test_rest_expired_token_is_http_400_with_the_status(served: Served) -> None:
    with httpx.Client(base_url=served.http, timeout=10) as client:
        response = client.get(
            "/v1/images:watch", params={"resumeToken": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}
        )
    assert response.status_code == 400
    error = json.loads(response.text.splitlines()[0])["error"]
    assert error["code"] == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert error["details"][0]["reason"] == "WATCH_EXPIRED"


# Clients ------------------------------------------------------------------------------------


def test_python_client_iterates_and_keeps_the_resume_token(served: Served) -> None:
    served.put(entry(1, tags=["app:1"]))
    with ImageClient(served.address) as client:
        with client.watch(references=["app"], send_initial_images=True) as watch:
            messages = iter(watch)
            assert kinds([next(messages), next(messages)]) == [
                ("CHANGE_TYPE_ADDED", image_id(1)),
                ("LIVE", ""),
            ]
            live_token = watch.resume_token
            assert live_token
            served.put(entry(2, tags=["app:2"]))
            assert kinds([next(messages)]) == [("CHANGE_TYPE_ADDED", image_id(2))]
            assert watch.resume_token != live_token
        served.wait_for_watchers(0)
        with pytest.raises(InvalidArgument) as error, client.watch(resume_token="x") as bad:
            list(bad)
    assert error.value.metadata == {"field": "resume_token"}


def test_async_client_watches(served: Served) -> None:
    async def go() -> None:
        async with AsyncImageClient(served.address) as client:
            async with client.watch() as watch:
                messages = aiter(watch)
                assert kinds([await anext(messages)]) == [("LIVE", "")]
                await asyncio.to_thread(served.put, entry(5))
                assert kinds([await anext(messages)]) == [("CHANGE_TYPE_ADDED", image_id(5))]
            other = Served()
            token = other.log.current_token()
            other.threaded.stop()
            with pytest.raises(FailedPrecondition) as error:
                async for _ in client.watch(resume_token=token):
                    pass
            assert error.value.reason == WATCH_EXPIRED

    asyncio.run(go())


class _Lines(io.StringIO):
    """stdout of the CLI running in a thread, readable while it runs."""

    def lines(self) -> list[str]:
        return self.getvalue().splitlines()


def _run_cli(argv: list[str]) -> tuple[threading.Thread, _Lines, _Lines, list[int]]:
    out, err, code = _Lines(), _Lines(), []

    def run() -> None:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code.append(cli_main(argv))

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out, err, code


def test_cli_events_prints_json_lines_and_human_lines() -> None:
    server = Served()
    try:
        server.put(entry(1, tags=["app:1"]))
        thread, out, err, code = _run_cli(
            [
                "--server",
                server.address,
                "events",
                "--format",
                "json",
                "--initial",
                "--filter",
                "type=image",
                "--filter",
                "label=team=a",
            ]
        )
        _wait_for(lambda: len(out.lines()) == 2, "the initial image and the marker")
        server.put(entry(2, tags=["app:2"], team="b"))  # not matching
        server.put(entry(1, tags=["app:1", "app:3"]))
        _wait_for(lambda: len(out.lines()) == 3, "the update")
    finally:
        server.threaded.stop()
    thread.join(10)
    documents = [json.loads(line) for line in out.lines()]
    assert documents[0]["change"]["type"] == "CHANGE_TYPE_ADDED"
    assert "live" in documents[1]
    assert documents[2]["change"]["image"]["repoTags"] == ["app:1", "app:3"]
    assert documents[2]["resumeToken"]
    # The server stopped: the watch ended with its reason, exit code 1.
    assert code == [1]
    assert "SHUTTING_DOWN" in err.getvalue()

    server = Served()
    try:
        thread, out, err, code = _run_cli(["--server", server.address, "events"])
        server.wait_for_watchers(1)
        server.put(entry(7, tags=["team/app:1"]))
        server.delete(7)
        _wait_for(lambda: len(out.lines()) == 2, "two human lines")
    finally:
        server.threaded.stop()
    thread.join(10)
    added, deleted = out.lines()
    assert added.endswith(" image added 000000000000 (team/app:1)")
    assert deleted.endswith(" image deleted 000000000000 (team/app:1)")
    assert "resume with --since-token " in err.getvalue()


def test_cli_events_refuses_other_event_types() -> None:
    with contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit) as ended:
        cli_main(["events", "--filter", "type=container"])
    assert ended.value.code == 2
