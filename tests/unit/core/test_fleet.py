"""The fleet's fan-out (parallelism, per-node timeout, typed failures) and the parsing of
`--fleet-peers`."""

from __future__ import annotations

import asyncio
import time

import pytest

from imagesvc.core import fleet_discovery
from imagesvc.core.fleet import (
    NODE_ERROR,
    NODE_TIMEOUT,
    Drift,
    FanOutLimits,
    NodeFailure,
    drift_of,
    fan_out,
)
from imagesvc.core.fleet_discovery import DiscoveryError, DnsTarget, PeerDiscovery, parse_peers
from imagesvc.core.references import parse_reference


def test_outcomes_keep_the_order_and_each_failure_stays_its_nodes() -> None:
    async def call(address: str) -> str:
        if address == "b:1":
            raise NodeFailure("DAEMON_UNAVAILABLE", "down")
        if address == "c:1":
            await asyncio.sleep(10)
        if address == "d:1":
            raise RuntimeError("a bug")
        return address.upper()

    limits = FanOutLimits(parallelism=4, node_timeout_seconds=0.2)
    outcomes = asyncio.run(fan_out(["a:1", "b:1", "c:1", "d:1"], call, limits))
    assert [o.address for o in outcomes] == ["a:1", "b:1", "c:1", "d:1"]
    assert outcomes[0].value == "A:1"
    assert outcomes[0].failure is None
    assert [o.failure.reason if o.failure else None for o in outcomes] == [
        None,
        "DAEMON_UNAVAILABLE",
        NODE_TIMEOUT,
        NODE_ERROR,
    ]
    assert outcomes[3].failure is not None
    assert "a bug" not in outcomes[3].failure.message


def test_parallelism_bounds_the_calls_in_flight() -> None:
    in_flight = most = 0

    async def call(address: str) -> None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1

    addresses = [f"n{i}:1" for i in range(10)]
    asyncio.run(fan_out(addresses, call, FanOutLimits(parallelism=3, node_timeout_seconds=1)))
    assert most == 3


def test_the_timeout_is_per_node_not_for_the_whole_call() -> None:
    async def call(address: str) -> str:
        await asyncio.sleep(0.15)
        return address

    limits = FanOutLimits(parallelism=1, node_timeout_seconds=0.5)
    outcomes = asyncio.run(fan_out(["a:1", "b:1", "c:1", "d:1", "e:1"], call, limits))
    assert all(o.failure is None for o in outcomes)


def test_peers_are_a_dns_name_or_a_static_list() -> None:
    assert parse_peers("dns:///imagesvc-peers.ns.svc:50051") == DnsTarget(
        "imagesvc-peers.ns.svc", 50051, None
    )
    assert parse_peers("dns://127.0.0.1:5353/peers.test:7") == DnsTarget(
        "peers.test", 7, ("127.0.0.1", 5353)
    )
    assert parse_peers(" a:1, 10.0.0.2:50051 ,[::1]:9,") == ("a:1", "10.0.0.2:50051", "[::1]:9")
    assert parse_peers("") == ()
    for bad in ("a", "a:b", "dns://x", "dns:///name"):
        with pytest.raises(ValueError, match=r"host:port|dns:///NAME:PORT"):
            parse_peers(bad)


def test_a_static_list_needs_no_resolution() -> None:
    assert asyncio.run(PeerDiscovery("b:2,a:1").peers()) == ("b:2", "a:1")


def test_dns_answers_are_cached_then_re_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [{"10.0.0.2", "10.0.0.1"}, {"10.0.0.3"}]
    asked: list[DnsTarget] = []

    async def resolve(target: DnsTarget) -> set[str]:
        asked.append(target)
        return answers[len(asked) - 1]

    monkeypatch.setattr(fleet_discovery, "_resolve", resolve)
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    discovery = PeerDiscovery("dns:///peers.test:50051", cache_seconds=5.0)

    async def twice() -> list[tuple[str, ...]]:
        first = await discovery.peers()
        clock[0] += 4.9
        cached = await discovery.peers()
        clock[0] += 0.2
        return [first, cached, await discovery.peers()]

    assert asyncio.run(twice()) == [
        ("10.0.0.1:50051", "10.0.0.2:50051"),
        ("10.0.0.1:50051", "10.0.0.2:50051"),
        ("10.0.0.3:50051",),
    ]
    assert len(asked) == 2


def test_a_failed_resolution_keeps_the_last_good_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0

    async def resolve(target: DnsTarget) -> set[str]:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise OSError("no route")
        return {"10.0.0.1"}

    monkeypatch.setattr(fleet_discovery, "_resolve", resolve)
    discovery = PeerDiscovery("dns:///peers.test:1", cache_seconds=0.0)
    assert asyncio.run(discovery.peers()) == ("10.0.0.1:1",)
    assert asyncio.run(discovery.peers()) == ("10.0.0.1:1",)
    assert calls == 2
    never = PeerDiscovery("dns:///peers.test:1")
    with pytest.raises(DiscoveryError, match=r"cannot resolve peers\.test"):
        asyncio.run(never.peers())


def test_drift_compares_the_repositorys_digests_with_the_registrys() -> None:
    reference = parse_reference("127.0.0.1:5000/team/app:1")
    current, older = "sha256:" + "c" * 64, "sha256:" + "0" * 64
    assert drift_of(reference, [f"127.0.0.1:5000/team/app@{current}"], current) is Drift.CURRENT
    assert drift_of(reference, [f"127.0.0.1:5000/team/app@{older}"], current) is Drift.STALE
    # Pulled as both (the tag moved back): current.
    both = [f"127.0.0.1:5000/team/app@{older}", f"127.0.0.1:5000/team/app@{current}"]
    assert drift_of(reference, both, current) is Drift.CURRENT
    # Only another repository's digest (or none): cannot tell.
    assert drift_of(reference, [f"127.0.0.1:5000/other@{current}"], current) is Drift.UNKNOWN
    assert drift_of(reference, [], current) is Drift.UNKNOWN
    # Docker Hub names compare in their familiar form.
    hub = parse_reference("docker.io/library/busybox:1")
    assert drift_of(hub, [f"busybox@{current}"], current) is Drift.CURRENT
