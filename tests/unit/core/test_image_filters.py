"""ListImages' filters in memory (core/image_filters.py) on hand-made summaries of each
image store: the classic store's, the containerd store's and Podman's, as their
`GET /images/json?all=1` lists them. What the real engines answer is checked by
tests/integration/test_image_filters_differential.py; these pin each rule down."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from imagesvc.core.errors import InvalidArgumentError, NotFoundError, Reason
from imagesvc.core.image_entries import IndexEntry
from imagesvc.core.image_filters import (
    Store,
    image_predicate,
    image_store,
    image_view,
    select_images,
)
from imagesvc.core.models import ImageFilter
from imagesvc.engine.errors import classify_engine_message

T0 = 1_796_300_000


_NUMBERS: dict[str, int] = {}


def hex_id(n: int) -> str:
    """An image id whose short forms are unique too: 0505..., 1c1c..., ab1ab1..."""
    text = (f"{n:02x}" * 64)[:64]
    _NUMBERS[f"sha256:{text}"] = n
    return text


def iid(n: int) -> str:
    return f"sha256:{hex_id(n)}"


def summary(
    n: int,
    *,
    tags: tuple[str, ...] = (),
    digests: tuple[str, ...] = (),
    parent: int | None = None,
    created: int | None = None,
    labels: dict[str, str] | None = None,
    **extra: Any,
) -> IndexEntry:
    document: dict[str, Any] = {
        "Id": iid(n),
        "ParentId": iid(parent) if parent is not None else "",
        "RepoTags": list(tags) or None,
        "RepoDigests": list(digests) or None,
        "Created": T0 + 10 * n if created is None else created,
        "Size": 100,
        "Labels": labels,
        "Containers": -1,
        **extra,
    }
    return IndexEntry.from_summary(document)


def ids(entries: list[IndexEntry]) -> set[int]:
    return {_NUMBERS[e.id] for e in entries}


def select(entries: list[IndexEntry], *, all: bool = False, **fields: Any) -> set[int]:
    return ids(select_images(entries, ImageFilter(**fields), all=all))


# A classic-store engine: a build with two intermediate images (1 <- 2 <- 3 "app:1"),
# a dangling image (4), a pulled image with a registry digest (5), an image known by
# its digest only (6), an image tagged in two repositories (7).
MANIFEST = "sha256:" + "d" * 64
OTHER_MANIFEST = "sha256:" + "e" * 64
CLASSIC = [
    summary(1, labels={"stage": "base"}),
    summary(2, parent=1, labels={"stage": "mid"}),
    summary(3, parent=2, tags=("app:1",), labels={"stage": "top", "tier": "gold"}),
    summary(4, tags=("<none>:<none>",), digests=("<none>@<none>",), labels={"tier": ""}),
    summary(5, tags=("acc/tool:2",), digests=(f"acc/tool@{MANIFEST}",), labels={"tier": "x"}),
    summary(6, digests=(f"acc/old@{OTHER_MANIFEST}",)),
    summary(7, tags=("app:latest", "web/app:7"), parent=3),
]


def test_the_store_is_told_by_the_summaries() -> None:
    assert image_store(CLASSIC) is Store.CLASSIC
    assert image_store(CONTAINERD) is Store.CONTAINERD
    assert image_store(PODMAN) is Store.PODMAN
    assert image_store([summary(1), summary(2, parent=1)]) is Store.UNKNOWN
    assert image_store([]) is Store.UNKNOWN


# --------------------------------------------------------------------------- classic


def test_without_all_untagged_parents_are_hidden() -> None:
    assert select(CLASSIC) == {3, 4, 5, 6, 7}
    assert select(CLASSIC, all=True) == {1, 2, 3, 4, 5, 6, 7}


def test_dangling_on_the_classic_store() -> None:
    # Heads without tags: a digest is no tag; an image with children never dangles.
    assert select(CLASSIC, dangling=True) == {4, 6}
    assert select(CLASSIC, dangling=True, all=True) == {4, 6}
    # Not dangling: anything with a tag or a digest (6 is both).
    assert select(CLASSIC, dangling=False) == {3, 5, 6, 7}
    assert select(CLASSIC, dangling=False, all=True) == {3, 5, 6, 7}


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (("tier",), {3, 4, 5}),
        (("tier=gold",), {3}),
        (("tier=",), {4}),
        (("stage", "tier"), {3}),
        (("stage=mid",), {2}),
        (("stage=top", "tier=x"), set()),
        (("nothing",), set()),
    ],
)
def test_labels_must_all_hold(labels: tuple[str, ...], expected: set[int]) -> None:
    assert select(CLASSIC, all=True, labels=labels) == expected


def test_references_match_any_pattern_on_familiar_names() -> None:
    assert select(CLASSIC, references=("app",)) == {3, 7}
    assert select(CLASSIC, references=("app:1",)) == {3}
    assert select(CLASSIC, references=("*/app",)) == {7}
    assert select(CLASSIC, references=("acc/*",)) == {5, 6}
    assert select(CLASSIC, references=("acc/tool:2", "web/*:7")) == {5, 7}
    # Docker's familiar names: never docker.io/library/...
    assert select(CLASSIC, references=("docker.io/library/app",)) == set()
    # "*" never matches "/"; untagged images never match a reference, even with `all`.
    assert select(CLASSIC, references=("*",), all=True) == {3, 7}


def test_a_reference_filter_shows_only_the_matching_names() -> None:
    listed = {
        e.id: e.image for e in select_images(CLASSIC, ImageFilter(references=("*/app",)), all=False)
    }
    assert listed[iid(7)].repo_tags == ("web/app:7",)
    listed = {
        e.id: e.image for e in select_images(CLASSIC, ImageFilter(references=("acc/*",)), all=False)
    }
    assert listed[iid(5)].repo_tags == ("acc/tool:2",)
    assert listed[iid(5)].repo_digests == (f"acc/tool@{MANIFEST}",)
    assert listed[iid(6)].repo_tags == ()
    # The summary stays the Engine's document.
    assert {e.id: e.summary for e in CLASSIC}[iid(7)]["RepoTags"] == ["app:latest", "web/app:7"]


def test_a_digest_matched_alone_leaves_a_tagged_image_dangling() -> None:
    # The classic store drops the names a reference filter does not match before it
    # decides dangling; the service sends one pattern as it is, several not at all.
    by_digest = f"acc/tool@{MANIFEST}"
    assert select(CLASSIC, references=(by_digest,), dangling=True) == {5}
    assert select(CLASSIC, references=(by_digest, "nothing"), dangling=True) == set()


def test_before_and_since_by_tag_id_prefix_and_digest() -> None:
    assert select(CLASSIC, before="acc/tool:2") == {3, 4}
    assert select(CLASSIC, before="acc/tool:2", all=True) == {1, 2, 3, 4}
    assert select(CLASSIC, since="app:1") == {4, 5, 6, 7}
    assert select(CLASSIC, since="app") == set()  # app:latest is 7, the newest
    assert select(CLASSIC, before=iid(4), since=hex_id(2)) == {3}
    assert select(CLASSIC, before=hex_id(5)[:2]) == {3, 4}  # any prefix on this store
    assert select(CLASSIC, before=f"sha256:{hex_id(5)[:8]}") == {3, 4}
    assert select(CLASSIC, since=f"acc/tool@{MANIFEST}") == {6, 7}
    assert select(CLASSIC, since=f"acc/tool:9@{MANIFEST}") == {6, 7}  # the digest wins


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("nosuch:1", "nosuch:1"),
        ("nosuch", "nosuch:latest"),
        ("docker.io/library/nosuch:2", "nosuch:2"),
        ("127.0.0.1:5000/nosuch", "127.0.0.1:5000/nosuch:latest"),
        (hex_id(99), f"sha256:{hex_id(99)}"),
        (f"sha256:{hex_id(99)}", f"sha256:{hex_id(99)}"),
        ("fff", "fff:latest"),
        (f"app@{MANIFEST}", f"app@{MANIFEST}"),
        (f"app@{iid(3)}", f"app@{iid(3)}"),  # an id is no digest on this store
    ],
)
def test_a_missing_before_image_is_the_engines_not_found(value: str, named: str) -> None:
    with pytest.raises(NotFoundError) as raised:
        select_images(CLASSIC, ImageFilter(before=value), all=False)
    # What the service answers today: the Engine's message through engine/errors.py.
    engine = classify_engine_message(f"No such image: {named}", http_status=404)
    assert isinstance(engine, NotFoundError)
    assert raised.value.message == engine.message
    assert raised.value.reason is engine.reason is Reason.IMAGE_NOT_FOUND


def test_before_is_resolved_before_since() -> None:
    with pytest.raises(NotFoundError, match="No such image: first:latest"):
        select_images(CLASSIC, ImageFilter(before="first", since="second"), all=False)


def test_malformed_references_are_invalid_arguments() -> None:
    with pytest.raises(InvalidArgumentError):
        select_images(CLASSIC, ImageFilter(references=("[",)), all=False)
    with pytest.raises(InvalidArgumentError):
        select_images(CLASSIC, ImageFilter(since="Not A Reference"), all=False)


def test_an_image_in_the_bounds_second_is_undecidable() -> None:
    # The Engine compares nanoseconds; a summary has seconds.
    same = [*CLASSIC, summary(8, tags=("twin:1",), created=T0 + 30)]
    with pytest.raises(NotImplementedError, match="same second"):
        select_images(same, ImageFilter(before="app:1"), all=False)
    with pytest.raises(NotImplementedError, match="same second"):
        select_images(same, ImageFilter(since="app:1"), all=False)
    # ...unless another filter leaves it out anyway, or it is the bound itself.
    assert select(same, before="app:1", references=("acc/*",)) == set()
    assert select(same, since="app:1", labels=("tier",)) == {4, 5}
    assert select(same, since="app:1", before=hex_id(2), all=True) == set()


def test_a_time_the_summary_cannot_tell_is_undecidable() -> None:
    timeless = [*CLASSIC, summary(9, tags=("old:1",), created=0)]
    with pytest.raises(NotImplementedError):
        select_images(timeless, ImageFilter(before="app:1"), all=False)
    with pytest.raises(NotImplementedError):
        select_images(timeless, ImageFilter(since="old:1"), all=False)
    # Nothing without a creation time is after anything.
    assert 9 not in select(timeless, since="app:1")


def test_a_short_id_must_name_one_image() -> None:
    twins = [summary(0xAB1, tags=("a:1",), created=T0), summary(0xAB2, tags=("b:1",))]
    with pytest.raises(NotImplementedError, match="ambiguous"):
        select_images(twins, ImageFilter(before="ab"), all=False)
    assert select(twins, since=hex_id(0xAB1)[:3]) == {0xAB2}
    # A name wins over an id prefix it also is.
    named = [summary(0xAB, tags=("x:1",), created=T0), summary(1, tags=("abab:latest",))]
    assert select(named, before="abab", all=True) == {0xAB}


# --------------------------------------------------------------------------- containerd


def cd(n: int, *names: str, **fields: Any) -> IndexEntry:
    """A containerd-store summary: RepoTags are the image's name records, its one
    RepoDigest is the last record's repository with the id."""
    digests: tuple[str, ...] = ()
    if names:
        repository = names[-1].rsplit(":", 1)[0]
        digests = (f"{repository}@{iid(n)}",)
    return summary(n, tags=names, digests=digests, **fields)


