"""PullImageOnNodes' scheduling: which nodes pull when (parallelism), how long each may
take (a per-node timeout that covers every retry, a stall timeout on progress), which
failures are retried (with exponential backoff), what the completion policy stops, and
the summary. Transport-free: a node is a `PullTarget` whose `attempt` pulls once (this
node's own pull, or a peer's over gRPC) and raises NodeFailure with the node's reason.

Failure reasons are the fleet's typed ones (`PullFailureReason`), each mapped from the
node's ErrorInfo reason (core/errors.py `Reason`), which is kept beside it as the cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from imagesvc.core.errors import InvalidArgumentError, Reason
from imagesvc.core.fleet import NODE_DENIED, NODE_TIMEOUT, NODE_UNREACHABLE, NodeFailure

DEFAULT_STALL_TIMEOUT_SECONDS = 60.0
DEFAULT_RETRIES = 2
DEFAULT_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0
MAX_RETRIES = 10


class PullPhase(StrEnum):
    WAITING = "WAITING"  # not started yet, or waiting to retry
    PULLING = "PULLING"
    SUCCEEDED = "SUCCEEDED"
    SKIPPED = "SKIPPED"  # already held at the registry's digest
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"  # never started: the pull stopped at the first failure


class PullFailureReason(StrEnum):
    AUTH_FAILED = "AUTH_FAILED"
    NOT_FOUND = "NOT_FOUND"
    NOT_ALLOWED = "NOT_ALLOWED"  # the node's registry allowlist refused the reference
    RATE_LIMITED = "RATE_LIMITED"
    REGISTRY_UNAVAILABLE = "REGISTRY_UNAVAILABLE"
    STALLED = "STALLED"
    TIMED_OUT = "TIMED_OUT"
    DISK_FULL = "DISK_FULL"
    DAEMON_UNAVAILABLE = "DAEMON_UNAVAILABLE"
    NODE_UNREACHABLE = "NODE_UNREACHABLE"
    NODE_DENIED = "NODE_DENIED"
    NODE_NOT_FOUND = "NODE_NOT_FOUND"  # a requested name no reachable node has
    INVALID_REQUEST = "INVALID_REQUEST"
    CANCELLED = "CANCELLED"
    ERROR = "ERROR"


_FROM_CAUSE: dict[str, PullFailureReason] = {
    Reason.REGISTRY_UNAUTHENTICATED: PullFailureReason.AUTH_FAILED,
    Reason.REGISTRY_DENIED: PullFailureReason.AUTH_FAILED,
    Reason.IMAGE_NOT_FOUND: PullFailureReason.NOT_FOUND,
    Reason.REGISTRY_NOT_ALLOWED: PullFailureReason.NOT_ALLOWED,
    Reason.TOO_MANY_REQUESTS: PullFailureReason.RATE_LIMITED,
    Reason.CONCURRENCY_LIMIT: PullFailureReason.RATE_LIMITED,
    Reason.REGISTRY_UNAVAILABLE: PullFailureReason.REGISTRY_UNAVAILABLE,
    Reason.TRANSFER_STALLED: PullFailureReason.STALLED,
    Reason.DAEMON_DISK_FULL: PullFailureReason.DISK_FULL,
    Reason.DAEMON_UNAVAILABLE: PullFailureReason.DAEMON_UNAVAILABLE,
    Reason.DAEMON_TIMEOUT: PullFailureReason.DAEMON_UNAVAILABLE,
    Reason.INVALID_REFERENCE: PullFailureReason.INVALID_REQUEST,
    Reason.INVALID_ARGUMENT: PullFailureReason.INVALID_REQUEST,
    Reason.SHUTTING_DOWN: PullFailureReason.NODE_UNREACHABLE,
    NODE_UNREACHABLE: PullFailureReason.NODE_UNREACHABLE,
    NODE_TIMEOUT: PullFailureReason.NODE_UNREACHABLE,
    NODE_DENIED: PullFailureReason.NODE_DENIED,
}

# Worth another attempt: the registry or the node may answer next time. Never a refusal,
# a missing image or a full disk: those answer the same until someone acts.
RETRYABLE = frozenset(
    {
        PullFailureReason.RATE_LIMITED,
        PullFailureReason.REGISTRY_UNAVAILABLE,
        PullFailureReason.STALLED,
    }
)


@dataclass(frozen=True, slots=True)
class PullFailure:
    """A node's failure: the fleet's reason, a message, the node's own reason (cause)."""

    reason: PullFailureReason
    message: str
    cause: str = ""


