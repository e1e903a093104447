"""Kept images from the settings (`--keep-images-file`): the keeper, its metric and its
gRPC health name, which answers SERVING only while every kept image is present."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Sequence

from grpc_health.v1 import health, health_pb2

from imagesvc.config import Settings, SettingsError
from imagesvc.core.image_core import ImageCore
from imagesvc.core.kept_images import (
    CoreKeeperPort,
    KeepSettings,
    KeptImage,
    KeptImages,
    parse_keep_list,
)
from imagesvc.core.reloading import FileProblem, ReloadingFile
from imagesvc.metrics import ImagesvcMetrics

# The health service name a readiness gate or an operator asks: is this node warm?
KEPT_IMAGES_SERVICE = "imagesvc.v1.KeptImages"

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class ServerKeptImages:
    """`keeper` is None when no keep file is configured (health then SERVING)."""

    def __init__(
        self,
        settings: Settings,
        core: ImageCore,
        metrics: ImagesvcMetrics,
        health_servicer: health.aio.HealthServicer,
    ) -> None:
        self._metrics = metrics
        self._health = health_servicer
        self._task: asyncio.Task[None] | None = None
        self._health_updates: set[asyncio.Task[None]] = set()
        self._ready: bool | None = None
        self.keeper: KeptImages | None = None
        if not settings.keep_images_file:
            return
        if settings.keep_images_check_interval_seconds <= 0:
            raise SettingsError("--keep-images-check-interval-seconds must be over 0")
        try:
            keep_file = ReloadingFile(
                settings.keep_images_file, parse_keep_list, what="keep-images file"
            )
        except FileProblem as exc:
            raise SettingsError(f"--keep-images-file: {exc}") from None
        self.keeper = KeptImages(
            keep_file.current,
            CoreKeeperPort(core),
            settings=KeepSettings(
                check_interval_seconds=settings.keep_images_check_interval_seconds
            ),
            observer=self,
        )
        core.guard_prunes(self.keeper.check_prune)

    def images(self) -> tuple[KeptImage, ...]:
        return self.keeper.images() if self.keeper is not None else ()

    async def start(self) -> None:
        self._ready = self.keeper is None or self.keeper.all_present()
        await self._health.set(KEPT_IMAGES_SERVICE, _SERVING if self._ready else _NOT_SERVING)
        if self.keeper is not None:
            self._task = asyncio.create_task(self.keeper.run(), name="kept-images")

    async def stop(self) -> None:
        for task in (self._task, *self._health_updates):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = None

    # The keeper's observer (on the event loop).
    def kept_images_changed(self, images: Sequence[KeptImage]) -> None:
        self._metrics.kept_image_states(dict(Counter(str(image.state) for image in images)))
        ready = self.keeper is not None and self.keeper.all_present()
        if ready == self._ready:
            return
        self._ready = ready
        # Tasks start in the order they are made, and the health servicer's lock is FIFO:
        # the last readiness wins.
        update = asyncio.get_running_loop().create_task(
            self._health.set(KEPT_IMAGES_SERVICE, _SERVING if ready else _NOT_SERVING)
        )
        self._health_updates.add(update)
        update.add_done_callback(self._health_updates.discard)
