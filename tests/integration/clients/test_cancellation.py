"""A pull the client gives up on stops on the Docker daemon too: Ctrl-C in imagesvc-cli,
a cancelled asyncio task of AsyncImageClient, and leaving an ImageClient operation's
``with`` block early.

The pulls go through a throttling proxy in front of the open registry (a layer of
8 MiB at 200 kB/s takes ~40 s), so the proxy sees the daemon's registry connections:
they must close within seconds of the cancel, and after the throttle is lifted, the
image must still be missing (a daemon still pulling would be done in a second).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from devtools.sandbox import BuiltImage, Engine, Registry, build_busybox_image
from imagesvc_client import AsyncImageClient, ImageClient
from tests.integration.clients.test_cli import CLI
from tests.integration.throttle_proxy import ThrottleProxy
from tests.integration.transfers import local_id, local_image, remove_local, unique

LAYER_MIB = 8
RATE = 200 * 1024
STOP_WITHIN = 5.0
AFTER_CANCEL_WAIT = 3.0


@dataclass(frozen=True)
class SlowImage:
    reference: str  # through the proxy
    image_id: str
    proxy: ThrottleProxy


@pytest.fixture(scope="module")
def big_repository(
    engine: Engine, open_registry: Registry, busybox_image: BuiltImage
) -> Iterator[tuple[str, str]]:
    """(repository, image id) of an image with an 8 MiB random layer, in the open
    registry and not on the Engine."""
    repository = unique("team/client-cancel-")
    direct = f"{open_registry.address}/{repository}:1"
    image_id = build_busybox_image(
        engine, direct, extra_lines=[f"RUN dd if=/dev/urandom of=/blob bs=1M count={LAYER_MIB}"]
    )
    engine.docker("push", direct)
    remove_local(engine, direct)
    yield repository, image_id
    remove_local(engine, direct)


@pytest.fixture
def slow_image(
    engine: Engine, open_registry: Registry, big_repository: tuple[str, str]
) -> Iterator[SlowImage]:
    repository, image_id = big_repository
    with ThrottleProxy(open_registry.address, rate=RATE) as proxy:
        reference = f"{proxy.address}/{repository}:1"
        assert local_id(engine, image_id) is None
        try:
            yield SlowImage(reference, image_id, proxy)
        finally:
            remove_local(engine, reference)


def _assert_stopped_on_the_daemon(engine: Engine, slow: SlowImage) -> None:
    proxy = slow.proxy
    assert proxy.wait_for(lambda: proxy.open_connections == 0, timeout=STOP_WITHIN), (
        f"{proxy.open_connections} registry connection(s) open {STOP_WITHIN}s after the cancel"
    )
    opened = proxy.connections_opened
    proxy.set_rate(None)
    time.sleep(AFTER_CANCEL_WAIT)
    assert proxy.connections_opened == opened, "the daemon came back to the registry"
    assert local_image(engine, slow.reference) is None


def test_ctrl_c_in_the_cli_cancels_the_pull(
    address: str, engine: Engine, slow_image: SlowImage
) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("IMAGESVC_")}
    pull = subprocess.Popen(
        [str(CLI), "--server", address, "pull", slow_image.reference],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    try:
        assert pull.stdout is not None
        seen = []
        for line in pull.stdout:  # plain lines: stdout is not a terminal
            seen.append(line)
            if line.endswith(": Downloading\n"):
                break
        else:
            raise AssertionError(f"no layer was Downloading: {seen}")
        pull.send_signal(signal.SIGINT)
        out, err = pull.communicate(timeout=30)
    finally:
        if pull.poll() is None:
            pull.kill()
            pull.wait()
    assert pull.returncode == 130, (out, err)
    assert err == "imagesvc-cli: interrupted\n"
    assert "Status:" not in out
    _assert_stopped_on_the_daemon(engine, slow_image)


def test_cancelling_an_asyncio_task_cancels_the_pull(
    address: str, engine: Engine, busybox_image: BuiltImage, slow_image: SlowImage
) -> None:
    async def scenario() -> None:
        downloading = asyncio.Event()

        async def pull(client: AsyncImageClient) -> None:
            async for progress in client.pull(slow_image.reference):
                if any(layer.state == "Downloading" for layer in progress.layers):
                    downloading.set()

        async with AsyncImageClient(address) as client:
            task = asyncio.create_task(pull(client))
            await asyncio.wait_for(downloading.wait(), timeout=60)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # Checked with the channel still open (closing it would cancel the call too).
            await asyncio.to_thread(_assert_stopped_on_the_daemon, engine, slow_image)
            # The client stays usable after the cancel.
            assert (await client.get(busybox_image.tag)).id == busybox_image.id

    asyncio.run(scenario())


def test_leaving_an_operation_early_cancels_the_pull(
    address: str, engine: Engine, slow_image: SlowImage
) -> None:
    with ImageClient(address) as client:
        with client.pull(slow_image.reference) as operation:
            for progress in operation:
                if any(layer.state == "Downloading" for layer in progress.layers):
                    break
        assert not operation.done
        # Checked with the channel still open (closing it would cancel the call too).
        _assert_stopped_on_the_daemon(engine, slow_image)