def failure_from(node: NodeFailure) -> PullFailure:
    """A node's failure, its ErrorInfo reason (or fleet reason) mapped to the fleet's."""
    if node.reason in PullFailureReason.__members__:
        return PullFailure(PullFailureReason(node.reason), node.message, node.reason)
    return PullFailure(
        _FROM_CAUSE.get(node.reason, PullFailureReason.ERROR), node.message, node.reason
    )


@dataclass(frozen=True, slots=True)
class NodeProgress:
    """One attempt's progress on a node; `percent` as the node computed it (from layer
    sizes it knows, never going back: see LayerSizes)."""

    bytes_done: int
    bytes_total: int
    percent: float = 0.0


# Layer states whose size the Engine has not told yet (it tells it once the download starts).
_SIZE_UNKNOWN_STATES = frozenset({"Pulling fs layer", "Waiting"})


class LayerSizes:
    """The percent of one pull, from every layer's state as the Engine reports them. Held
    while a layer's size is still unknown: a small layer done while a big one waits
    is not 100 %, and the bar never goes back when the big one's size arrives."""

    def __init__(self) -> None:
        self._layers: dict[str, tuple[str, int]] = {}
        self.percent = 0.0

    def update(
        self, layers: Sequence[tuple[str, str, int]], bytes_done: int, bytes_total: int
    ) -> float:
        """`layers`: (id, state, total) of the layers that changed."""
        for layer_id, state, total in layers:
            self._layers[layer_id] = (state, total)
        unknown = any(
            total <= 0 and state in _SIZE_UNKNOWN_STATES for state, total in self._layers.values()
        )
        if not unknown and bytes_total > 0:
            share = math.floor(min(bytes_done, bytes_total) * 1000 / bytes_total) / 10
            self.percent = max(self.percent, share)
        return self.percent


@dataclass(frozen=True, slots=True)
class NodePulled:
    """One attempt's end: the image pulled, or already there (skipped)."""

    skipped: bool
    image_id: str = ""
    digest: str = ""
    name: str = ""  # the node's name as it answered, if it did


