"""Which listen addresses count as loopback (everything else needs authentication)."""

from __future__ import annotations

import pytest

from imagesvc.server_security import is_loopback_address


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1:50051", "127.1.2.3:0", "[::1]:8080", "localhost:50051", "unix:/run/x.sock"],
)
def test_loopback(address: str) -> None:
    assert is_loopback_address(address)


@pytest.mark.parametrize(
    "address",
    [
        "0.0.0.0:50051",
        "[::]:50051",
        ":50051",
        "10.0.0.5:50051",
        "example.com:50051",
        "localhost.example.com:1",
        "127.0.0.1",
        "[::ffff:127.0.0.1]:1",
    ],
)
def test_not_loopback(address: str) -> None:
    assert not is_loopback_address(address)
