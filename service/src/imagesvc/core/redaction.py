"""Keeps registry secrets out of every message that leaves the service."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from imagesvc.core.errors import ImageServiceError

REDACTED = "[REDACTED]"


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
