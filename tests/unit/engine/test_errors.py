from __future__ import annotations

import pytest

from imagesvc.core.errors import (
    EngineError,
    FailedPreconditionError,
    ImageServiceError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    Reason,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)
from imagesvc.engine.errors import classify_engine_message, stream_failure

NOT_FOUND = (NotFoundError, Reason.IMAGE_NOT_FOUND)
BAD_REFERENCE = (InvalidArgumentError, Reason.INVALID_REFERENCE)
BAD_CONTEXT = (InvalidArgumentError, Reason.INVALID_BUILD_CONTEXT)
BAD_OPTIONS = (InvalidArgumentError, Reason.INVALID_BUILD_OPTIONS)
UNAUTHENTICATED = (UnauthenticatedError, Reason.REGISTRY_UNAUTHENTICATED)
DENIED = (PermissionDeniedError, Reason.REGISTRY_DENIED)
IN_USE = (FailedPreconditionError, Reason.IMAGE_IN_USE)
REGISTRY_DOWN = (UnavailableError, Reason.REGISTRY_UNAVAILABLE)

Expected = tuple[type[ImageServiceError], Reason]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        # Missing images, locally or in a registry.
        ("No such image: x", NOT_FOUND),
        ("No such image: busybox:nope", NOT_FOUND),
        ("reference does not exist", NOT_FOUND),
        # Podman's Docker API.
        (
            'could not find local image for filter filter "since"="x:1": x:1: image not known',
            NOT_FOUND,
        ),
        (
            "image used by 0123abcd: image is in use by a container: consider listing external"
            " containers and force-removing image",
            IN_USE,
        ),
        ("An image does not exist locally with the tag: 127.0.0.1:5000/x", NOT_FOUND),
        (
            "manifest for 127.0.0.1:5000/x:1 not found: manifest unknown: manifest unknown",
            NOT_FOUND,
        ),
        ("manifest for busybox:nope not found: manifest unknown: manifest unknown", NOT_FOUND),
        (
            "pull access denied for x, repository does not exist or may require 'docker login'",
            NOT_FOUND,
        ),
        (
            "pull access denied for nosuch, repository does not exist or may require"
            " 'docker login': denied: requested access to the resource is denied",
            NOT_FOUND,
        ),
        ("name unknown: repository name not known to registry", NOT_FOUND),
        # The containerd image store's words for a push of an image it does not have.
        ("tag does not exist: 127.0.0.1:5000/team/missing:1", NOT_FOUND),
        # The containerd image store's words for a registry that wants credentials the
        # Engine does not have: the registry asked, so unauthenticated, not missing.
        (
            "push access denied, repository does not exist or may require authorization:"
            " authorization failed: no basic auth credentials",
            UNAUTHENTICATED,
        ),
        (
            'failed to resolve reference "127.0.0.1:5000/team/app:1": pull access denied,'
            " repository does not exist or may require authorization: authorization failed:"
            " no basic auth credentials",
            UNAUTHENTICATED,
        ),
        # Malformed references.
        ("invalid reference format", BAD_REFERENCE),
        ("invalid reference format: repository name must be lowercase", BAD_REFERENCE),
        ('invalid tag format "x::"', BAD_REFERENCE),
        ("invalid checksum digest length", BAD_REFERENCE),
        (
            '"LINUX/amd64": unknown operating system or architecture: invalid argument',
            BAD_REFERENCE,
        ),
        # Registry credentials and permissions.
        ("unauthorized: authentication required", UNAUTHENTICATED),
        (
            'Get "https://127.0.0.1:5001/v2/x/manifests/1": no basic auth credentials',
            UNAUTHENTICATED,
        ),
        ("unauthorized: incorrect username or password", UNAUTHENTICATED),
        (
            'Error response from daemon: Get "https://127.0.0.1:5001/v2/": unauthorized: '
            "authentication required",
            UNAUTHENTICATED,
        ),
        ("denied: requested access to the resource is denied", DENIED),
        ("received unexpected HTTP status: 403 Forbidden", DENIED),
        # Images still in use.
        (
            "conflict: unable to delete 0123456789ab (must be forced) - image is being used by"
            " stopped container fedcba987654",
            IN_USE,
        ),
        (
            "conflict: unable to delete 0123456789ab (cannot be forced) - image has dependent"
            " child images",
            IN_USE,
        ),
        (
            'conflict: unable to remove repository reference "busybox:x" (must force) -'
            " container fedcba987654 is using its referenced image 0123456789ab",
            IN_USE,
        ),
        # Registries out of reach.
        (
            'Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused',
            REGISTRY_DOWN,
        ),
        (
            'Get "https://127.0.0.1:5000/v2/": http: server gave HTTP response to HTTPS client',
            REGISTRY_DOWN,
        ),
        # A registry that accepts the connection and closes it without an answer.
        ('Get "http://127.0.0.1:5001/v2/": EOF', REGISTRY_DOWN),
        # The registry gone in the middle of a layer (after the Engine's retries).
        ("EOF", REGISTRY_DOWN),
        ('Get "http://127.0.0.1:43707/v2/faults/pulled/blobs/sha256:2382": EOF', REGISTRY_DOWN),
        (
            'Get "http://127.0.0.1:33629/v2/faults/pulled/blobs/sha256:f61d": http: server'
            " closed idle connection",
            REGISTRY_DOWN,
        ),
        (
            'Get "https://nosuch.invalid/v2/": dial tcp: lookup nosuch.invalid: no such host',
            REGISTRY_DOWN,
        ),
        (
            'Get "https://10.255.255.1/v2/": dial tcp 10.255.255.1:443: i/o timeout',
            REGISTRY_DOWN,
        ),
        (
            'Get "https://127.0.0.1:5443/v2/": tls: failed to verify certificate: x509:'
            " certificate signed by unknown authority",
            REGISTRY_DOWN,
        ),
        ("received unexpected HTTP status: 503 Service Unavailable", REGISTRY_DOWN),
    ],
)
def test_engine_messages_are_classified(message: str, expected: Expected) -> None:
    error = classify_engine_message(message)
    kind, reason = expected
    assert type(error) is kind
    assert error.reason is reason
    assert error.message == message


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Error processing tar file(exit status 1): unexpected EOF", BAD_CONTEXT),
        ("archive/tar: invalid tar header", BAD_CONTEXT),
        ("Cannot locate specified Dockerfile: Dockerfile.missing", BAD_OPTIONS),
        ("dockerfile parse error line 1: unknown instruction: FORM", BAD_OPTIONS),
        ("failed to reach build target nosuch in Dockerfile", BAD_OPTIONS),
        ("network nosuchnet not found", BAD_OPTIONS),
    ],
)
def test_build_context_and_option_messages_are_caller_errors_only_in_a_build(
    message: str, expected: Expected
) -> None:
    error = classify_engine_message(message, building=True)
    kind, reason = expected
    assert type(error) is kind
    assert error.reason is reason
    outside_a_build = classify_engine_message(message)
    assert outside_a_build.reason not in (
        Reason.INVALID_BUILD_CONTEXT,
        Reason.INVALID_BUILD_OPTIONS,
    )


