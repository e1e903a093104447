"""Bounds on the HTTP port's slow and idle clients, which uvicorn lacks: a connection
whose request line and headers do not all arrive in time is closed, and connections over
the port's limit are closed as soon as they are accepted, before they hold a descriptor
for long. (Idle keep-alive connections are closed by uvicorn's `timeout_keep_alive`.)

The header clock starts when a connection opens, and on a kept-alive connection when the
first byte of its next request arrives; it stops once h11 has parsed the whole head of
the request (its peer's state leaves IDLE). Bodies and responses are not timed here:
streams (pulls, builds) may legitimately run long, and the RPC deadline bounds them.
"""

from __future__ import annotations

import asyncio

import h11

from imagesvc.transport.http.tls import TlsScopeH11Protocol


class BoundedH11Protocol(TlsScopeH11Protocol):
    """uvicorn's HTTP/1.1 protocol (with the TLS scope) bounding slow and surplus
    connections; `bounded_protocol` makes one with its limits."""

    header_timeout_seconds: float = 0.0  # 0: no limit
    max_connections: int = 0  # 0: no limit

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(  # type: ignore[override]
        self, transport: asyncio.Transport
    ) -> None:
        super().connection_made(transport)
        # `connections` holds every open connection of this port, this one included.
        if self.max_connections and len(self.connections) > self.max_connections:
            # Closed at once: refusing costs less than a descriptor held by a client that
            # would wait for nothing.
            transport.abort()
            return
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self._waiting_for_request():
            self._arm_header_timer()  # the next request on a kept-alive connection begins
        super().data_received(data)
        if not self._waiting_for_request():
            self._disarm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # A pipelined request already (partly) buffered: its head is timed from now.
        if self._waiting_for_request() and self.conn.trailing_data[0]:
            self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _waiting_for_request(self) -> bool:
        return self.conn.their_state is h11.IDLE

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        if self.header_timeout_seconds > 0:
            self._header_timer = self.loop.call_later(
                self.header_timeout_seconds, self._header_timed_out
            )

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing() and self._waiting_for_request():
            self.transport.close()


def bounded_protocol(
    *, header_timeout_seconds: float, max_connections: int
) -> type[BoundedH11Protocol]:
    """The protocol class uvicorn instantiates per connection, with these limits."""
    return type(
        "BoundedH11Protocol",
        (BoundedH11Protocol,),
        {"header_timeout_seconds": header_timeout_seconds, "max_connections": max_connections},
    )