CONTAINERD = [
    cd(1),
    cd(2, parent=1),
    cd(3, "app:1", "other/app:2", parent=2, labels={"k": "v"}),
    cd(4),
    cd(5, "tool:1", labels={"k": "w"}),
]


def test_the_containerd_store_calls_intermediate_images_dangling() -> None:
    assert select(CONTAINERD) == {3, 4, 5}
    assert select(CONTAINERD, dangling=True) == {4}
    assert select(CONTAINERD, dangling=True, all=True) == {1, 2, 4}
    assert select(CONTAINERD, dangling=False, all=True) == {3, 5}


def test_the_containerd_store_makes_the_digest_of_the_matching_record() -> None:
    # One pattern goes to the Engine: the digest comes from the last record it matched.
    [one] = select_images(CONTAINERD, ImageFilter(references=("app",)), all=False)
    assert one.image.repo_tags == ("app:1",)
    assert one.image.repo_digests == (f"app@{iid(3)}",)
    [exact] = select_images(CONTAINERD, ImageFilter(references=("app:1",)), all=False)
    assert exact.image.repo_digests == ()  # "app@sha256:..." is not "app:1"
    # Several are matched by the service on the unfiltered document.
    [two] = select_images(CONTAINERD, ImageFilter(references=("app", "nothing")), all=False)
    assert two.image.repo_tags == ("app:1",)
    assert two.image.repo_digests == ()
    # A pattern matching only the made-up digest matches no record.
    assert select(CONTAINERD, references=("app@*",)) == set()


