"""Validation of build options before anything reaches the Engine."""

from __future__ import annotations

import dataclasses
import posixpath
import re

from imagesvc.core.errors import InvalidArgumentError, Reason
from imagesvc.core.models import BuildOptions
from imagesvc.core.references import parse_tag_target, validate_platform

_STAGE_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9_.-]*")
_NETWORK_MODE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.:-]*")
_MAX_TAGS = 64


def _invalid(message: str, field: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        message, reason=Reason.INVALID_BUILD_OPTIONS, metadata={"field": field}
    )


def validate_build_options(options: BuildOptions) -> BuildOptions:
    """The options with tags normalised to `name:tag`; INVALID_ARGUMENT on any bad value."""
    if len(options.tags) > _MAX_TAGS:
        raise _invalid(f"at most {_MAX_TAGS} tags per build, got {len(options.tags)}", "tags")
    tags = tuple(str(parse_tag_target(tag)) for tag in options.tags)
    dockerfile = options.dockerfile
    if dockerfile:
        normalised = posixpath.normpath(dockerfile)
        if posixpath.isabs(dockerfile) or normalised.startswith("../") or normalised == "..":
            raise _invalid(
                f"dockerfile {dockerfile!r} must be a relative path inside the build context",
                "dockerfile",
            )
    for key in options.build_args:
        if not key or "=" in key or any(ch.isspace() for ch in key):
            raise _invalid(
                f"build argument name {key!r} must be non-empty, without '=' or spaces",
                "build_args",
            )
    for key in options.labels:
        if not key or any(ch.isspace() for ch in key):
            raise _invalid(f"label key {key!r} must be non-empty, without spaces", "labels")
    if options.target and not _STAGE_NAME.fullmatch(options.target):
        raise _invalid(f"target {options.target!r} is not a valid build stage name", "target")
    if options.network_mode and not _NETWORK_MODE.fullmatch(options.network_mode):
        raise _invalid(
            f"network_mode {options.network_mode!r} is not a network mode"
            " (default, none, host or a network name)",
            "network_mode",
        )
    try:
        validate_platform(options.platform)
    except InvalidArgumentError as exc:
        raise _invalid(exc.message, "platform") from exc
    for auth in options.registry_auths:
        if not auth.server_address:
            raise _invalid(
                "every entry of registry_auths needs server_address, the registry it is for",
                "registry_auths",
            )
    # The result owns its mappings: later changes to the caller's dicts cannot reach it.
    return dataclasses.replace(
        options,
        tags=tags,
        build_args=dict(options.build_args),
        labels=dict(options.labels),
    )
