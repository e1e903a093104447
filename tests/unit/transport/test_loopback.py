"""The server's own definition of loopback (transport/loopback.py), pinned for the forms
whose `ipaddress.is_loopback` answer differs between Python versions or is easy to get
wrong: IPv4-mapped and IPv4-compatible IPv6 addresses are not loopback, on every Python."""

from __future__ import annotations

import pytest

from imagesvc.transport.loopback import is_loopback_ip


@pytest.mark.parametrize(
    "text", ["127.0.0.1", "127.255.255.254", "127.1.2.3", "::1", "0:0:0:0:0:0:0:1", "::1%lo"]
)
def test_plain_loopback_addresses_are_loopback(text: str) -> None:
    assert is_loopback_ip(text)


@pytest.mark.parametrize(
    "text",
    [
        # IPv4-mapped: Python 3.13's is_loopback says True for these.
        "::ffff:127.0.0.1",
        "::ffff:7f00:1",
        "::FFFF:127.1.2.3",
        # IPv4-compatible (deprecated): no address of this machine.
        "::127.0.0.1",
        "::7f00:1",
    ],
)
def test_mapped_and_compatible_ipv4_loopback_are_not_loopback(text: str) -> None:
    assert not is_loopback_ip(text)


@pytest.mark.parametrize(
    "text",
    [
        "0.0.0.0",  # noqa: S104 (a text to judge, not a bind)
        "::",
        "128.0.0.1",
        "126.255.255.255",
        "10.0.0.1",
        "::2",
        "fe80::1",
        "localhost",
        "",
    ],
)
def test_other_addresses_and_names_are_not_loopback(text: str) -> None:
    assert not is_loopback_ip(text)
