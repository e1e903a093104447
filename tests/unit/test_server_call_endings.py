"""How a call the caller ended is reported, on /metrics and in the access log, through the
real server (every interceptor) on a fake Engine whose pulls hang: a passed deadline is
DeadlineExceeded (the service was too slow: the error-ratio alert counts it), a cancel
is Canceled (the caller changed its mind: not counted), as go-grpc-middleware reports."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator

import grpc
import pytest

from imagesvc.config import Settings
from imagesvc.logs import JsonFormatter
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc
from tests.scrape import delta, scrape
from tests.unit.fakes import FakeDockerPort, FakeEngineStream

PULL = {
    "grpc_type": "server_stream",
    "grpc_service": "imagesvc.v1.ImageService",
    "grpc_method": "PullImage",
}


class AccessLines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict[str, object]] = []
        self._format = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "rpc":
            self.lines.append(json.loads(self._format.format(record)))


@pytest.fixture
def access() -> Iterator[AccessLines]:
    handler = AccessLines()
    logger = logging.getLogger("imagesvc.access")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _hanging_pull() -> FakeEngineStream:
    return FakeEngineStream([{"status": "Pulling from team/app", "id": "1"}], block_at=1)


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_a_passed_deadline_and_a_cancel_are_told_apart(access: AccessLines) -> None:
    port = FakeDockerPort()
    port.pull_streams += [_hanging_pull(), _hanging_pull()]
    server = ThreadedServer(Settings(grpc_address="127.0.0.1:0", http_address="127.0.0.1:0"), port)
    try:
        before = scrape(server.http_port)
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = image_service_pb2_grpc.ImageServiceStub(channel)
            late = stub.PullImage(pb.PullImageRequest(reference="team/app:1"), timeout=0.5)
            with pytest.raises(grpc.RpcError) as ended:
                list(late)
            assert ended.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED

            cancelled = stub.PullImage(pb.PullImageRequest(reference="team/app:1"), timeout=30)
            next(cancelled)
            cancelled.cancel()
            _wait_for(lambda: len(access.lines) == 2, "two access lines")
        after = scrape(server.http_port)
    finally:
        server.stop()

    def handled(code: str) -> float:
        return delta(before, after, "grpc_server_handled_total", {**PULL, "grpc_code": code})

    assert handled("DeadlineExceeded") == 1
    assert handled("Canceled") == 1
    assert [line["grpc_code"] for line in access.lines] == ["DEADLINE_EXCEEDED", "CANCELLED"]
