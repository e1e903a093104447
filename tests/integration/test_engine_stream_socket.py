"""An Engine stream that ends never disturbs another request on a reused connection.

The adapter aborts a pull, push or build by shutting its socket down. A stream whose
response the Engine finished (or answered with an error) gives its connection back
to docker-py's pool (one pool per URL: pulls of one image share one); a shutdown
after that hit whichever request the pool had handed the connection to next. Under
32 clients pulling one image, the Engine logged ``error creating temporary lease:
context canceled`` for such a pull and the service answered UNAVAILABLE /
DAEMON_UNAVAILABLE, though nobody had cancelled it.

The test makes that interleaving certain: when the ending pull's thread gives its
connection back to the pool, a second pull of the same image (its registry now
stalled, so the pull keeps waiting) takes the connection and is sent before the
ending pull goes on. The second pull must still be waiting afterwards.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import docker.transport.unixconn
import pytest

from devtools.sandbox import BuiltImage, Engine, Registry
from imagesvc.core.errors import ImageServiceError
from imagesvc.engine.docker_adapter import DockerAdapter
from tests.integration.throttle_proxy import ThrottleProxy
from tests.integration.transfers import remove_local, unique

STILL_WAITING_FOR = 2.0
# How long the second pull's request takes to go out once it has its connection.
SEND_TIME = 0.3


@pytest.fixture
def proxy(open_registry: Registry) -> Iterator[ThrottleProxy]:
    with ThrottleProxy(open_registry.address, rate=None) as running:
        yield running


@pytest.fixture
def pushed(engine: Engine, proxy: ThrottleProxy, busybox_image: BuiltImage) -> Iterator[str]:
    """The busybox image in the open registry, through the proxy (and on the Engine)."""
    reference = f"{proxy.address}/{unique('team/socket-')}:1"
    engine.docker("tag", busybox_image.tag, reference)
    engine.docker("push", reference)
    yield reference
    remove_local(engine, reference)


class _WaitingPull:
    """A pull read in its own thread."""

    def __init__(self, adapter: DockerAdapter, reference: str) -> None:
        self.stream = adapter.pull(*reference.rsplit(":", 1), platform="", auth=None)
        self.outcome: str | None = None
        self._thread = threading.Thread(target=self._read)
        self._thread.start()

    def _read(self) -> None:
        try:
            next(self.stream, None)
            self.outcome = "ended"
        except ImageServiceError as e:
            self.outcome = f"{type(e).__name__}: {e}"

    def still_waiting_after(self, seconds: float) -> bool:
        self._thread.join(seconds)
        return self._thread.is_alive()

    def close(self) -> None:
        self.stream.close()
        self._thread.join(10)


def _idle_connections(pool: Any) -> int:
    return sum(1 for conn in list(pool.pool.queue) if conn is not None)


def test_an_ended_stream_leaves_the_next_request_on_its_connection_alone(
    engine: Engine, pushed: str, proxy: ThrottleProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = DockerAdapter(engine.host)
    ending = adapter.pull(*pushed.rsplit(":", 1), platform="", auth=None)
    ending_thread = threading.current_thread()
    waiting: list[_WaitingPull] = []
    put_conn = docker.transport.unixconn.UnixHTTPConnectionPool._put_conn

    def start_waiting_pull() -> _WaitingPull:
        proxy.set_rate(0)
        pull = _WaitingPull(adapter, pushed)
        waiting.append(pull)
        return pull

    def put_conn_then_reuse(pool: Any, conn: Any) -> None:
        put_conn(pool, conn)
        if threading.current_thread() is ending_thread and not waiting and conn is not None:
            # The ending pull's connection is back in the pool: a pull of the same image
            # (the same URL, so the same pool) takes it and sends its request.
            start_waiting_pull()
            deadline = time.monotonic() + 5
            while _idle_connections(pool) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert not _idle_connections(pool), "the second pull did not take the connection"
            time.sleep(SEND_TIME)

    monkeypatch.setattr(
        docker.transport.unixconn.UnixHTTPConnectionPool, "_put_conn", put_conn_then_reuse
    )
    try:
        assert list(ending), "the pull of a present image reported nothing"
        ending.close()
        pull = waiting[0] if waiting else start_waiting_pull()
        assert pull.still_waiting_after(STILL_WAITING_FOR), (
            f"the other pull ended when the first one did: {pull.outcome}"
        )
    finally:
        proxy.set_rate(None)
        for pull in waiting:
            pull.close()
        adapter.close()
