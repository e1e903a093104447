"""An image archive to load (`docker save` format or an OCI layout, plain or gzip): the
names it would give its images, read before anything is loaded, and the Engine's load
output read back into the loaded ids and names.

Names come from every place an Engine takes them: `manifest.json` (RepoTags, Docker's
format), `repositories` (the legacy format, used when manifest.json is absent) and the
annotations of `index.json`'s manifests (OCI: `io.containerd.image.name`, and
`org.opencontainers.image.ref.name` when it is a whole reference; a bare tag there
names nothing without the containerd name beside it, and with none it is judged as the
reference an Engine would read it as). Every occurrence of these files counts, not only
the last, so no duplicate member can slip a name past the check.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from imagesvc.core.errors import ImageServiceError, InvalidArgumentError, Reason
from imagesvc.core.references import Reference, parse_reference
from imagesvc.core.tar_check import ArchiveSubject, Kept

IMAGE_ARCHIVE = ArchiveSubject(
    noun="the image archive",
    root="the archive",
    invalid=Reason.INVALID_IMAGE_ARCHIVE,
    too_large=Reason.IMAGE_ARCHIVE_TOO_LARGE,
    too_large_hint="ask the operator to raise the import limit (--import-max-bytes)",
    holds="an image archive holds only files, directories and links",
    empty_hint="send a tar archive (docker save or OCI layout) in archive_chunk messages",
)

_MAX_INDEX_BYTES = 8 * 1024 * 1024
_CONTAINERD_NAME = "io.containerd.image.name"
_OCI_REF_NAME = "org.opencontainers.image.ref.name"
_BARE_TAG = re.compile(r"[\w][\w.-]{0,127}")

NAME_FILES = ("manifest.json", "repositories", "index.json")
KEPT_FILES: Mapping[str, Kept] = {
    name: Kept(_MAX_INDEX_BYTES, f"is larger than {_MAX_INDEX_BYTES} bytes") for name in NAME_FILES
}


def _bad(file: str, why: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"the image archive's {file} is not valid: {why}", reason=Reason.INVALID_IMAGE_ARCHIVE
    )


def _document(file: str, data: bytes) -> object:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as error:
        raise _bad(file, f"not JSON ({error})"[:300]) from None


def _strings(file: str, value: object, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _bad(file, f"{what} must be a list of strings")
    return list(value)


def _manifest_names(data: bytes) -> list[str]:
    document = _document("manifest.json", data)
    if not isinstance(document, list) or not all(isinstance(d, dict) for d in document):
        raise _bad("manifest.json", "it must be a list of objects")
    return [
        name for d in document for name in _strings("manifest.json", d.get("RepoTags"), "RepoTags")
    ]


def _repositories_names(data: bytes) -> list[str]:
    document = _document("repositories", data)
    if not isinstance(document, dict) or not all(isinstance(t, dict) for t in document.values()):
        raise _bad("repositories", "it must map repositories to {tag: id} objects")
    return [f"{repository}:{tag}" for repository, tags in document.items() for tag in tags]


def _index_names(data: bytes) -> list[str]:
    document = _document("index.json", data)
    manifests = document.get("manifests") if isinstance(document, dict) else None
    if not isinstance(manifests, list) or not all(isinstance(m, dict) for m in manifests):
        raise _bad("index.json", "it must be an object with a list of manifests")
    names: list[str] = []
    for manifest in manifests:
        annotations = manifest.get("annotations") or {}
        if not isinstance(annotations, dict) or not all(
            isinstance(value, str) for value in annotations.values()
        ):
            raise _bad("index.json", "annotations must map strings to strings")
        containerd_name = annotations.get(_CONTAINERD_NAME)
        ref_name = annotations.get(_OCI_REF_NAME)
        if containerd_name is not None:
            names.append(containerd_name)
        if ref_name is not None and not (containerd_name and _BARE_TAG.fullmatch(ref_name)):
            names.append(ref_name)
    return names


_READERS = {
    "manifest.json": _manifest_names,
    "repositories": _repositories_names,
    "index.json": _index_names,
}


def archive_names(kept: Mapping[str, Sequence[bytes | None]]) -> list[Reference]:
    """Every name the archive gives an image, in order, without repeats; INVALID_ARGUMENT
    (INVALID_IMAGE_ARCHIVE) for a name file that cannot be read or a name that is not a
    reference, since an Engine might read it otherwise than this service."""
    texts: list[str] = []
    for file, read in _READERS.items():
        for data in kept.get(file, ()):
            if data is None:
                raise _bad(file, "it is not a regular file")
            texts.extend(read(data))
    references: dict[str, Reference] = {}
    for text in texts:
        try:
            reference = parse_reference(text)
        except ImageServiceError as error:
            raise InvalidArgumentError(
                f"the image archive names an image {text[:200]!r}, which is not a valid"
                f" reference: {error.message}",
                reason=Reason.INVALID_IMAGE_ARCHIVE,
            ) from None
        if not reference.digest:
            reference = reference.with_default_tag()
        references.setdefault(str(reference), reference)
    return list(references.values())


# What Engines print for each image they loaded: Docker "Loaded image: <name>" per name
# and "Loaded image ID: sha256:<id>" per untagged image; Podman "Loaded image: <name>"
# or "Loaded image(s): <name>,<name>" (full names, or a bare id for an untagged one).
_LOADED = re.compile(r"^Loaded image(?:\(s\))?( ID)?: (.+)$")
_IMAGE_ID = re.compile(r"(sha256:)?([0-9a-f]{64})")


@dataclass(frozen=True, slots=True)
class LoadedNames:
    """What the Engine's load output names: image names, and ids of untagged images."""

    names: tuple[str, ...]
    ids: tuple[str, ...]


def loaded_names(lines: Iterable[str]) -> LoadedNames:
    names: dict[str, None] = {}
    ids: dict[str, None] = {}
    for text in lines:
        for line in text.splitlines():
            match = _LOADED.match(line.strip())
            if match is None:
                continue
            for item in (part.strip() for part in match.group(2).split(",")):
                bare = _IMAGE_ID.fullmatch(item)
                if bare is not None:
                    ids[f"sha256:{bare.group(2)}"] = None
                elif item:
                    names[item] = None
    return LoadedNames(tuple(names), tuple(ids))


class LoadProgress:
    """The Engine's load messages as lines: each layer's state once (not every byte of
    its progress bar), and the text the Engine prints."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()

    def feed(self, message: Mapping[str, object]) -> list[str]:
        lines: list[str] = []
        status, layer, text = message.get("status"), message.get("id"), message.get("stream")
        if isinstance(status, str) and status:
            key = (status, str(layer or ""))
            if key not in self._seen:
                self._seen.add(key)
                lines.append(f"{status} {layer}" if layer else status)
        if isinstance(text, str):
            lines.extend(line.strip() for line in text.splitlines() if line.strip())
        return lines