def test_classification_is_case_insensitive() -> None:
    error = classify_engine_message("NO SUCH IMAGE: X")
    assert type(error) is NotFoundError


def test_message_is_stripped_and_never_empty() -> None:
    assert classify_engine_message("  No such image: x\n").message == "No such image: x"
    blank = classify_engine_message("   ")
    assert type(blank) is EngineError
    assert blank.reason is Reason.ENGINE_ERROR
    assert "without a message" in blank.message


@pytest.mark.parametrize(
    "message",
    [
        "The command '/bin/sh -c false' returned a non-zero code: 1",
        "The command '/bin/sh -c exit 3' returned a non-zero code: 3",
        'process "/bin/sh -c false" did not complete successfully: exit code: 1',
        # buildah's (Podman's), even when the step's command mentions a missing image.
        'building at STEP "RUN docker pull nosuch": while running runtime: exit status 1',
        # A failing step wins even when its output looks like another failure.
        "The command '/bin/sh -c docker pull nosuch' returned a non-zero code: 1"
        " (No such image: nosuch)",
    ],
)
def test_failed_build_steps_are_build_failed(message: str) -> None:
    error = classify_engine_message(message, building=True)
    assert type(error) is FailedPreconditionError
    assert error.reason is Reason.BUILD_FAILED


def test_non_zero_code_outside_a_build_is_not_build_failed() -> None:
    error = classify_engine_message(
        "The command '/bin/sh -c false' returned a non-zero code: 1", building=False
    )
    assert type(error) is EngineError
    assert error.reason is Reason.ENGINE_ERROR


def test_build_errors_that_match_a_rule_keep_that_rule() -> None:
    error = classify_engine_message(
        "pull access denied for nosuch, repository does not exist or may require 'docker login'",
        building=True,
    )
    assert type(error) is NotFoundError
    options = classify_engine_message(
        "dockerfile parse error line 2: unknown flag: --x", building=True
    )
    assert options.reason is Reason.INVALID_BUILD_OPTIONS


