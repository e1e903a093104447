"""ImageCore.export_images with the fake Engine: every image found before any byte, the
chunks as the Engine sends them, and the Engine's export closed however it ends."""

from __future__ import annotations

import asyncio

import pytest

from imagesvc.core.errors import InvalidArgumentError, NotFoundError, Reason, UnavailableError
from imagesvc.core.image_core import EXPORT_CHUNK_BYTES, MAX_EXPORT_IMAGES, ImageCore
from tests.unit.aio import run, run_collect
from tests.unit.fakes import FakeDockerPort, FakeEngineBytes, engine_image


def test_export_streams_the_engine_archive_chunk_by_chunk(
    core: ImageCore, port: FakeDockerPort
) -> None:
    port.add(engine_image(1, tags=["team/app:1.0"]))
    archive = FakeEngineBytes([b"a" * 10, b"b" * 20, b"c"])
    port.export_archives.append(archive)
    assert run_collect(core.export_images(["team/app:1.0"])) == [b"a" * 10, b"b" * 20, b"c"]
    [call] = port.calls_to("export_images")
    assert call.args == (["team/app:1.0"],)
    assert call.kwargs == {"chunk_size": EXPORT_CHUNK_BYTES}
    assert archive.closed


def test_export_names_each_image_once_in_the_order_given(
    core: ImageCore, port: FakeDockerPort
) -> None:
    port.add(engine_image(1, tags=["team/app:1.0"]))
    port.add(engine_image(2, tags=["team/web:2"]))
    port.export_archives.append(FakeEngineBytes([b"x"]))
    run_collect(core.export_images(["team/web:2", "team/app:1.0", "team/web:2"]))
    assert port.calls_to("export_images")[0].args == (["team/web:2", "team/app:1.0"],)


def test_an_unknown_image_is_not_found_before_the_engine_exports_anything(
    core: ImageCore, port: FakeDockerPort
) -> None:
    port.add(engine_image(1, tags=["team/app:1.0"]))
    port.export_archives.append(FakeEngineBytes([b"x"]))
    with pytest.raises(NotFoundError) as caught:
        run_collect(core.export_images(["team/app:1.0", "team/missing:1"]))
    assert caught.value.reason is Reason.IMAGE_NOT_FOUND
    assert "team/missing:1" in caught.value.message
    assert port.calls_to("export_images") == []


@pytest.mark.parametrize(
    ("images", "expected"),
    [
        ([], "images is required"),
        (["Not A Reference!"], "invalid image reference"),
        (["busybox"] * (MAX_EXPORT_IMAGES + 1), f"at most {MAX_EXPORT_IMAGES} images"),
    ],
)
def test_export_refuses_a_malformed_request(
    core: ImageCore, port: FakeDockerPort, images: list[str], expected: str
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        run_collect(core.export_images(images))
    assert expected in caught.value.message.lower()
    assert port.calls == []


def test_a_failure_mid_export_is_raised_and_closes_the_engine_response(
    core: ImageCore, port: FakeDockerPort
) -> None:
    port.add(engine_image(1, tags=["team/app:1.0"]))
    lost = UnavailableError("daemon gone", reason=Reason.DAEMON_UNAVAILABLE)
    archive = FakeEngineBytes([b"a", lost])
    port.export_archives.append(archive)
    received: list[bytes] = []

    async def consume() -> None:
        async for chunk in core.export_images(["team/app:1.0"]):
            received.append(chunk)

    with pytest.raises(UnavailableError):
        run(consume())
    assert received == [b"a"]
    assert archive.closed


def test_a_cancelled_export_closes_the_engine_response_at_once(
    core: ImageCore, port: FakeDockerPort
) -> None:
    port.add(engine_image(1, tags=["team/app:1.0"]))
    archive = FakeEngineBytes([b"a", b"b", b"c"], block_at=1)
    port.export_archives.append(archive)

    async def scenario() -> list[bytes]:
        received: list[bytes] = []

        async def consume() -> None:
            async for chunk in core.export_images(["team/app:1.0"]):
                received.append(chunk)

        task = asyncio.create_task(consume())
        assert await asyncio.to_thread(archive.blocked.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert archive.closed
        return received

    assert run(asyncio.wait_for(scenario(), timeout=5)) == [b"a"]


def test_a_consumer_that_stops_early_closes_the_engine_response(
    core: ImageCore, port: FakeDockerPort
) -> None:
    port.add(engine_image(1, tags=["team/app:1.0"]))
    archive = FakeEngineBytes([b"a", b"b", b"c"])
    port.export_archives.append(archive)

    async def first_only() -> bytes:
        chunks = core.export_images(["team/app:1.0"])
        first = await anext(chunks)
        await chunks.aclose()
        return first

    assert run(first_only()) == b"a"
    assert archive.closed
    assert archive.reads <= 2  # the chunk sent and the one read ahead
