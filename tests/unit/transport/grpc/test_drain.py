"""Drain: new calls refused with UNAVAILABLE once shutdown starts; running ones awaited."""

from __future__ import annotations

import asyncio

import pytest

from imagesvc.core.errors import Reason, UnavailableError
from imagesvc.transport.grpc.drain import Drain
from tests.unit.aio import run


def test_calls_pass_until_draining_then_are_refused_as_retryable() -> None:
    async def scenario() -> None:
        drain = Drain()
        with drain.call():
            pass
        assert await drain.start(0.1)
        with pytest.raises(UnavailableError) as refused, drain.call():
            pass
        assert refused.value.reason is Reason.SHUTTING_DOWN
        assert "shutting down" in refused.value.message

    run(scenario())


def test_start_waits_for_the_running_call_to_end() -> None:
    async def scenario() -> None:
        drain = Drain()
        ended = asyncio.Event()

        async def running_call() -> None:
            with drain.call():
                await asyncio.sleep(0.2)
            ended.set()

        task = asyncio.create_task(running_call())
        await asyncio.sleep(0.01)
        assert await drain.start(5)
        assert ended.is_set()
        await task

    run(scenario())


def test_start_gives_up_after_the_grace_period() -> None:
    async def scenario() -> None:
        drain = Drain()
        release = asyncio.Event()

        async def stuck_call() -> None:
            with drain.call():
                await release.wait()

        task = asyncio.create_task(stuck_call())
        await asyncio.sleep(0.01)
        assert not await drain.start(0.05)
        release.set()
        await task

    run(scenario())
