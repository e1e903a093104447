"""Turns the Engine's pull/push progress messages into coalesced TransferProgress.

The Engine sends one JSON message per layer event, often hundreds a second. A
layer's state change is always reported; byte-count updates of a layer are passed
on at most every `min_interval` seconds (10 a second by default), and whatever is
held back goes out with the next message or with `flush()` at the end.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from imagesvc.core.models import LayerProgress, TransferProgress

_LAYER_ID = re.compile(r"[0-9a-f]{12}")
# States after which a pulled layer's bytes are all downloaded.
_DOWNLOADED_STATES = frozenset(
    {"Verifying Checksum", "Download complete", "Extracting", "Pull complete"}
)
_TRANSFER_STATES = frozenset({"Downloading", "Pushing"})
_FINISHED_PULL = frozenset({"Pull complete", "Already exists"})
_FINISHED_PUSH = frozenset({"Pushed", "Layer already exists", "Already exists"})
# A push reports a layer the registry copies from another repository as "Mounted from <repo>".
_MOUNTED_PREFIX = "Mounted from "


@dataclass(slots=True)
class _Layer:
    state: str = ""
    current: int = 0
    total: int = 0
    done_bytes: int = 0
    last_emit: float = float("-inf")
    dirty: bool = False
    state_changed: bool = False


class TransferTracker:
    """Aggregates one pull or push. Feed it every Engine message, in order."""

    def __init__(
        self,
        *,
        pushing: bool,
        min_interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pushing = pushing
        self._finished_states = _FINISHED_PUSH if pushing else _FINISHED_PULL
        self._min_interval = min_interval
        self._clock = clock
        self._layers: dict[str, _Layer] = {}
        self._ended = False
        self.status_lines: list[str] = []
        self.aux: dict[str, Any] = {}
        # Messages that said something new (bytes moved, a state changed, a status line):
        # what the stall timeout watches.
        self.moves = 0

    def feed(self, message: dict[str, Any]) -> TransferProgress | None:
        """Takes one Engine message; returns progress to send now, or None to hold back."""
        aux = message.get("aux")
        if isinstance(aux, dict):
            self.aux.update(aux)
            self.moves += 1
            return None
        status = str(message.get("status") or "")
        layer_id = str(message.get("id") or "")
        if not _LAYER_ID.fullmatch(layer_id):
            if not status:
                return None
            self.status_lines.append(status)
            self.moves += 1
            line = f"{layer_id}: {status}" if layer_id else status
            return self._snapshot(status=line, force_layers=False)
        return self._feed_layer(layer_id, status, message.get("progressDetail"))

    def _feed_layer(self, layer_id: str, state: str, detail: object) -> TransferProgress | None:
        layer = self._layers.setdefault(layer_id, _Layer())
        changed = state != layer.state
        current_before = layer.current
        layer.state = state
        layer.state_changed = layer.state_changed or changed
        if isinstance(detail, dict):
            current, total = detail.get("current"), detail.get("total")
            layer.current = current if isinstance(current, int) and current >= 0 else 0
            if isinstance(total, int) and total > 0:
                layer.total = total
        else:
            layer.current = 0
        if changed or layer.current != current_before:
            self.moves += 1
        if state in _TRANSFER_STATES:
            layer.done_bytes = layer.current
        elif state in _DOWNLOADED_STATES or self._finished(state):
            layer.done_bytes = max(layer.done_bytes, layer.total)
        layer.dirty = True
        now = self._clock()
        if changed or now - layer.last_emit >= self._min_interval:
            return self._snapshot(status="", force_layers=False)
        return None

    def _finished(self, state: str) -> bool:
        if self._pushing and state.startswith(_MOUNTED_PREFIX):
            return True
        return state in self._finished_states

    @property
    def bytes_done(self) -> int:
        """Bytes transferred so far over every layer (layers already present count 0)."""
        return sum(
            min(layer.done_bytes, layer.total) if layer.total else layer.done_bytes
            for layer in self._layers.values()
        )

    def flush(self) -> TransferProgress | None:
        """Progress still held back, if any."""
        if not any(layer.dirty for layer in self._layers.values()):
            return None
        return self._snapshot(status="", force_layers=True)

    def finish(self) -> TransferProgress | None:
        """The last progress of a transfer the Engine ended without an error: every layer
        it reported is then in place, whatever its last word. The containerd image store
        leaves a pulled layer at "Download complete" (it never says "Pull complete"), so
        counting by the words alone would end a successful pull with layers not done.
        None when nothing changes."""
        unfinished = [layer for layer in self._layers.values() if not self._finished(layer.state)]
        self._ended = True
        for layer in unfinished:
            layer.done_bytes = max(layer.done_bytes, layer.total)
        if not unfinished and not any(layer.dirty for layer in self._layers.values()):
            return None
        return self._snapshot(status="", force_layers=True)

    def snapshot(self) -> TransferProgress | None:
        """Where the transfer stands, every layer as last reported (for a consumer that
        joins it mid-way); None before the first layer. Changes nothing."""
        if not self._layers:
            return None
        layers = tuple(
            LayerProgress(layer_id, layer.state, layer.current, layer.total)
            for layer_id, layer in self._layers.items()
        )
        return self._progress(layers, status="")

    def _progress(self, layers: tuple[LayerProgress, ...], *, status: str) -> TransferProgress:
        return TransferProgress(
            layers=layers,
            bytes_done=self.bytes_done,
            bytes_total=sum(layer.total for layer in self._layers.values()),
            layers_done=sum(
                1 for layer in self._layers.values() if self._ended or self._finished(layer.state)
            ),
            layers_total=len(self._layers),
            status=status,
        )

    def _snapshot(self, *, status: str, force_layers: bool) -> TransferProgress:
        now = self._clock()
        changed: list[LayerProgress] = []
        for layer_id, layer in self._layers.items():
            due = force_layers or layer.state_changed or now - layer.last_emit >= self._min_interval
            if layer.dirty and due:
                changed.append(LayerProgress(layer_id, layer.state, layer.current, layer.total))
                layer.dirty = layer.state_changed = False
                layer.last_emit = now
        return self._progress(tuple(changed), status=status)
