"""What differs on an engine of the matrix and the service cannot make right: one table.

Each ``Difference`` names the engine kind, the contract area (a row of the table in
docs/engines.md), the contract tests it makes fail, and what differs, in a sentence a
user understands. ``tests/integration/conftest.py`` marks those tests strict xfails on
that kind, so a difference that disappears fails the run; ``tests/unit/test_engines_doc.py``
checks that the docs' table says "differs" exactly where this table does, with these
sentences. Pure data: imported by unit tests too.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AREAS", "DIFFERENCES", "Difference", "difference_for"]

# The rows of the table in docs/engines.md.
AREAS = (
    "list (fields, filters, paging)",
    "inspect, history",
    "pull (by tag, digest, progress)",
    "push (progress, digest)",
    "tag, remove",
    "prune",
    "build",
    "registry auth",
    "errors, malformed references",
    "registry inspect, update checks",
)


@dataclass(frozen=True)
class Difference:
    kind: str
    area: str
    # "module.py::test_name" for every parameter, or "module.py::test_name[id]" for one
    # (the test's own parameter ids, without the engine kind's).
    tests: tuple[str, ...]
    what: str


DIFFERENCES: tuple[Difference, ...] = (
    Difference(
        kind="podman",
        area="inspect, history",
        tests=("test_get_image.py::test_every_field_matches_docker_inspect",),
        what="An image built through Podman's Docker API keeps no HEALTHCHECK.",
    ),
    Difference(
        kind="podman",
        area="inspect, history",
        tests=(
            "test_get_image.py::test_history_matches_docker_history",
            "test_get_image.py::test_history_shows_tags_of_parent_layers",
        ),
        what="Podman's image history has no tags on its entries.",
    ),
    Difference(
        kind="podman",
        area="pull (by tag, digest, progress)",
        tests=(
            "test_pull_push.py::test_pull_by_tag_streams_layer_progress_then_the_image",
            "test_pull_push.py::test_pull_by_digest",
        ),
        what=(
            "Podman's pull progress has no byte counts: a layer goes from 'Pulling fs layer' "
            "to 'Download complete', without 'Downloading', 'Extracting' or 'Pull complete'."
        ),
    ),
    Difference(
        kind="podman",
        area="push (progress, digest)",
        tests=(
            "test_pull_push.py::test_push_streams_progress_then_the_digest_the_registry_serves",
            "test_pull_push.py::test_push_of_layers_from_another_repository_counts_them_done",
            "test_registry_auth.py::test_push_and_pull_with_the_right_password",
        ),
        what=("Podman's push reports no layer progress, only the pushed digest at the end."),
    ),
    Difference(
        kind="podman",
        area="tag, remove",
        tests=("test_tag_remove_prune.py::test_remove_with_no_prune_keeps_the_parent",),
        what="RemoveImage with no_prune still deletes the untagged parent images on Podman.",
    ),
    Difference(
        kind="podman",
        area="prune",
        tests=(
            "test_tag_remove_prune.py::test_prune_all_with_label_filters",
            "test_tag_remove_prune.py::test_prune_exclude_label_with_value",
            "test_tag_remove_prune.py::test_prune_needs_nothing_and_keeps_the_session_image",
            "test_kept_images.py::test_a_prune_of_all_narrowed_to_spare_the_kept_images_runs",
        ),
        what=(
            "Podman prunes only dangling images, ignores exclude_labels and does not combine "
            "several labels: PruneImages with all, exclude_labels or more than one label is "
            "refused (FAILED_PRECONDITION) rather than sent."
        ),
    ),
    Difference(
        kind="podman",
        area="prune",
        tests=("test_tag_remove_prune.py::test_prune_dangling_removes_the_replaced_image",),
        what=(
            "Podman's prune reports as space reclaimed the pruned images' whole size, layers "
            "still used by other images included."
        ),
    ),
    Difference(
        kind="podman",
        area="registry auth",
        tests=(
            "test_registry_auth.py::test_check_registry_auth_with_the_right_password",
            "test_registry_auth.py::test_check_registry_auth_with_wrong_credentials_is_unauthenticated",
            "test_registry_auth.py::test_secrets_never_leak",
        ),
        what=(
            "CheckRegistryAuth against a plain-HTTP registry is UNAVAILABLE: Podman's login "
            "demands TLS of every registry but localhost:<port>, whatever registries.conf says "
            "(pushes and pulls do honour it)."
        ),
    ),
    Difference(
        kind="docker-26-containerd",
        area="registry inspect, update checks",
        tests=("test_registry_inspect.py::test_inspect_single_manifest_names_its_platform",),
        what=(
            "The containerd image store reports no platform for a single-platform image at "
            "its registry: InspectRegistryImage's platforms is empty (an index's are listed)."
        ),
    ),
    Difference(
        kind="docker-26-containerd",
        area="registry inspect, update checks",
        tests=("test_find_image_drift.py::test_an_image_built_here_and_never_pushed_is_unknown",),
        what=(
            "The containerd image store names a locally built image with its own manifest's "
            "digest in repo_digests: FindImage's drift calls it STALE, not UNKNOWN."
        ),
    ),
    Difference(
        kind="podman",
        area="registry inspect, update checks",
        tests=(
            "test_registry_inspect.py::test_inspect_single_manifest_is_what_the_registry_serves",
            "test_registry_inspect.py::test_inspect_single_manifest_names_its_platform",
            "test_registry_inspect.py::test_inspect_index_is_what_the_registry_serves",
            "test_registry_inspect.py::test_inspect_by_digest",
            "test_registry_inspect.py::test_inspect_with_credentials",
            "test_registry_inspect.py::test_inspect_without_valid_credentials_is_unauthenticated",
            "test_registry_inspect.py::test_inspect_of_what_the_registry_lacks_is_not_found",
            "test_registry_inspect.py::test_inspect_at_a_registry_that_is_down_is_unavailable",
            "test_registry_inspect.py::test_update_check_follows_the_registry_tag",
            "test_registry_inspect.py::test_update_check_of_a_pulled_index",
            "test_registry_inspect.py::test_update_check_answers_each_image_on_its_own",
            "test_registry_inspect.py::test_update_check_with_bad_credentials_says_so_per_image",
            "test_find_image_drift.py::test_a_node_holding_an_older_push_of_the_tag_is_stale",
            "test_find_image_drift.py::test_an_image_built_here_and_never_pushed_is_unknown",
            "test_find_image_drift.py::test_a_node_without_the_image_has_no_drift",
            "test_find_image_drift.py::test_drift_with_registry_credentials_that_never_leak",
            "test_find_image_drift.py::"
            "test_drift_needs_a_reference_and_failures_at_the_registry_fail_the_call",
        ),
        what=(
            "Podman's Docker API has no registry inspect (GET /distribution/{name}/json answers "
            "404 for every name): InspectRegistryImage and FindImage with check_registry are "
            "FAILED_PRECONDITION (ENGINE_ERROR) and CheckImageUpdates answers UNKNOWN "
            "(ENGINE_ERROR) for every image it would ask a registry about."
        ),
    ),
)


def difference_for(kind: str, test: str, params: str) -> Difference | None:
    """The difference that makes ``module.py::test_name`` (with its own parameter ids
    ``params``, empty if none) fail on ``kind``, if any."""
    for difference in DIFFERENCES:
        if difference.kind != kind:
            continue
        for named in difference.tests:
            if named == test or (params and named == f"{test}[{params}]"):
                return difference
    return None
