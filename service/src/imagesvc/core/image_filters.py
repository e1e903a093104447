"""ListImages' filters evaluated in memory, with exactly the Engine's semantics.

"Exactly" means: the answer ImageCore.list_images gives through the Engine, which sends
narrowing filters (at most one reference, one label; dangling, before, since) to the
Engine and applies Docker's reference and label rules to what comes back. So this
module simulates, per image store, what the Engine lists for the narrowed filters
(moby's daemon/images/image_list.go for the classic store, daemon/containerd/
image_list.go for the containerd store, Podman's compat API), then applies the same
rules. The index answers in memory or through the Engine: both must agree.

Where the list documents cannot tell what the Engine would answer, NotImplementedError
says so and the caller asks the Engine:
- before/since compare creation times in nanoseconds, a summary's `Created` is whole
  seconds: a candidate created in the same second as the bound image is undecidable;
  so is a bound or candidate without a creation time (`Created` 0 or less);
- a bound identifier whose resolution depends on the store (short ids of 1 to 3 hex
  digits, ambiguous prefixes, a digest that is an image id, Podman's short names);
- `dangling=true` with `all` over untagged images with children (the classic store and
  Podman hide them, the containerd store lists them) when the store is unknown;
- a label condition with "!" (negation on the containerd store, refused by Podman,
  a key with "!" on the classic store) or longer than containerd's 4096 bytes.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from imagesvc.core.errors import ImageServiceError, NotFoundError, Reason
from imagesvc.core.image_entries import IndexEntry
from imagesvc.core.models import Image, ImageFilter
from imagesvc.core.port import JsonDocument
from imagesvc.core.references import (
    Reference,
    familiar,
    familiar_match,
    parse_reference,
    reference_pattern,
)

_FULL_ID = re.compile(r"(?:sha256:)?([0-9a-f]{64})")
_SHORT_ID = re.compile(r"(?:sha256:)?([0-9a-f]+)")
# The containerd store matches a short id only from 4 hex digits (moby's truncatedID).
_CONTAINERD_MIN_SHORT_ID = 4
# containerd's labels.Validate: key and value together at most 4096 bytes.
_CONTAINERD_MAX_LABEL = 4096


class Store(Enum):
    """Whose rules the Engine lists images by."""

    CLASSIC = "classic"  # dockerd's graph-driver image store
    CONTAINERD = "containerd"  # dockerd's containerd image store
    PODMAN = "podman"  # Podman's Docker-compatible API
    UNKNOWN = "unknown"  # the entries do not tell (no tagged image)


def image_store(entries: Iterable[IndexEntry]) -> Store:
    """The store the entries were listed from, as far as they tell.

    Podman's summaries carry keys of its own ("Digest", "History"). On the containerd
    store an image's only RepoDigest is made from its name and its id (a manifest
    digest); on the classic store an id is a config digest, never a repo digest."""
    entries = list(entries)
    if any("History" in e.summary or "Digest" in e.summary for e in entries):
        return Store.PODMAN
    named = [e for e in entries if e.image.repo_tags]
    if not named:
        return Store.UNKNOWN
    if any(_digest_of(d) == e.id for e in named for d in e.image.repo_digests):
        return Store.CONTAINERD
    return Store.CLASSIC


def select_images(
    entries: Iterable[IndexEntry], image_filter: ImageFilter, *, all: bool
) -> list[IndexEntry]:
    """The entries the Engine's `GET /images/json?all=<all>&filters=<image_filter>`
    would list, given every image it has (`entries`, as `?all=1` lists them), as the
    service shows them: with a reference filter, only the matching tags and digests
    (`IndexEntry.image`; `summary` stays the Engine's unfiltered document).
    Order is not significant (the caller sorts)."""
    entries = list(entries)
    if image_filter == ImageFilter():  # the common case, kept quick
        return _visible(entries, _parents(entries), all=all)
    selection = _Selection.of(image_filter, entries, all=all)
    shown = (selection.shown(e) for e in _visible(entries, selection.parents, all=all))
    return [entry for entry in shown if entry is not None]


def image_view(
    image_filter: ImageFilter, entries: Iterable[IndexEntry]
) -> Callable[[IndexEntry], IndexEntry | None]:
    """One image as `select_images(..., all=True)` shows it (None: not listed).
    Before/since images and which images are parents are taken from `entries` once,
    now. Raises NotImplementedError (now or when called) where select_images would."""
    return _Selection.of(image_filter, list(entries), all=True).shown


def image_predicate(
    image_filter: ImageFilter, entries: Iterable[IndexEntry]
) -> Callable[[IndexEntry], bool]:
    """Whether one image matches the filter, as `image_view` decides it (`all` is no
    filter of one image: the caller hides intermediate images if it wants)."""
    view = image_view(image_filter, entries)
    return lambda entry: view(entry) is not None


def has_labels(summary: JsonDocument, conditions: Sequence[str]) -> bool:
    """Docker's label filter on a summary: every ``key`` present, every ``key=value``
    equal."""
    labels = summary.get("Labels") or {}
    for condition in conditions:
        key, is_pair, value = condition.partition("=")
        if key not in labels or (is_pair and labels[key] != value):
            return False
    return True


def matching_names(image: Image, patterns: Sequence[re.Pattern[str]]) -> Image | None:
    """The image with only the tags and digests a reference filter matches (Docker's
    FamiliarMatch, as Docker lists it), or None when none does."""
    tags = tuple(t for t in image.repo_tags if any(familiar_match(p, t) for p in patterns))
    digests = tuple(d for d in image.repo_digests if any(familiar_match(p, d) for p in patterns))
    if not tags and not digests:
        return None
    if tags == image.repo_tags and digests == image.repo_digests:
        return image
    return dataclasses.replace(image, repo_tags=tags, repo_digests=digests)


# --------------------------------------------------------------------------- internals


@dataclass(frozen=True, slots=True)
class _Bound:
    """A before or since image: its id and its creation (Unix seconds)."""

    id: str
    created: int


@dataclass(frozen=True, slots=True)
class _Selection:
    store: Store
    patterns: tuple[re.Pattern[str], ...]
    # What the service sends the Engine: one reference (none for several), one label.
    engine_pattern: re.Pattern[str] | None
    engine_label: str | None
    labels: tuple[str, ...]
    dangling: bool | None
    before: _Bound | None
    since: _Bound | None
    parents: frozenset[str]

    @classmethod
    def of(
        cls, image_filter: ImageFilter, entries: Sequence[IndexEntry], *, all: bool
    ) -> _Selection:
        store = image_store(entries)
        patterns = tuple(reference_pattern(p) for p in image_filter.references)
        engine_label = image_filter.labels[0] if image_filter.labels else None
        if engine_label is not None:
            _check_label(engine_label, store)
        parents = _parents(entries)
        # The classic store and Podman never call an image with children dangling, the
        # containerd store does (and lists it with `all`).
        if (
            image_filter.dangling is True
            and all
            and store is Store.UNKNOWN
            and any(_untagged(e) and e.id in parents for e in entries)
        ):
            raise NotImplementedError("dangling=true over untagged parents, store unknown")
        before, since = _bounds(image_filter, entries, store)
        return cls(
            store=store,
            patterns=patterns,
            engine_pattern=patterns[0] if len(patterns) == 1 else None,
            engine_label=engine_label,
            labels=image_filter.labels,
            dangling=image_filter.dangling,
            before=before,
            since=since,
            parents=parents,
        )

    def shown(self, entry: IndexEntry) -> IndexEntry | None:
        """The entry as the service lists it, or None when it is not listed."""
        listed = self._engine_lists(entry)
        # The service's own rules on what the Engine returned (ImageCore.list_images).
        if listed is None or not has_labels(entry.summary, self.labels):
            return None
        if self.patterns:
            listed = _names_matching(listed, self.patterns)
        # Times last: they may be undecidable, which matters only for a listed image.
        if listed is None or not self._within_bounds(entry):
            return None
        return listed

    def _engine_lists(self, entry: IndexEntry) -> IndexEntry | None:
        """The entry as the Engine lists it for the narrowed filters but before and
        since, or None (`all`'s hiding of intermediate images aside)."""
        if self.engine_label is not None and not has_labels(entry.summary, (self.engine_label,)):
            return None
        listed: IndexEntry | None = entry
        if self.engine_pattern is not None:
            listed = _engine_reference(entry, self.engine_pattern, self.store)
        if listed is None:
            return None
        if self.dangling is not None and not self._dangling_matches(entry, listed):
            return None
        return listed

    def _dangling_matches(self, entry: IndexEntry, listed: IndexEntry) -> bool:
        has_children = entry.id in self.parents
        if self.store is Store.CONTAINERD:
            # A dangling record is an image without any name; intermediates included.
            return self.dangling == _untagged(entry)
        if self.store is Store.PODMAN:
            if not entry.image.repo_tags and entry.image.repo_digests:
                raise NotImplementedError("Podman's dangling rule for digest-only images")
            # Podman: dangling is without names and without children.
            return self.dangling == (_untagged(entry) and not has_children)
        # Classic: dangling=true lists the heads (no children) without (matching) tags,
        # digests allowed; dangling=false hides images without tags and digests.
        if self.dangling:
            return not has_children and not listed.image.repo_tags
        return not _untagged(listed)

    def _within_bounds(self, entry: IndexEntry) -> bool:
        """Created strictly after `since` and strictly before `before`, as the Engine
        compares them: in nanoseconds, which the summary's whole seconds cannot always
        tell (undecidable only when no bound excludes the image for sure)."""
        created = _created(entry)
        decisions = []
        if self.since is not None:
            decisions.append(_compare(entry, created, self.since, after=True))
        if self.before is not None:
            # No creation time (never before anything) or 1970-01-01T00:00:00Z, both 0.
            before = None if created == 0 else _compare(entry, created, self.before, after=False)
            decisions.append(before)
        if False in decisions:
            return False
        if None in decisions:
            raise NotImplementedError("created in the same second as the before/since image")
        return True


def _compare(entry: IndexEntry, created: int, bound: _Bound, *, after: bool) -> bool | None:
    """Whether the image was created after (before) the bound; None: undecidable."""
    if created == bound.created:
        return False if entry.id == bound.id else None
    return created > bound.created if after else created < bound.created


def _check_label(condition: str, store: Store) -> None:
    key, _, value = condition.partition("=")
    if "!" in condition and store is not Store.CLASSIC:
        raise NotImplementedError("a label condition with '!' is read differently by engines")
    if len(key.encode()) + len(value.encode()) > _CONTAINERD_MAX_LABEL and store in (
        Store.CONTAINERD,
        Store.UNKNOWN,
    ):
        raise NotImplementedError("the containerd store refuses a label this long")


def _visible(entries: list[IndexEntry], parents: frozenset[str], *, all: bool) -> list[IndexEntry]:
    """Without `all` the Engine hides untagged images that are another's parent (the
    classic builder's intermediate images)."""
    if all:
        return entries
    return [e for e in entries if e.id not in parents or not _untagged(e)]


def _parents(entries: Iterable[IndexEntry]) -> frozenset[str]:
    return frozenset(e.image.parent for e in entries if e.image.parent)


def _untagged(entry: IndexEntry) -> bool:
    return not entry.image.repo_tags and not entry.image.repo_digests


def _created(entry: IndexEntry) -> int:
    created = entry.summary.get("Created")
    return created if isinstance(created, int) and not isinstance(created, bool) else 0


def _digest_of(name: str) -> str:
    return name.partition("@")[2]


def _repository_of(name: str) -> str:
    """The repository of a familiar tag or digest reference."""
    name = name.partition("@")[0]
    slash, colon = name.rfind("/"), name.rfind(":")
    return name[:colon] if colon > slash else name


def _names_matching(entry: IndexEntry, patterns: Sequence[re.Pattern[str]]) -> IndexEntry | None:
    image = matching_names(entry.image, patterns)
    if image is None:
        return None
    return entry if image is entry.image else dataclasses.replace(entry, image=image)


def _engine_reference(
    entry: IndexEntry, pattern: re.Pattern[str], store: Store
) -> IndexEntry | None:
    """The entry as the Engine lists it for one reference filter, or None."""
    if store is Store.CONTAINERD:
        return _containerd_reference(entry, pattern)
    if store is Store.PODMAN:
        # Podman matches names (tags) only, in more forms than Docker, and lists the
        # image with all its names and digests.
        return entry if any(_podman_matches(pattern, t) for t in entry.image.repo_tags) else None
    # Classic (and an unknown store, whose images have no names for it to differ on).
    return _names_matching(entry, (pattern,))


def _podman_matches(pattern: re.Pattern[str], name: str) -> bool:
    """Podman's reference filter (libimage filterReferences) on one of its names: the
    fully-qualified name, without domain, last component, each with and without its
    tag or digest."""
    try:
        reference = parse_reference(name)
    except ImageServiceError as e:
        raise NotImplementedError(f"a name the service cannot parse: {name!r}") from e
    qualified = reference.normalized()
    trimmed = reference.full_name
    path = trimmed.partition("/")[2]
    suffix = qualified[len(trimmed) :]
    candidates = {
        qualified,
        path,
        qualified.rpartition("/")[2],
        trimmed,
        path + suffix,
        trimmed.rpartition("/")[2],
    }
    return any(pattern.fullmatch(candidate) for candidate in candidates)


def _containerd_reference(entry: IndexEntry, pattern: re.Pattern[str]) -> IndexEntry | None:
    """The containerd store matches each name record (listed in RepoTags); its one
    RepoDigest is made from the last matching record (by full name) and the id."""
    records = [t for t in entry.image.repo_tags if familiar_match(pattern, t)]
    if not records:
        return None
    try:
        last = max(records, key=lambda name: parse_reference(name).normalized())
    except ImageServiceError as e:
        raise NotImplementedError(f"a name the service cannot parse among {records}") from e
    digest = f"{_repository_of(last)}@{entry.id}"
    return dataclasses.replace(
        entry,
        image=dataclasses.replace(entry.image, repo_tags=tuple(records), repo_digests=(digest,)),
    )


# --------------------------------------------------------------------------- before/since


def _bounds(
    image_filter: ImageFilter, entries: Sequence[IndexEntry], store: Store
) -> tuple[_Bound | None, _Bound | None]:
    """The before and since images. dockerd resolves before, then since: the first
    missing one is the error; Podman resolves them in random order (a Go map)."""
    if store is not Store.PODMAN:
        return (
            _bound("before", image_filter.before, entries, store),
            _bound("since", image_filter.since, entries, store),
        )
    try:
        before = _bound("before", image_filter.before, entries, store)
    except NotFoundError:
        if image_filter.since and _bound_or_none("since", image_filter.since, entries) is None:
            raise NotImplementedError("Podman names either missing image") from None
        raise
    return before, _bound("since", image_filter.since, entries, store)


def _bound_or_none(key: str, value: str, entries: Sequence[IndexEntry]) -> _Bound | None:
    try:
        return _bound(key, value, entries, Store.PODMAN)
    except NotFoundError:
        return None


def _bound(key: str, value: str, entries: Sequence[IndexEntry], store: Store) -> _Bound | None:
    if not value:
        return None
    image = _resolve_on_podman(key, value, entries) if store is Store.PODMAN else None
    image = image or _resolve(value, entries, store)
    created = _created(image)
    if created <= 0:
        # No creation time: the filter is ignored, or (containerd, Go's zero time)
        # lists nothing; a time at or before 1970 reads 0 or less too.
        raise NotImplementedError("a before/since image without a creation time")
    return _Bound(image.id, created)


def _resolve_on_podman(key: str, value: str, entries: Sequence[IndexEntry]) -> IndexEntry:
    """The image Podman's LookupImage finds: by id or unique id prefix first (bare hex),
    then by name, trying short names in several registries (localhost/, docker.io/)."""
    short = _SHORT_ID.fullmatch(value)
    if short is not None:
        by_id = [e for e in entries if e.id.removeprefix("sha256:").startswith(short[1])]
        if len(by_id) == 1:
            return by_id[0]
        if by_id or value.startswith("sha256:") or _FULL_ID.fullmatch(value):
            raise NotImplementedError("Podman's answer for an ambiguous or missing id")
    reference = parse_reference(value)
    if reference.digest:
        if any(_digest_of(d) == reference.digest for e in entries for d in e.image.repo_digests):
            raise NotImplementedError("Podman resolves digests its own way")
    else:
        tag = familiar(reference.with_default_tag().normalized())
        exact = _one(e for e in entries if tag in e.image.repo_tags)
        if reference.domain:
            if exact is not None:
                return exact
        else:
            # A short name: Podman tries it in localhost/ and docker.io/ (and in the
            # search registries of its registries.conf).
            wanted = _path_and_tag(reference.with_default_tag())
            same = {
                _domain_of(t): e
                for e in entries
                for t in e.image.repo_tags
                if _path_and_tag(t) == wanted
            }
            if len({e.id for e in same.values()}) == 1 and set(same) <= {"localhost", "docker.io"}:
                return next(iter(same.values()))
            if same:
                raise NotImplementedError("Podman's short-name resolution among registries")
    # Podman's words (libimage), which the service passes on; a digest wins over a tag.
    named = f"{reference.name}@{reference.digest}" if reference.digest else value
    raise NotFoundError(
        f'could not find local image for filter filter "{key}"="{value}": {named}: image not known',
        reason=Reason.IMAGE_NOT_FOUND,
    )


def _domain_of(name: str) -> str:
    return parse_reference(name).full_name.partition("/")[0]


def _path_and_tag(name: str | Reference) -> str:
    """A tag reference without its registry: what Podman's short names are tried on."""
    try:
        reference = name if isinstance(name, Reference) else parse_reference(name)
    except ImageServiceError as e:
        raise NotImplementedError(f"a name the service cannot parse: {name!r}") from e
    return f"{reference.full_name.partition('/')[2].removeprefix('library/')}:{reference.tag}"


def _resolve(value: str, entries: Sequence[IndexEntry], store: Store) -> IndexEntry:
    """The image a before/since value names, as the Engine's GetImage finds it: a full
    id; else a name (tag, :latest by default) or digest reference; else an id prefix."""
    full = _FULL_ID.fullmatch(value)
    if full:
        wanted = f"sha256:{full[1]}"
        return _one(e for e in entries if e.id == wanted) or _not_found(value, store)
    reference = parse_reference(value)
    if reference.digest:
        return _resolve_digested(value, entries, store)
    tag = familiar(reference.with_default_tag().normalized())
    by_tag = _one(e for e in entries if tag in e.image.repo_tags)
    short = _SHORT_ID.fullmatch(value)
    prefix = short[1] if short else None
    by_id = [e for e in entries if prefix and e.id.removeprefix("sha256:").startswith(prefix)]
    if by_tag is not None:
        return by_tag
    if not by_id or prefix is None:
        return _not_found(value, store)
    if len(by_id) > 1:
        raise NotImplementedError("an ambiguous id prefix: the stores word it differently")
    if len(prefix) < _CONTAINERD_MIN_SHORT_ID and store is not Store.CLASSIC:
        if store is Store.CONTAINERD:
            return _not_found(value, store)
        raise NotImplementedError("a short id the classic store finds, containerd's does not")
    return by_id[0]


def _resolve_digested(value: str, entries: Sequence[IndexEntry], store: Store) -> IndexEntry:
    reference = parse_reference(value)
    repository = familiar(reference.full_name)
    if store is Store.CONTAINERD:
        # Any name record of the repository whose target (the id) is the digest.
        for entry in entries:
            names = (*entry.image.repo_tags, *entry.image.repo_digests)
            if entry.id == reference.digest and any(_repository_of(n) == repository for n in names):
                return entry
        return _not_found(value, store)
    # The classic store looks the digest reference up (a tag beside it is ignored).
    name = f"{repository}@{reference.digest}"
    by_digest = _one(e for e in entries if name in e.image.repo_digests)
    if by_digest is not None:
        return by_digest
    if store is Store.UNKNOWN and any(e.id == reference.digest for e in entries):
        raise NotImplementedError("a digest that is an image id: the containerd store finds it")
    return _not_found(value, store)


def _one(entries: Iterable[IndexEntry]) -> IndexEntry | None:
    return next(iter(entries), None)


def _not_found(value: str, store: Store) -> IndexEntry:
    """The Engine's error for a before/since image it does not have, as the service
    returns it (engine/errors.py): dockerd's "No such image: <familiar name>"."""
    full = _FULL_ID.fullmatch(value)
    if full:
        shown = f"sha256:{full[1]}"
    else:
        shown = familiar(parse_reference(value).with_default_tag().normalized())
    raise NotFoundError(f"No such image: {shown}", reason=Reason.IMAGE_NOT_FOUND)
