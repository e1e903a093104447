"""A pull the client gives up on stops on the Docker daemon too: Ctrl-C in imagesvc-cli,
a cancelled asyncio task of AsyncImageClient, and leaving an ImageClient operation's
``with`` block early (the TypeScript client's AbortSignal: test_typescript.py).

The pulls go through a throttling proxy in front of the open registry (``slow_image``),
so the proxy sees the daemon's registry connections: they must close within seconds of
the cancel, and after the throttle is lifted, the image must still be missing (a daemon
still pulling would be done in a second).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess

import pytest

from devtools.sandbox import BuiltImage, Engine
from imagesvc_client import AsyncImageClient, ImageClient
from tests.integration.clients.conftest import SlowImage, assert_pull_stopped
from tests.integration.clients.test_cli import CLI


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
    assert_pull_stopped(engine, slow_image)


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
            await asyncio.to_thread(assert_pull_stopped, engine, slow_image)
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
        assert_pull_stopped(engine, slow_image)
