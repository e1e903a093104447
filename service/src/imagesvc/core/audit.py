"""The audit trail: one JSON line per write on logger `imagesvc.audit` (who, how
authenticated, which RPC over which transport, the references involved, the outcome).

Records carry names, references and outcomes only; credentials never reach this module
(the guard passes reference fields, never auth fields)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from imagesvc.core.identity import CallOrigin, Identity
from imagesvc.core.redaction import without_userinfo

log = logging.getLogger("imagesvc.audit")

# A hostile caller must not be able to make one audit line huge.
_MAX_TEXT = 256
_MAX_ITEMS = 32

Value = str | int | list[str]


def _bounded(value: Value) -> Value:
    if isinstance(value, str):
        # A reference or address written as `user:password@registry/...` keeps no password.
        value = without_userinfo(value)
        return value if len(value) <= _MAX_TEXT else value[:_MAX_TEXT] + "…"
    if isinstance(value, list):
        return [str(_bounded(item)) for item in value[:_MAX_ITEMS]]
    return value


@dataclass(slots=True)
class AuditEvent:
    """Filled in while a write runs; `write()` emits it once."""

    rpc: str
    identity: Identity | None
    origin: CallOrigin | None
    subject: dict[str, Value] = field(default_factory=dict)
    result: dict[str, Value] = field(default_factory=dict)

    def write(self, outcome: str, *, code: str = "", reason: str = "", duration_ms: float) -> None:
        """`outcome`: "ok", "denied" (authentication/authorization refused the call),
        "failed" or "cancelled"; `code` and `reason` as the caller saw them."""
        record: dict[str, object] = {
            "rpc": self.rpc,
            "identity": self.identity.name if self.identity else None,
            "via": self.identity.via if self.identity else None,
            "transport": self.origin.transport if self.origin else None,
            "request_id": self.origin.request_id if self.origin else None,
            "peer": self.origin.peer if self.origin else None,
            "subject": {key: _bounded(value) for key, value in self.subject.items()},
            "outcome": outcome,
            "duration_ms": round(duration_ms, 2),
        }
        if code:
            record["code"] = code
        if reason:
            record["reason"] = reason
        if self.result:
            record["result"] = {key: _bounded(value) for key, value in self.result.items()}
        log.info("audit", extra=record)
