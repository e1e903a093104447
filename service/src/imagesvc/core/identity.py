"""Who is calling: set by the transport edge that authenticated the request (gRPC
interceptor, REST middleware), read by authorization, limits and audit in one place."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller. `name` is safe to log (never a token); `via` says how it
    was established: "token", "mtls", or "anonymous" when authentication is off."""

    name: str
    roles: frozenset[str]
    via: str


# None: the edge found no credentials (or authentication is not configured).
current_identity: ContextVar[Identity | None] = ContextVar("imagesvc_identity", default=None)
