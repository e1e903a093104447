"""On the gRPC port, a call ending UNAVAILABLE, INTERNAL or UNKNOWN writes one line on
`imagesvc.failures` with its cause (type, redacted message, chain) and request id;
callers' mistakes (NOT_FOUND) write none."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc
import pytest

from imagesvc.config import Settings
from imagesvc.core.errors import UnavailableError
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_pb2, image_service_pb2_grpc
from imagesvc.v1 import image_service_pb2 as pb
from tests.unit.fakes import FakeDockerPort

PASSWORD = "Pw-grpc-unit-Leak-5678"
Stub = image_service_pb2_grpc.ImageServiceStub


@pytest.fixture
def port() -> FakeDockerPort:
    return FakeDockerPort()


@pytest.fixture
def stub(port: FakeDockerPort) -> Iterator[Stub]:
    server = ThreadedServer(Settings(grpc_address="127.0.0.1:0", http_address="127.0.0.1:0"), port)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield image_service_pb2_grpc.ImageServiceStub(channel)
    finally:
        server.stop()


def _causes(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "imagesvc.failures"]


def test_unavailable_logs_its_chain_redacted(
    port: FakeDockerPort, stub: Stub, caplog: pytest.LogCaptureFixture
) -> None:
    try:
        raise OSError(f"refused, auth was {PASSWORD}")
    except OSError as refused:
        failure = UnavailableError("cannot reach the Docker daemon")
        failure.__cause__ = refused
    port.failures["check_auth"] = failure
    caplog.set_level(logging.DEBUG, logger="imagesvc.failures")
    with pytest.raises(grpc.RpcError) as ended:
        stub.CheckRegistryAuth(
            pb.CheckRegistryAuthRequest(
                auth=image_pb2.RegistryAuth(
                    username="u", password=PASSWORD, server_address="127.0.0.1:1"
                )
            ),
            metadata=(("x-request-id", "grpc-cause-1"),),
            timeout=10,
        )
    assert ended.value.code() is grpc.StatusCode.UNAVAILABLE
    [record] = _causes(caplog)
    assert record.levelno == logging.WARNING
    fields = vars(record)
    assert fields["request_id"] == "grpc-cause-1"
    assert fields["grpc_method"] == "/imagesvc.v1.ImageService/CheckRegistryAuth"
    assert fields["reason"] == "DAEMON_UNAVAILABLE"
    assert fields["cause_chain"] == [
        "imagesvc.core.errors.UnavailableError: cannot reach the Docker daemon",
        "OSError: refused, auth was [REDACTED]",
    ]
    assert PASSWORD not in record.getMessage()
    assert PASSWORD not in repr(fields)


def test_a_bug_logs_its_traceback_once(
    port: FakeDockerPort, stub: Stub, caplog: pytest.LogCaptureFixture
) -> None:
    port.failures["inspect_image"] = ZeroDivisionError("bug detail")  # type: ignore[assignment]
    caplog.set_level(logging.DEBUG, logger="imagesvc.failures")
    with pytest.raises(grpc.RpcError) as ended:
        stub.GetImage(pb.GetImageRequest(image="team/app:1"), timeout=10)
    assert ended.value.code() is grpc.StatusCode.INTERNAL
    assert "bug detail" not in (ended.value.details() or "")
    [record] = _causes(caplog)
    assert record.levelno == logging.ERROR
    assert vars(record)["error_type"] == "ZeroDivisionError"
    assert vars(record)["cause_chain"] == ["ZeroDivisionError: bug detail"]
    assert "Traceback" in vars(record)["traceback"]


def test_a_callers_mistake_logs_no_cause(stub: Stub, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="imagesvc.failures")
    with pytest.raises(grpc.RpcError) as ended:
        stub.GetImage(pb.GetImageRequest(image="team/absent:1"), timeout=10)
    assert ended.value.code() is grpc.StatusCode.NOT_FOUND
    assert not _causes(caplog)
