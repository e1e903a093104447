"""Keeps registry secrets out of every message that leaves the service."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar

from imagesvc.core.errors import ImageServiceError

REDACTED = "[REDACTED]"

# A word's text up to its last '@' before any '/' (what would be URL user information),
# and what follows the '@' up to the end of the word.
_AT = re.compile(r"(?P<lead>^|[\s'\"/])(?P<user>[^\s'\"/]+)@(?P<after>[^\s'\"]*)")
_HOST = re.compile(r"[A-Za-z0-9.\-\[\]]+(?::[0-9]*)?")

# The secrets a call has handed to the core so far, for whoever logs that call's failure
# (its causes, unlike its messages, are not redacted). A set shared, not copied, by the
# threads and tasks of the call.
_call_secrets: ContextVar[set[str] | None] = ContextVar("imagesvc_call_secrets", default=None)


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
    collected = _call_secrets.get()
    if collected is not None:
        collected.update(known)
    try:
        yield
    except ImageServiceError as exc:
        cleaned = redact(exc.message, known)
        if cleaned == exc.message:
            raise
        raise exc.with_message(cleaned) from exc.__cause__


class _CollectingCallSecrets:
    """A class, not a generator context manager: every RPC enters one, and a generator
    costs several times as much to enter and leave."""

    __slots__ = ("_collected", "_token")

    def __init__(self) -> None:
        self._collected: set[str] = set()

    def __enter__(self) -> set[str]:
        self._token = _call_secrets.set(self._collected)
        return self._collected

    def __exit__(self, *exc_info: object) -> None:
        try:
            _call_secrets.reset(self._token)
        except ValueError:
            # A server stream cancelled while grpc waited to send its next message is
            # closed by the event loop's generator finaliser, in a context of its own
            # that is discarded afterwards: nothing to restore there.
            _call_secrets.set(None)


def collecting_call_secrets() -> AbstractContextManager[set[str]]:
    """Within it, every secret given to `redacting_errors` is also added to the set it
    yields, for redacting the log lines of the call (see `call_secrets`)."""
    return _CollectingCallSecrets()


def call_secrets() -> frozenset[str]:
    """The secrets of the running call given to `redacting_errors` so far."""
    return frozenset(_call_secrets.get() or ())


def redacted_text(text: str, secrets: Iterable[str]) -> str:
    """`text` with every known secret and any URL user information redacted."""
    return without_userinfo(redact(text, secrets))
