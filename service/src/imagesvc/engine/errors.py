"""The one table that turns an Engine error message into a core error.

The Engine reports most failures as text: in the body of an HTTP error, or as an
`error`/`errorDetail` line inside a 200 stream (pull, push, build). Both paths end
here, in the engine package only (the adapter raises what this returns), so that a
given failure gets the same kind and reason however it arrived.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True, slots=True)
class _Rule:
    pattern: re.Pattern[str]
    kind: type[ImageServiceError]
    reason: Reason
    # Said before the Engine's words when they alone would not tell the caller what broke.
    explanation: str = ""

    def error(self, text: str) -> ImageServiceError:
        message = f"{self.explanation}: {text}" if self.explanation else text
        return self.kind(message, reason=self.reason)


def _rule(
    pattern: str, kind: type[ImageServiceError], reason: Reason, explanation: str = ""
) -> _Rule:
    return _Rule(re.compile(pattern, re.IGNORECASE), kind, reason, explanation)


# Order matters: the first match wins. "pull access denied ... repository does not
# exist" is a missing image, not a refusal, so it comes before the "denied" rule. A name
# the Engine cannot parse comes back as "no such image: UPPER/case: invalid reference
# format: ...", so malformed references come before missing images. The containerd image
# store words a registry's demand for credentials the Engine does not have as "push (or
# pull) access denied, repository does not exist or may require authorization:
# authorization failed: no basic auth credentials": the registry did ask for credentials,
# so that comes before missing images too.
_RULES: tuple[_Rule, ...] = (
    # ENOSPC from the daemon's data root ("write /var/lib/docker/tmp/GetImageBlob...: no
    # space left on device"; the containerd store: "failed to copy: ... ingest/.../data:
    # no space left on device: unknown"): nothing the caller can fix by retrying at once.
    _rule(
        r"no space left on device",
        ResourceExhaustedError,
        Reason.DAEMON_DISK_FULL,
        "the Docker daemon's disk is full (its data root has no space left)",
    ),
    _rule(
        r"invalid reference format|invalid tag format|repository name must"
        r"|invalid repository name|invalid platform|unknown operating system"
        r"|invalid checksum digest",
        InvalidArgumentError,
        Reason.INVALID_REFERENCE,
    ),
    _rule(
        r"authorization failed: no basic auth credentials",
        UnauthenticatedError,
        Reason.REGISTRY_UNAUTHENTICATED,
    ),
    _rule(
        # "tag does not exist: REF": the containerd store's push of an image it lacks;
        # "image not known" is Podman's: "could not find local image for filter ...".
        r"no such image|does not exist locally|reference does not exist|tag does not exist"
        r"|image not known",
        NotFoundError,
        Reason.IMAGE_NOT_FOUND,
    ),
    _rule(
        r"manifest unknown|manifest for .* not found|repository does not exist"
        r"|name unknown|not found: manifest",
        NotFoundError,
        Reason.IMAGE_NOT_FOUND,
    ),
    _rule(
        r"unauthorized|authentication required|no basic auth credentials"
        r"|incorrect username or password|401 unauthorized|invalid username/password",
        UnauthenticatedError,
        Reason.REGISTRY_UNAUTHENTICATED,
    ),
    _rule(r"denied|403 forbidden|forbidden", PermissionDeniedError, Reason.REGISTRY_DENIED),
    _rule(
        r"image is being used|image is in use|must be forced|image has dependent child images"
        r"|unable to delete|conflict:",
        FailedPreconditionError,
        Reason.IMAGE_IN_USE,
    ),
    _rule(
        r"connection refused|no such host|i/o timeout|dial tcp|network is unreachable"
        r"|server gave http response to https client|tls: |x509:|connection reset"
        r"|service unavailable|context deadline exceeded while|unexpected eof"
        # Go's net/http when the registry closed a kept-alive connection as it died.
        r"|server closed idle connection"
        r'|": eof$'  # Go's `Get "<registry URL>": EOF`: the connection closed unanswered
        # and its bare "EOF" for a registry connection dropped mid-transfer (the registry
        # killed during a pull or a push, after the Engine's retries).
        r"|^eof$",
        UnavailableError,
        Reason.REGISTRY_UNAVAILABLE,
    ),
)

# Only a build sends the caller's own tar and Dockerfile; the same words in a pull
# (a dropped registry connection, a full disk) are not the caller's fault.
_BUILD_RULES: tuple[_Rule, ...] = (
    _rule(
        r"error processing tar file|unexpected eof|archive/tar|invalid tar header"
        r"|gzip: invalid header",
        InvalidArgumentError,
        Reason.INVALID_BUILD_CONTEXT,
    ),
    _rule(
        r"cannot locate specified dockerfile|dockerfile parse error|unknown instruction"
        r"|failed to reach build target|target stage .* could not be found"
        r"|unknown flag|invalid networking mode|network .* not found",
        InvalidArgumentError,
        Reason.INVALID_BUILD_OPTIONS,
    ),
)

# Docker's "returned a non-zero code: 1", BuildKit's "exit code: 1", buildah's (Podman's)
# "building at STEP "RUN false": while running runtime: exit status 1".
_BUILD_STEP_FAILED = re.compile(
    r"returned a non-zero code|exit code: \d+|while running runtime: exit status \d+",
    re.IGNORECASE,
)


def classify_engine_message(
    message: str, *, http_status: int | None = None, building: bool = False
) -> ImageServiceError:
    """The core error for an Engine failure message (and its HTTP status, when known)."""
    text = message.strip() or "the Docker Engine reported an error without a message"
    if building and _BUILD_STEP_FAILED.search(text):
        return FailedPreconditionError(text, reason=Reason.BUILD_FAILED)
    for rule in (*_BUILD_RULES, *_RULES) if building else _RULES:
        if rule.pattern.search(text):
            return rule.error(text)
    if http_status == 404:
        return NotFoundError(text, reason=Reason.IMAGE_NOT_FOUND)
    if http_status == 409:
        return FailedPreconditionError(text, reason=Reason.CONFLICT)
    if http_status == 400:
        return InvalidArgumentError(text, reason=Reason.INVALID_ARGUMENT)
    if building:
        return FailedPreconditionError(text, reason=Reason.BUILD_FAILED)
    return EngineError(text, reason=Reason.ENGINE_ERROR)


def stream_failure(
    message: Mapping[str, Any], *, building: bool = False
) -> ImageServiceError | None:
    """The core error an in-stream Engine message (pull, push, build) reports, or None
    when the message reports none."""
    detail = message.get("errorDetail")
    if isinstance(detail, dict) and detail.get("message"):
        text = str(detail["message"])
    elif message.get("error"):
        text = str(message["error"])
    else:
        return None
    return classify_engine_message(text, building=building)
