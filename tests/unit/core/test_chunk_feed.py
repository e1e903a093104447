"""ChunkFeed hands the checking worker what the event loop received without copying it:
a whole chunk as the same object, part of one as a view of it."""

from __future__ import annotations

import asyncio

from imagesvc.core.tar_check import ChunkFeed


def _fed(*chunks: bytes) -> ChunkFeed:
    async def feed() -> ChunkFeed:
        chunk_feed = ChunkFeed(asyncio.get_running_loop())
        for chunk in chunks:
            assert await chunk_feed.put(chunk)
        chunk_feed.end()
        return chunk_feed

    return asyncio.run(feed())


def test_a_whole_chunk_is_handed_on_as_the_same_object() -> None:
    first, second = b"a" * 4096, b"b" * 100
    feed = _fed(first, second)
    assert feed.read(1 << 20) is first
    assert feed.read(1 << 20) is second
    assert feed.read(1 << 20) == b""


def test_part_of_a_chunk_is_a_view_of_it_and_the_rest_follows() -> None:
    chunk = bytes(range(256)) * 8
    feed = _fed(chunk)
    head = feed.read(512)
    assert isinstance(head, memoryview)
    assert head.obj is chunk
    assert bytes(head) == chunk[:512]
    rest = feed.read(-1)
    assert bytes(rest) == chunk[512:]
    assert feed.read(10) == b""


def test_a_full_feed_holds_the_loop_back_until_the_worker_reads() -> None:
    chunks = [bytes([n]) * 4 for n in range(50)]

    async def run() -> bytes:
        loop = asyncio.get_running_loop()
        feed = ChunkFeed(loop, max_pending_bytes=10)

        def worker() -> bytes:
            received = bytearray()
            while data := feed.read(3):
                received += data
            return bytes(received)

        reading = loop.run_in_executor(None, worker)
        for chunk in chunks:
            assert await asyncio.wait_for(feed.put(chunk), timeout=10)
            assert feed._pending <= 10 + len(chunk)
        feed.end()
        return await asyncio.wait_for(reading, timeout=10)

    assert asyncio.run(run()) == b"".join(chunks)
