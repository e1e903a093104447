"""The HTTP port's listening socket."""

from __future__ import annotations

import asyncio
import socket

import pytest

from imagesvc.transport.http.server import bind, split_address
from tests.unit.aio import run


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("[::1]:0", ("::1", 0)),
        (":9000", ("0.0.0.0", 9000)),  # noqa: S104 (what ":port" means)
    ],
)
def test_split_address(address: str, expected: tuple[str, int]) -> None:
    assert split_address(address) == expected


@pytest.mark.parametrize("address", ["localhost", "127.0.0.1:http", ""])
def test_split_address_refuses_what_is_not_host_port(address: str) -> None:
    with pytest.raises(ValueError, match="not host:port"):
        split_address(address)


def test_accepted_connections_have_tcp_nodelay() -> None:
    """Without TCP_NODELAY every keep-alive response (headers, then body) stalls ~40 ms
    on the client's delayed ACK; asyncio sets it only when the socket's proto is TCP."""

    async def scenario() -> int:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        listening = bind("127.0.0.1:0")
        assert listening.proto == socket.IPPROTO_TCP
        server = await asyncio.get_running_loop().create_server(Probe, sock=listening)
        port = listening.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await asyncio.wait_for(accepted, 5)
        finally:
            writer.close()
            server.close()
            await server.wait_closed()

    assert run(scenario()) != 0
