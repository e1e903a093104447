"""Live progress of pulls, pushes and builds, like the docker CLI draws it.

On a terminal: one bar per layer (state, bytes) and a total line, redrawn in place by
rich. Elsewhere (a pipe, a log file): a plain line whenever a layer changes state, so a
CI log stays readable.

Only the commands that draw progress import this module (and so rich): `-q` and
`--output json` runs never load it.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterable
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.status import Status

from imagesvc_client.cli.render import human_size
from imagesvc_client.v1 import image_pb2

# States after which a layer has nothing left to transfer.
_FINISHED = frozenset(
    {
        "Pull complete",
        "Already exists",
        "Pushed",
        "Layer already exists",
        "Download complete",
    }
)
_STEP = re.compile(r"^Step (\d+/\d+) : (.*)$")


class PipeAwareConsole(Console):
    """A rich Console that lets the entry point handle a closed pipe (closed_pipe.py):
    rich's own handling exits with status 1."""

    def on_broken_pipe(self) -> None:
        self.quiet = True  # nothing more to a reader that is gone
        # Rich's refresh thread (a terminal only) must not raise: the main thread
        # meets the closed pipe at its next write or at the last flush.
        if threading.current_thread() is threading.main_thread():
            raise BrokenPipeError


def stdout_console() -> Console:
    """The console the progress views draw on."""
    return PipeAwareConsole(file=sys.stdout, highlight=False)


def _finished(state: str) -> bool:
    return state in _FINISHED or state.startswith("Mounted from ")


class TransferView:
    """Shows a stream of TransferProgress messages on ``console``."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._live = console.is_terminal
        self._progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(bar_width=40),
            TextColumn("{task.fields[detail]}", markup=False),
            console=console,
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}
        self._states: dict[str, str] = {}
        self._total: TaskID | None = None
        # Status lines shown so far ("Digest: ...", "Status: ..."): the command does not
        # repeat them when it prints the result.
        self.statuses: list[str] = []

    def __enter__(self) -> TransferView:
        if self._live:
            self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._live:
            self._progress.stop()

    def show_all(self, messages: Iterable[image_pb2.TransferProgress]) -> None:
        for message in messages:
            self.show(message)

    def show(self, message: image_pb2.TransferProgress) -> None:
        if message.status:
            self.statuses.append(message.status)
            self._console.print(message.status, markup=False, highlight=False, soft_wrap=True)
        if self._live and message.layers_total:
            self._update_total(message)
        for layer in message.layers:
            changed = self._states.get(layer.layer_id) != layer.state
            self._states[layer.layer_id] = layer.state
            if self._live:
                self._update_bar(layer)
            elif changed:
                self._console.print(
                    f"{layer.layer_id}: {layer.state}",
                    markup=False,
                    highlight=False,
                    soft_wrap=True,
                )

    def _update_bar(self, layer: image_pb2.LayerProgress) -> None:
        description = f"{layer.layer_id}: {layer.state:<20}"
        task = self._tasks.get(layer.layer_id)
        if task is None:
            task = self._progress.add_task(description, total=None, detail="")
            self._tasks[layer.layer_id] = task
        if _finished(layer.state):
            # Drawn full; no byte count, which the Engine does not give for every state.
            self._progress.update(task, description=description, total=1, completed=1, detail="")
        elif layer.total > 0:
            self._progress.update(
                task,
                description=description,
                total=layer.total,
                completed=layer.current,
                detail=f"{human_size(layer.current)}/{human_size(layer.total)}",
            )
        else:
            self._progress.update(task, description=description, total=None, detail="")

    def _update_total(self, message: image_pb2.TransferProgress) -> None:
        # As wide as a layer's "<12 hex>: <state:20>", so that the bars line up.
        description = f"{f'total: {message.layers_done}/{message.layers_total} layers':<34}"
        detail = (
            f"{human_size(message.bytes_done)}/{human_size(message.bytes_total)}"
            if message.bytes_total
            else ""
        )
        # Created before the first layer's bar: the total stays the top line.
        if self._total is None:
            self._total = self._progress.add_task(description, total=None, detail=detail)
        self._progress.update(
            self._total,
            description=description,
            total=message.bytes_total or None,
            completed=message.bytes_done,
            detail=detail,
        )


class BuildView:
    """Prints build output as it comes; on a terminal, a spinner names the current step."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._status: Status | None = (
            Status("building", console=console) if console.is_terminal else None
        )
        self._partial = ""

    def __enter__(self) -> BuildView:
        if self._status is not None:
            self._status.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._partial:
            self._print(self._partial)
            self._partial = ""
        if self._status is not None:
            self._status.stop()

    def show(self, text: str) -> None:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._print(line)

    def _print(self, line: str) -> None:
        self._console.print(line, markup=False, highlight=False, soft_wrap=True)
        step = _STEP.match(line)
        if step is not None and self._status is not None:
            self._status.update(f"step {step[1]}: {step[2]}")
