"""Keeps registry secrets out of every message that leaves the service."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from imagesvc.core.errors import ImageServiceError

REDACTED = "[REDACTED]"

# A word's text up to its last '@' before any '/' (what would be URL user information),
# and what follows the '@' up to the end of the word.
_AT = re.compile(r"(?P<lead>^|[\s'\"/])(?P<user>[^\s'\"/]+)@(?P<after>[^\s'\"]*)")
_HOST = re.compile(r"[A-Za-z0-9.\-\[\]]+(?::[0-9]*)?")


def _masked(match: re.Match[str]) -> str:
    user, after = match["user"], match["after"]
    # `registry/app` after the '@', or `user:password@host[:port]`; not `app@sha256:...`
    # or `app:1@sha256:...`, whose '@' starts a digest.
    if "/" in after or (":" in user and _HOST.fullmatch(after)):
        return f"{match['lead']}{REDACTED}@{after}"
    return match[0]


def without_userinfo(text: str) -> str:
    """`text` with any URL user information (which may hold a password) redacted, e.g.
    in a reference or registry address a caller wrote as `user:pass@registry/app`."""
    return _AT.sub(_masked, text)


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, REDACTED)
    return text


@contextmanager
def redacting_errors(secrets: Iterable[str]) -> Iterator[None]:
    """Re-raises core errors with any secret scrubbed from their message."""
    known = tuple(s for s in secrets if s)
    try:
        yield
    except ImageServiceError as exc:
        cleaned = redact(exc.message, known)
        if cleaned == exc.message:
            raise
        raise exc.with_message(cleaned) from exc.__cause__