def test_unmatched_build_error_is_build_failed() -> None:
    error = classify_engine_message("something odd happened while building", building=True)
    assert type(error) is FailedPreconditionError
    assert error.reason is Reason.BUILD_FAILED


@pytest.mark.parametrize(
    ("status", "kind", "reason"),
    [
        (404, NotFoundError, Reason.IMAGE_NOT_FOUND),
        (409, FailedPreconditionError, Reason.CONFLICT),
        (400, InvalidArgumentError, Reason.INVALID_ARGUMENT),
        (500, EngineError, Reason.ENGINE_ERROR),
        (None, EngineError, Reason.ENGINE_ERROR),
    ],
)
def test_http_status_fallbacks_for_unknown_messages(
    status: int | None, kind: type[ImageServiceError], reason: Reason
) -> None:
    error = classify_engine_message("something unexpected", http_status=status)
    assert type(error) is kind
    assert error.reason is reason
    assert error.message == "something unexpected"


def test_message_rules_win_over_http_status() -> None:
    error = classify_engine_message("unauthorized: authentication required", http_status=500)
    assert type(error) is UnauthenticatedError
    error = classify_engine_message("No such image: x", http_status=409)
    assert type(error) is NotFoundError


def test_rule_errors_win_over_building_fallback() -> None:
    error = classify_engine_message("unauthorized: authentication required", building=True)
    assert type(error) is UnauthenticatedError


@pytest.mark.parametrize(
    "message",
    [
        # A registry connection dropped in the middle of a layer download.
        'Get "https://127.0.0.1:5000/v2/x/blobs/sha256:0123": unexpected EOF',
        "unexpected EOF",
        # The daemon failed to unpack a pulled layer (full disk, bad layer).
        "failed to register layer: Error processing tar file(exit status 1):"
        " write /usr/bin/x: no space left on device",
    ],
)
def test_pull_failures_are_never_blamed_on_a_build_context(message: str) -> None:
    # Outside a build there is no build context: these must not come back as the
    # caller's INVALID_ARGUMENT / INVALID_BUILD_CONTEXT.
    error = classify_engine_message(message, building=False)
    assert error.reason is not Reason.INVALID_BUILD_CONTEXT
    assert not isinstance(error, InvalidArgumentError)


def test_an_error_detail_line_is_its_classified_error() -> None:
    line = {"errorDetail": {"code": 1, "message": "manifest unknown"}, "error": "ignored"}
    error = stream_failure(line)
    assert type(error) is NotFoundError
    assert error.reason is Reason.IMAGE_NOT_FOUND
    assert error.message == "manifest unknown"


def test_an_error_line_without_detail_is_classified_too() -> None:
    error = stream_failure({"error": "unauthorized: authentication required"})
    assert type(error) is UnauthenticatedError
    assert error.reason is Reason.REGISTRY_UNAUTHENTICATED


def test_a_build_error_line_is_classified_as_a_build_failure() -> None:
    line = {"error": "The command '/bin/sh -c false' returned a non-zero code: 1"}
    in_a_build = stream_failure(line, building=True)
    elsewhere = stream_failure(line)
    assert in_a_build is not None
    assert in_a_build.reason is Reason.BUILD_FAILED
    assert elsewhere is not None
    assert elsewhere.reason is Reason.ENGINE_ERROR


@pytest.mark.parametrize(
    "line",
    [
        {"status": "Pulling fs layer", "id": "a1b2c3d4e5f6"},
        {"stream": "Step 1/2 : FROM busybox\n"},
        {"aux": {"ID": "sha256:" + "a" * 64}},
        {"error": "", "errorDetail": {}},
    ],
)
def test_other_lines_report_no_failure(line: dict[str, object]) -> None:
    assert stream_failure(line) is None


@pytest.mark.parametrize(
    "message",
    [
        # Engine 20.10 and 26, classic store.
        "write /var/lib/docker/tmp/GetImageBlob484980452: no space left on device",
        # Engine 26, containerd store.
        "failed to copy: failed to send write: write /var/lib/docker/containerd/daemon/"
        "io.containerd.content.v1.content/ingest/8653/data: no space left on device: unknown",
    ],
)
@pytest.mark.parametrize("building", [False, True])
def test_a_full_daemon_disk_is_resource_exhausted_and_says_so(message: str, building: bool) -> None:
    error = classify_engine_message(message, http_status=500, building=building)
    assert type(error) is ResourceExhaustedError
    assert error.reason is Reason.DAEMON_DISK_FULL
    assert error.message == (
        f"the Docker daemon's disk is full (its data root has no space left): {message}"
    )