def test_the_containerd_store_resolves_ids_and_digests_its_way() -> None:
    assert select(CONTAINERD, since=f"other/app@{iid(3)}") == {4, 5}
    assert select(CONTAINERD, since=f"app@{iid(3)}") == {4, 5}
    assert select(CONTAINERD, since=hex_id(3)[:4]) == {4, 5}
    with pytest.raises(NotFoundError, match="No such image: tool@"):
        select_images(CONTAINERD, ImageFilter(since=f"tool@{iid(3)}"), all=False)
    # Fewer than four hex digits are no short id there (the classic store takes them).
    with pytest.raises(NotFoundError, match="No such image: 000:latest"):
        select_images(CONTAINERD, ImageFilter(since="000"), all=False)


def test_label_negation_is_left_to_the_engine() -> None:
    with pytest.raises(NotImplementedError):
        select_images(CONTAINERD, ImageFilter(labels=("k!=v",)), all=False)
    with pytest.raises(NotImplementedError):
        select_images(CONTAINERD, ImageFilter(labels=("k=" + "v" * 5000,)), all=False)
    assert select(CLASSIC, labels=("k!=v",)) == set()  # a key named "k!" there


# --------------------------------------------------------------------------- Podman


def pm(n: int, *names: str, **fields: Any) -> IndexEntry:
    """A Podman summary: fully-qualified names, a digest per name, its own keys."""
    qualified = tuple(f"docker.io/{name}" if "/" in name else name for name in names)
    digests = tuple(f"{name.rsplit(':', 1)[0]}@{MANIFEST}" for name in qualified)
    return summary(n, tags=qualified, digests=digests, Digest=MANIFEST, History=[], **fields)