Attempt = Callable[[], AsyncGenerator[NodeProgress | NodePulled, None]]
# Asks a peer whether it still answers (raises NodeFailure when it does not).
Probe = Callable[[], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class PullTarget:
    """A node to pull on: `attempt` pulls once; `failure` set: the node fails unasked
    (unreachable when listed, or a requested name no node has)."""

    address: str
    name: str
    attempt: Attempt | None = None
    failure: PullFailure | None = None
    local: bool = False
    # A peer's: asked when its pull stalls, to tell a silent node from a stuck pull.
    probe: Probe | None = None


@dataclass(frozen=True, slots=True)
class NodePullUpdate:
    """One node's state, streamed whenever it changes."""

    address: str
    name: str
    phase: PullPhase
    attempt: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    failure: PullFailure | None = None  # the final failure, or the one being retried
    retry_in_seconds: float = 0.0
    image_id: str = ""
    digest: str = ""
    local: bool = False
    progress_percent: float = 0.0

    @property
    def percent(self) -> float:
        if self.phase in (PullPhase.SUCCEEDED, PullPhase.SKIPPED):
            return 100.0
        return self.progress_percent


@dataclass(frozen=True, slots=True)
class FleetPullSummary:
    """Every node's final update, by outcome, in node order."""

    desired: int
    succeeded: tuple[NodePullUpdate, ...]
    skipped: tuple[NodePullUpdate, ...]
    failed: tuple[NodePullUpdate, ...]
    cancelled: tuple[NodePullUpdate, ...]
    stopped_early: bool  # the completion policy stopped at the first failure

    @property
    def complete(self) -> bool:
        """The image is on every desired node."""
        return not self.failed and not self.cancelled


@dataclass(frozen=True, slots=True)
class FleetPullOptions:
    parallelism: int
    node_timeout_seconds: float | None  # None: no limit
    stall_timeout_seconds: float = DEFAULT_STALL_TIMEOUT_SECONDS  # 0: never stalls
    retries: int = DEFAULT_RETRIES
    backoff_seconds: float = DEFAULT_BACKOFF_SECONDS
    stop_on_first_failure: bool = False


def parallelism_of(text: str, nodes: int, default: int) -> int:
    """A count ("3") or a share of the selected nodes ("25%", rounded up, at least one);
    empty: `default`."""
    text = text.strip()
    if not text:
        return default
    share = text.endswith("%")
    digits = text.removesuffix("%").strip()
    if not digits.isdigit() or int(digits) < 1 or (share and int(digits) > 100):
        raise InvalidArgumentError(
            f"parallelism {text!r} is neither a count of at least 1 nor a percentage from 1%"
            " to 100%",
            reason=Reason.INVALID_ARGUMENT,
            metadata={"field": "parallelism"},
        )
    if share:
        return max(1, math.ceil(nodes * int(digits) / 100))
    return int(digits)


def check_seconds(name: str, value: float) -> None:
    """A duration field: 0 (the default) or a finite positive number of seconds."""
    if not math.isfinite(value) or value < 0:
        raise InvalidArgumentError(
            f"{name} must be 0 (the default) or a positive number of seconds, not {value:g}",
            reason=Reason.INVALID_ARGUMENT,
            metadata={"field": name},
        )


def check_retries(value: int) -> None:
    if not 0 <= value <= MAX_RETRIES:
        raise InvalidArgumentError(
            f"retries must be from 0 to {MAX_RETRIES}, not {value}",
            reason=Reason.INVALID_ARGUMENT,
            metadata={"field": "retries"},
        )


Sleep = Callable[[float], Awaitable[None]]


async def fleet_pull(
    targets: Sequence[PullTarget],
    options: FleetPullOptions,
    *,
    sleep: Sleep = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncGenerator[NodePullUpdate | FleetPullSummary, None]:
    """Every target's updates as they happen (first each one WAITING), then the summary.
    Closing the iterator cancels every node's pull."""
    updates: asyncio.Queue[NodePullUpdate] = asyncio.Queue()
    finals: dict[int, NodePullUpdate] = {}
    slots = asyncio.Semaphore(max(options.parallelism, 1))
    stopping = asyncio.Event()
    first_failure: list[str] = []

    def report(index: int, update: NodePullUpdate) -> None:
        updates.put_nowait(update)
        if update.phase not in (PullPhase.WAITING, PullPhase.PULLING):
            finals[index] = update
            if update.phase is PullPhase.FAILED and options.stop_on_first_failure:
                if not stopping.is_set():
                    first_failure.append(update.name or update.address)
                stopping.set()

    for target in targets:
        yield NodePullUpdate(target.address, target.name, PullPhase.WAITING, local=target.local)
    # Nodes that fail unasked come first, so that a stop policy stops before any pull.
    for index, target in enumerate(targets):
        if target.failure is not None or target.attempt is None:
            failure = target.failure or PullFailure(PullFailureReason.ERROR, "no way to pull")
            report(index, _final(target, PullPhase.FAILED, failure=failure))

    async def run(index: int, target: PullTarget, attempt: Attempt) -> None:
        async with slots:
            if stopping.is_set():
                report(index, _cancelled(target, first_failure))
                return
            report(
                index, await _pull_node(target, attempt, options, report_to(index), sleep, clock)
            )

    def report_to(index: int) -> Callable[[NodePullUpdate], None]:
        return lambda update: report(index, update)

    tasks = [
        asyncio.create_task(run(index, target, target.attempt))
        for index, target in enumerate(targets)
        if index not in finals and target.attempt is not None
    ]
    getter: asyncio.Future[NodePullUpdate] | None = None
    try:
        pending = set(tasks)
        while pending or not updates.empty():
            if updates.empty():
                getter = asyncio.ensure_future(updates.get())
                done, _ = await asyncio.wait(
                    {getter, *pending}, return_when=asyncio.FIRST_COMPLETED
                )
                pending -= done
                if getter in done:
                    yield getter.result()
                else:
                    getter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await getter
                for task in done - {getter}:
                    task.result()  # a bug of ours surfaces here
                continue
            yield updates.get_nowait()
    finally:
        # Done, or closed early (the caller left): nothing of ours is left pending.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if getter is not None and not getter.done():
            getter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await getter
    ordered = [finals[index] for index in range(len(targets))]
    yield FleetPullSummary(
        desired=len(targets),
        succeeded=tuple(u for u in ordered if u.phase is PullPhase.SUCCEEDED),
        skipped=tuple(u for u in ordered if u.phase is PullPhase.SKIPPED),
        failed=tuple(u for u in ordered if u.phase is PullPhase.FAILED),
        cancelled=tuple(u for u in ordered if u.phase is PullPhase.CANCELLED),
        stopped_early=stopping.is_set(),
    )


def _final(target: PullTarget, phase: PullPhase, **fields: object) -> NodePullUpdate:
    update = NodePullUpdate(target.address, target.name, phase, local=target.local)
    return replace(update, **fields)  # type: ignore[arg-type]


def _cancelled(target: PullTarget, first_failure: list[str]) -> NodePullUpdate:
    which = first_failure[0] if first_failure else "another node"
    return _final(
        target,
        PullPhase.CANCELLED,
        failure=PullFailure(
            PullFailureReason.CANCELLED,
            f"not started: the pull stops at the first failure ({which} failed)",
        ),
    )


@dataclass
class _NodeState:
    target: PullTarget
    name: str
    attempt: int = 0
    last: NodeProgress = field(default_factory=lambda: NodeProgress(0, 0))
    last_failure: PullFailure | None = None

    def update(self, phase: PullPhase, **fields: object) -> NodePullUpdate:
        base = NodePullUpdate(
            self.target.address,
            self.name,
            phase,
            attempt=self.attempt,
            bytes_done=self.last.bytes_done,
            bytes_total=self.last.bytes_total,
            progress_percent=self.last.percent,
            local=self.target.local,
        )
        return replace(base, **fields)  # type: ignore[arg-type]


async def _pull_node(
    target: PullTarget,
    attempt: Attempt,
    options: FleetPullOptions,
    report: Callable[[NodePullUpdate], None],
    sleep: Sleep,
    clock: Callable[[], float],
) -> NodePullUpdate:
    """The node's attempts, all within the node timeout; its final update."""
    state = _NodeState(target, target.name)
    try:
        async with asyncio.timeout(options.node_timeout_seconds):
            while True:
                state.attempt += 1
                state.last = NodeProgress(0, 0)
                report(state.update(PullPhase.PULLING))
                try:
                    pulled = await _attempt(state, attempt, options, report, clock)
                except NodeFailure as node_failure:
                    failure = failure_from(node_failure)
                    state.last_failure = failure
                    if failure.reason not in RETRYABLE or state.attempt > options.retries:
                        return state.update(PullPhase.FAILED, failure=failure)
                    delay = min(
                        options.backoff_seconds * 2 ** (state.attempt - 1), MAX_BACKOFF_SECONDS
                    )
                    report(state.update(PullPhase.WAITING, failure=failure, retry_in_seconds=delay))
                    await sleep(delay)
                    continue
                if pulled.name:
                    state.name = pulled.name
                phase = PullPhase.SKIPPED if pulled.skipped else PullPhase.SUCCEEDED
                return state.update(phase, image_id=pulled.image_id, digest=pulled.digest)
    except TimeoutError:
        last = state.last_failure
        tail = f"; the last attempt failed: {last.reason}: {last.message}" if last else ""
        return state.update(
            PullPhase.FAILED,
            failure=PullFailure(
                PullFailureReason.TIMED_OUT,
                f"node {state.name or target.address} did not finish the pull within"
                f" {options.node_timeout_seconds or 0:g} s (attempt {state.attempt}){tail}",
                last.reason if last else "",
            ),
        )


async def _attempt(
    state: _NodeState,
    attempt: Attempt,
    options: FleetPullOptions,
    report: Callable[[NodePullUpdate], None],
    clock: Callable[[], float],
) -> NodePulled:
    """One pull, ended as STALLED when its progress does not move for the stall timeout."""
    stall = options.stall_timeout_seconds
    moved_at = clock()
    items = attempt()
    async with contextlib.aclosing(items):
        while True:
            left = stall - (clock() - moved_at) if stall > 0 else None
            try:
                if left is not None and left <= 0:
                    raise TimeoutError
                async with asyncio.timeout(left):
                    item = await anext(items)
            except StopAsyncIteration:
                raise NodeFailure(
                    str(Reason.INTERNAL), "the node ended its pull without a result"
                ) from None
            except TimeoutError:
                await _fail_if_silent(state, stall)
                raise NodeFailure(
                    PullFailureReason.STALLED,
                    f"node {state.name or state.target.address}: no progress for {stall:g} s"
                    f" at {state.last.bytes_done} of {state.last.bytes_total} bytes",
                ) from None
            if isinstance(item, NodePulled):
                return item
            if item != state.last:
                moved_at = clock()
                state.last = item
                report(state.update(PullPhase.PULLING))


async def _fail_if_silent(state: _NodeState, stall: float) -> None:
    """A peer whose pull stalled may be the one that went silent (its link cut, its host
    gone): a retry on the same connection would stall again, and STALLED would blame the
    registry. One cheap call tells: no answer is NODE_UNREACHABLE, which is not retried."""
    probe = state.target.probe
    if probe is None:
        return
    try:
        await probe()
    except NodeFailure as failure:
        if failure.reason not in (NODE_UNREACHABLE, NODE_TIMEOUT):
            return  # it answered, if only to refuse: the pull itself is stuck
        raise NodeFailure(
            PullFailureReason.NODE_UNREACHABLE,
            f"node {state.name or state.target.address} stopped answering during its pull"
            f" (no progress for {stall:g} s at {state.last.bytes_done} of"
            f" {state.last.bytes_total} bytes; {failure.message})",
        ) from None
