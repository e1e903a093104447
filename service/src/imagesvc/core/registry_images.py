"""Registry inspection: the Engine's distribution document as a RegistryImage, and a
local image's RepoDigests compared with what its registry serves (update checks)."""

from __future__ import annotations

from collections.abc import Sequence

from imagesvc.core import documents
from imagesvc.core.models import ImageUpdate, Platform, RegistryImage, UpdateStatus
from imagesvc.core.port import JsonDocument
from imagesvc.core.references import Reference, familiar

# The reason of an UNKNOWN update check whose local image has no digest of the tag's
# repository: built here and never pushed there or pulled from it.
NO_REGISTRY_DIGEST = "NO_REGISTRY_DIGEST"


def _platform(document: object) -> Platform | None:
    if not isinstance(document, dict):
        return None
    return Platform(
        os=str(document.get("os") or ""),
        architecture=str(document.get("architecture") or ""),
        variant=str(document.get("variant") or ""),
        os_version=str(document.get("os.version") or ""),
    )


def registry_image(reference: Reference, document: JsonDocument) -> RegistryImage:
    """The answer of `GET /distribution/{name}/json`: {"Descriptor": {mediaType, digest,
    size}, "Platforms": [...] or null (the containerd image store, for one manifest)}."""
    descriptor = document.get("Descriptor") or {}
    platforms = document.get("Platforms") or []
    return RegistryImage(
        reference=reference.normalized(),
        digest=str(descriptor.get("digest") or ""),
        media_type=str(descriptor.get("mediaType") or ""),
        size_bytes=int(descriptor.get("size") or 0),
        platforms=tuple(p for p in map(_platform, platforms) if p is not None),
    )


def local_digests(reference: Reference, image_document: JsonDocument) -> tuple[str, ...]:
    """The local image's digests in the reference's repository (from its RepoDigests)."""
    return digests_in_repository(
        reference, documents.image_from_inspect(image_document).repo_digests
    )


def digests_in_repository(reference: Reference, repo_digests: Sequence[str]) -> tuple[str, ...]:
    """The digests of `repo_digests` (`name@digest`) in the reference's repository."""
    repository = familiar(reference.full_name)
    return tuple(
        sorted(
            {
                digest
                for name, _, digest in (d.partition("@") for d in repo_digests)
                if familiar(name) == repository and digest
            }
        )
    )


def compare(reference: Reference, local: Sequence[str], registry_digest: str) -> ImageUpdate:
    """Up to date when the registry's digest is one the local image was pushed or pulled as."""
    normalized = reference.normalized()
    if not local:
        return unknown(
            reference,
            local,
            NO_REGISTRY_DIGEST,
            f"the local image of {normalized} has no digest of its repository: it was never"
            " pushed there or pulled from there",
        )
    status = UpdateStatus.UP_TO_DATE if registry_digest in local else UpdateStatus.UPDATE_AVAILABLE
    return ImageUpdate(
        reference=normalized,
        status=status,
        local_digests=tuple(local),
        registry_digest=registry_digest,
    )


def unknown(reference: Reference, local: Sequence[str], reason: str, message: str) -> ImageUpdate:
    return ImageUpdate(
        reference=reference.normalized(),
        status=UpdateStatus.UNKNOWN,
        local_digests=tuple(local),
        reason=reason,
        message=message,
    )