PODMAN = [
    pm(1),
    pm(2, parent=1),
    pm(3, "acc/app:1", "acc/other:2", parent=2),
    pm(4),
    pm(5, "localhost/tool:1"),
]


def test_podman_lists_intermediate_images_as_not_dangling() -> None:
    assert select(PODMAN) == {3, 4, 5}
    assert select(PODMAN, dangling=True, all=True) == {4}
    assert select(PODMAN, dangling=False, all=True) == {1, 2, 3, 5}
    assert select(PODMAN, dangling=False) == {3, 5}


def test_podman_matches_one_reference_on_its_names_only() -> None:
    # Podman matches names in more forms ("app:1"), the service then keeps Docker's.
    [one] = select_images(PODMAN, ImageFilter(references=("acc/app",)), all=False)
    assert one.image.repo_tags == ("acc/app:1",)
    assert one.image.repo_digests == (f"acc/app@{MANIFEST}",)
    assert select(PODMAN, references=("app:1",)) == set()
    # A digest alone: Podman matches no name; several patterns are the service's.
    assert select(PODMAN, references=("acc/app@*",)) == set()
    assert select(PODMAN, references=("acc/app@*", "nothing")) == {3}


def test_podman_lookups_and_words() -> None:
    assert select(PODMAN, since="acc/app:1") == {4, 5}
    assert select(PODMAN, since="tool:1") == set()  # localhost/tool:1 by its short name
    assert select(PODMAN, before="localhost/tool:1") == {3, 4}
    assert select(PODMAN, before=hex_id(5)[:12]) == {3, 4}
    with pytest.raises(NotFoundError) as raised:
        select_images(PODMAN, ImageFilter(before="acc/none:1"), all=False)
    assert raised.value.message == (
        'could not find local image for filter filter "before"="acc/none:1": acc/none:1:'
        " image not known"
    )
    # Both missing: Podman names either.
    with pytest.raises(NotImplementedError):
        select_images(PODMAN, ImageFilter(before="a:1", since="b:1"), all=False)
    # A digest Podman may know under another name.
    with pytest.raises(NotImplementedError):
        select_images(PODMAN, ImageFilter(before=f"acc/zzz@{MANIFEST}"), all=False)


