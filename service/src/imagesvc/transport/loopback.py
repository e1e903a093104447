"""The server's own definition of a loopback address, the same on every Python.

Loopback is 127.0.0.0/8 and ::1, written as such. `ipaddress`'s `is_loopback` is not
used: Python 3.13 changed its answer for IPv4-mapped IPv6 addresses (::ffff:127.0.0.1
became loopback), and a security rule must not follow the interpreter's version.

IPv4-mapped (::ffff:127.0.0.1) and IPv4-compatible (::127.0.0.1) forms are not
loopback here. On Linux an IPv6 socket bound to ::ffff:127.0.0.1 does reach only this
machine, but only while IPV6_V6ONLY is off (with it on, the bind fails), a choice made
by the listening library rather than by this rule; ::127.0.0.1 is no address of this
machine at all. Refusing them costs a user nothing (write 127.0.0.1), while a wrong
"loopback" would serve without authentication.
"""

from __future__ import annotations

import ipaddress

_LOOPBACK_V4 = ipaddress.IPv4Network("127.0.0.0/8")
_LOOPBACK_V6 = 1  # ::1, compared as an integer so that a scope (::1%lo) does not matter


def is_loopback_ip(text: str) -> bool:
    """Whether `text` is an IP address in 127.0.0.0/8 or ::1 (not a name, not a
    mapped or compatible form of an IPv4 address)."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv4Address):
        return address in _LOOPBACK_V4
    return int(address) == _LOOPBACK_V6
