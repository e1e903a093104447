"""Bounds on the gRPC port's connections, as grpc core channel arguments: idle and old
connections are sent away (GOAWAY), and clients may not ping more often than allowed
(grpc-go's keepalive.ServerParameters and EnforcementPolicy, the same knobs)."""

from __future__ import annotations

from dataclasses import dataclass

# grpc core takes milliseconds as a C int; INT_MAX is its "no limit".
_NO_LIMIT_MS = 2**31 - 1


def _milliseconds(seconds: float) -> int:
    return min(round(seconds * 1000), _NO_LIMIT_MS) if seconds > 0 else _NO_LIMIT_MS


@dataclass(frozen=True, slots=True)
class ConnectionBounds:
    """Seconds, 0 meaning no limit (`min_ping_interval`: 0 lets clients ping at will)."""

    max_idle: float
    max_age: float
    max_age_grace: float
    min_ping_interval: float

    def channel_options(self) -> list[tuple[str, int]]:
        return [
            ("grpc.max_connection_idle_ms", _milliseconds(self.max_idle)),
            ("grpc.max_connection_age_ms", _milliseconds(self.max_age)),
            ("grpc.max_connection_age_grace_ms", _milliseconds(self.max_age_grace)),
            # The server's enforcement of its clients' keepalive pings.
            ("grpc.http2.min_ping_interval_without_data_ms", round(self.min_ping_interval * 1000)),
            ("grpc.keepalive_permit_without_calls", 0),
        ]