def test_an_unknown_store_leaves_dangling_parents_to_the_engine() -> None:
    unnamed = [summary(1), summary(2, parent=1)]
    with pytest.raises(NotImplementedError):
        select_images(unnamed, ImageFilter(dangling=True), all=True)
    assert select(unnamed, dangling=True) == {2}


# --------------------------------------------------------------------------- properties

_TAGS = ["app:1", "app:2", "web/app:1", "acc/tool:1", "127.0.0.1:5000/acc/tool:3", "x:latest"]
_LABELS = [{}, {"tier": "gold"}, {"tier": ""}, {"tier": "gold", "parity": "odd"}]
_PATTERNS = ["app", "*/app", "acc/*", "*", "app:[12]", "127.0.0.1:5000/*/*", "acc/tool@*"]
_CONDITIONS = ["tier", "tier=gold", "tier=", "parity=odd", "parity"]


@st.composite
def classic_engines(draw: st.DrawFn) -> list[IndexEntry]:
    """A classic store's images: distinct creation seconds, parents among older images,
    each tag on one image, some registry digests."""
    count = draw(st.integers(min_value=1, max_value=9))
    tags = draw(st.permutations(_TAGS))
    owners = draw(st.lists(st.integers(0, count - 1), min_size=len(tags), max_size=len(tags)))
    entries = []
    for n in range(1, count + 1):
        mine = tuple(t for t, owner in zip(tags, owners, strict=True) if owner == n - 1)
        # A registry's manifest digest, never an image id (a config's).
        digests = (f"acc/pulled{n}@{iid(0xC000 + n)}",) if draw(st.booleans()) else ()
        parent = draw(st.one_of(st.none(), st.integers(1, n - 1))) if n > 1 else None
        entries.append(
            summary(
                n,
                tags=mine,
                digests=digests,
                parent=parent,
                labels=draw(st.sampled_from(_LABELS)) or None,
            )
        )
    return entries


filters = st.builds(
    ImageFilter,
    references=st.lists(st.sampled_from(_PATTERNS), max_size=2, unique=True).map(tuple),
    labels=st.lists(st.sampled_from(_CONDITIONS), max_size=2, unique=True).map(tuple),
    dangling=st.sampled_from([None, True, False]),
)


