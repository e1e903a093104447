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

# Set by the edge when the caller presented a credential that is not valid (unknown or
# revoked token, malformed header): a description safe to log, never the credential.
# Authorization answers UNAUTHENTICATED instead of treating the caller as anonymous.
credential_problem: ContextVar[str | None] = ContextVar("imagesvc_credential_problem", default=None)


@dataclass(frozen=True, slots=True)
class CallOrigin:
    """Where a call came from, for the audit record: "grpc" or "rest", the request id the
    caller sees, and the peer address."""

    transport: str
    request_id: str
    peer: str


current_origin: ContextVar[CallOrigin | None] = ContextVar("imagesvc_call_origin", default=None)
