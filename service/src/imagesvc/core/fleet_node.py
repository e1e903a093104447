"""This node's own answers to the fleet RPCs: what a peer would answer for it, computed
in this process (a node never calls itself over the network)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable, Sequence
from concurrent.futures import Executor

from imagesvc.core.errors import ImageServiceError, InvalidArgumentError, NotFoundError, Reason
from imagesvc.core.fleet import NodeFailure, NodeImage, NodeImagesChange, NodeStatus
from imagesvc.core.fleet_pull import LayerSizes, NodeProgress, NodePulled
from imagesvc.core.image_core import ImageCore
from imagesvc.core.kept_images import KeptImage
from imagesvc.core.models import ImageFilter, PruneOptions, PullResult, RegistryAuth
from imagesvc.core.paging import MAX_PAGE_SIZE
from imagesvc.core.port import DockerPort
from imagesvc.core.references import Reference, familiar, is_image_id, parse_reference


def failure_of(error: ImageServiceError) -> NodeFailure:
    return NodeFailure(str(error.reason), str(error))


class LocalNode:
    """This node: its name and address as peers know it, its Engine and its images."""

    def __init__(
        self,
        name: str,
        address: str,
        core: ImageCore,
        engine: DockerPort,
        executor: Executor,
        daemon_up: Callable[[], bool],
        *,
        kept_images: Callable[[], Sequence[KeptImage]] = tuple,
    ) -> None:
        self.name = name
        self.address = address
        self._core = core
        self._engine = engine
        self._executor = executor
        self._daemon_up = daemon_up
        self._kept_images = kept_images

    async def status(self) -> NodeStatus:
        kept = tuple(self._kept_images())
        if not self._daemon_up():
            return NodeStatus(
                self.address,
                self.name,
                failure=NodeFailure(
                    str(Reason.DAEMON_UNAVAILABLE), "the node's Docker daemon is not answering"
                ),
                kept_images=kept,
            )
        try:
            loop = asyncio.get_running_loop()
            version = await loop.run_in_executor(self._executor, self._engine.version)
            count, size = await self._image_totals()
        except ImageServiceError as error:
            return NodeStatus(self.address, self.name, failure=failure_of(error), kept_images=kept)
        return NodeStatus(
            self.address,
            self.name,
            ready=True,
            engine_version=str(version.get("Version", "")),
            engine_api_version=str(version.get("ApiVersion", "")),
            image_count=count,
            images_size_bytes=size,
            kept_images=kept,
        )

    async def _image_totals(self) -> tuple[int, int]:
        """Images as `docker image ls` lists them (from the live index when it is live)."""
        count = size = 0
        token = ""
        while True:
            page = await self._core.list_images(
                ImageFilter(), all=False, page_size=MAX_PAGE_SIZE, page_token=token
            )
            count += len(page.images)
            size += sum(image.size for image in page.images)
            token = page.next_page_token
            if not token:
                return count, size

    async def drift_digest(self, image: str, auth: RegistryAuth | None) -> tuple[Reference, str]:
        """The reference FindImage was asked about, and the digest its registry serves
        now (InspectRegistryImage's path: the pull allowlist applies)."""
        if is_image_id(image):
            raise InvalidArgumentError(
                f"{image!r} is an image id: the registry can only be asked about a reference",
                reason=Reason.INVALID_REFERENCE,
                metadata={"field": "image"},
            )
        found = await self._core.inspect_registry_image(image, auth=auth)
        return parse_reference(image).with_default_tag(), found.digest

    async def find(self, image: str) -> NodeImage:
        """Whether this node holds `image`. A malformed reference is the caller's error
        (raised), anything else this node's."""
        try:
            found = await self._core.get_image(image)
        except NotFoundError:
            return NodeImage(self.address, self.name)
        except ImageServiceError as error:
            if error.reason in (Reason.INVALID_REFERENCE, Reason.INVALID_ARGUMENT):
                raise
            return NodeImage(self.address, self.name, failure=failure_of(error))
        return NodeImage(
            self.address,
            self.name,
            present=True,
            image_id=found.id,
            repo_digests=found.repo_digests,
            repo_tags=found.repo_tags,
        )

    async def pull(
        self, reference: str, *, platform: str, auth: RegistryAuth | None, registry_digest: str
    ) -> AsyncGenerator[NodeProgress | NodePulled, None]:
        """One pull on this node through its own PullImage path (allowlist, pull flights,
        metrics); none when it already holds `reference` at `registry_digest`. Raises
        NodeFailure with the node's ErrorInfo reason."""
        try:
            if registry_digest and await self._holds(reference, registry_digest):
                yield NodePulled(skipped=True, digest=registry_digest, name=self.name)
                return
            sizes = LayerSizes()
            items = self._core.pull_image(reference, platform=platform, auth=auth)
            async with contextlib.aclosing(items) as pulling:
                async for item in pulling:
                    if isinstance(item, PullResult):
                        yield NodePulled(
                            skipped=False,
                            image_id=item.image_id,
                            digest=item.digest,
                            name=self.name,
                        )
                        return
                    changed = [(layer.layer_id, layer.state, layer.total) for layer in item.layers]
                    percent = sizes.update(changed, item.bytes_done, item.bytes_total)
                    yield NodeProgress(item.bytes_done, item.bytes_total, percent)
        except ImageServiceError as error:
            raise failure_of(error) from None
        raise NodeFailure(str(Reason.INTERNAL), "the pull ended without a result")

    async def _holds(self, reference: str, digest: str) -> bool:
        """Whether the reference names an image here that was pulled or pushed as
        `repository@digest` (its RepoDigests)."""
        repository = familiar(parse_reference(reference).with_default_tag().full_name)
        try:
            image = await self._core.get_image(reference)
        except NotFoundError:
            return False
        return any(
            familiar(name) == repository and held == digest
            for name, _, held in (d.partition("@") for d in image.repo_digests)
        )

    async def registry_digest(
        self, reference: str, auth: RegistryAuth | None
    ) -> tuple[str, NodeFailure | None]:
        """The digest the registry serves for `reference`, asked once for the whole fleet
        with the caller's registry auth: ("", None) when it cannot be told (e.g. Podman
        has no registry inspect: every node pulls); a failure every node would meet as
        well (refused credentials, no such image) as the failure."""
        parsed = parse_reference(reference)
        if parsed.digest:
            return parsed.digest, None
        try:
            served = await self._core.inspect_registry_image(reference, auth=auth)
        except ImageServiceError as error:
            if error.reason in _FAILS_EVERY_NODE:
                return "", failure_of(error)
            return "", None
        return served.digest, None

    async def remove(self, image: str, *, force: bool, no_prune: bool) -> NodeImagesChange:
        """RemoveImage here; an image this node does not hold is skipped. A malformed
        reference is the caller's error (raised), anything else this node's."""
        try:
            removed = await self._core.remove_image(image, force=force, no_prune=no_prune)
        except NotFoundError as error:
            return NodeImagesChange(
                self.address, self.name, failure=failure_of(error), skipped=True
            )
        except ImageServiceError as error:
            if error.reason in (Reason.INVALID_REFERENCE, Reason.INVALID_ARGUMENT):
                raise
            return NodeImagesChange(self.address, self.name, failure=failure_of(error))
        return NodeImagesChange(
            self.address, self.name, untagged=removed.untagged, deleted=removed.deleted
        )

    async def prune(self, options: PruneOptions) -> NodeImagesChange:
        """PruneImages here."""
        try:
            pruned = await self._core.prune_images(options)
        except ImageServiceError as error:
            if error.reason in (Reason.INVALID_REFERENCE, Reason.INVALID_ARGUMENT):
                raise
            return NodeImagesChange(self.address, self.name, failure=failure_of(error))
        return NodeImagesChange(
            self.address,
            self.name,
            untagged=pruned.untagged,
            deleted=pruned.deleted,
            space_reclaimed_bytes=pruned.space_reclaimed_bytes,
        )


# Registry answers that every node would get for the same reference and auth.
_FAILS_EVERY_NODE = frozenset(
    {Reason.REGISTRY_UNAUTHENTICATED, Reason.REGISTRY_DENIED, Reason.IMAGE_NOT_FOUND}
)