@settings(max_examples=300, deadline=None)
@given(classic_engines(), filters)
def test_all_lists_a_superset(entries: list[IndexEntry], image_filter: ImageFilter) -> None:
    assert ids(select_images(entries, image_filter, all=False)) <= ids(
        select_images(entries, image_filter, all=True)
    )


@settings(max_examples=300, deadline=None)
@given(classic_engines(), filters, st.sampled_from(_CONDITIONS), st.booleans())
def test_another_label_never_adds_an_image(
    entries: list[IndexEntry], image_filter: ImageFilter, condition: str, all: bool
) -> None:
    narrower = ImageFilter(
        references=image_filter.references,
        labels=(*image_filter.labels, condition),
        dangling=image_filter.dangling,
    )
    assert ids(select_images(entries, narrower, all=all)) <= ids(
        select_images(entries, image_filter, all=all)
    )


@settings(max_examples=300, deadline=None)
@given(classic_engines(), st.sampled_from(_PATTERNS), st.sampled_from(_PATTERNS), st.booleans())
def test_references_are_any_of(entries: list[IndexEntry], a: str, b: str, all: bool) -> None:
    assume(a != b)
    either = select_images(entries, ImageFilter(references=(a, b)), all=all)
    first = select_images(entries, ImageFilter(references=(a,)), all=all)
    second = select_images(entries, ImageFilter(references=(b,)), all=all)
    assert ids(either) == ids(first) | ids(second)
    shown = {e.id: e.image for e in either}
    for alone in (*first, *second):
        assert set(alone.image.repo_tags) <= set(shown[alone.id].repo_tags)


@settings(max_examples=300, deadline=None)
@given(classic_engines(), filters)
def test_dangling_true_and_false_cover_the_plain_list(
    entries: list[IndexEntry], image_filter: ImageFilter
) -> None:
    def with_dangling(dangling: bool | None) -> set[int]:
        changed = ImageFilter(image_filter.references, image_filter.labels, dangling)
        return ids(select_images(entries, changed, all=False))

    everything = with_dangling(None)
    assert with_dangling(True) | with_dangling(False) == everything
    # Only an image with a digest and no (matching) tag is both.
    both = with_dangling(True) & with_dangling(False)
    by_id = {_NUMBERS[e.id]: e for e in entries}
    assert all(not by_id[n].image.repo_tags or image_filter.references for n in both)


@settings(max_examples=300, deadline=None)
@given(classic_engines(), filters, st.randoms(use_true_random=False))
def test_the_predicate_and_the_view_agree_with_the_list(
    entries: list[IndexEntry], image_filter: ImageFilter, shuffle: random.Random
) -> None:
    listed = {e.id: e for e in select_images(entries, image_filter, all=True)}
    matches = image_predicate(image_filter, entries)
    view = image_view(image_filter, entries)
    for entry in entries:
        assert matches(entry) == (entry.id in listed)
        assert view(entry) == listed.get(entry.id)
    shuffled = list(entries)
    shuffle.shuffle(shuffled)
    assert select_images(shuffled, image_filter, all=True) == [
        listed[e.id] for e in shuffled if e.id in listed
    ]
    for entry in listed.values():
        original = next(e for e in entries if e.id == entry.id)
        assert set(entry.image.repo_tags) <= set(original.image.repo_tags)
        assert entry.summary is original.summary


@settings(max_examples=200, deadline=None)
@given(classic_engines(), st.integers(0, 8), st.integers(0, 8))
def test_before_and_since_are_strict_by_creation(
    entries: list[IndexEntry], before: int, since: int
) -> None:
    before_id = entries[before % len(entries)].id
    since_id = entries[since % len(entries)].id
    created = {e.id: e.summary["Created"] for e in entries}
    listed = select_images(entries, ImageFilter(before=before_id, since=since_id), all=True)
    expected = {e.id for e in entries if created[since_id] < created[e.id] < created[before_id]}
    assert {e.id for e in listed} == expected
