"""Running the async core from plain (sync) pytest tests, without pytest-asyncio."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


async def collect(items: AsyncIterator[T]) -> list[T]:
    return [item async for item in items]


def run_collect(items: AsyncIterator[T]) -> list[T]:
    return asyncio.run(collect(items))
