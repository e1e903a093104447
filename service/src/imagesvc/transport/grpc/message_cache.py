"""Wire messages converted once per immutable core object.

The live image index keeps one frozen `models.Image` per image until that image
changes, so every read of an unchanged image can reuse what was converted the first
time (convert.py keeps the serialized message, far smaller than a message object): a
ListImages of 400 images then parses 400 kept wire forms in one go instead of
converting 400 images. Entries are keyed by the object's identity and dropped when the object is
garbage-collected (a weak reference): a changed image is a new object, converted afresh,
and the cache never holds more than the objects still alive elsewhere. Objects made
for one call (an Engine answer) come and go with it.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")
M = TypeVar("M")


class MessageCache(Generic[V, M]):
    """`convert(value)`, remembered while `value` lives. Callers must not mutate the
    message returned (copy it into the response)."""

    def __init__(self, convert: Callable[[V], M]) -> None:
        self._convert = convert
        self._entries: dict[int, tuple[weakref.ref[V], M]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, value: V) -> M:
        key = id(value)
        entry = self._entries.get(key)
        if entry is not None and entry[0]() is value:
            return entry[1]
        message = self._convert(value)
        self._entries[key] = (weakref.ref(value, self._forgetter(key)), message)
        return message

    def _forgetter(self, key: int) -> Callable[[weakref.ref[V]], None]:
        def forget(reference: weakref.ref[V]) -> None:
            # Only this object's entry: its id may already name a newer object's.
            entry = self._entries.get(key)
            if entry is not None and entry[0] is reference:
                self._entries.pop(key, None)

        return forget
