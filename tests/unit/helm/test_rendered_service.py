"""The chart's Service, labels and selectors, ServiceAccount, PodDisruptionBudget,
NetworkPolicy and generated tokens Secret as rendered."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.helm.chart import (
    Obj,
    hook,
    manifests,
    objects_of_kind,
    one_of_kind,
    render,
    scenario_files,
    workload,
)

pytestmark = pytest.mark.chart

HOST_SOCKET: dict[str, Any] = {"mode": "hostSocket", "hostSocket": {"socketGroupId": 999}}


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def main_service(objs: list[Obj]) -> Obj:
    """The Service callers use (the fleet's headless Service is the other one)."""
    [service] = [s for s in objects_of_kind(objs, "Service") if s["metadata"]["name"] == "imagesvc"]
    return service


@pytest.mark.parametrize("values", [{}, HOST_SOCKET], ids=["dind", "hostSocket"])
def test_service_ports_are_named_and_target_the_container_ports(values: dict[str, Any]) -> None:
    objs = render(values)
    service = one_of_kind(objs, "Service")
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert set(ports) == {"grpc", "http", "metrics"}
    container = workload(objs)["spec"]["template"]["spec"]["containers"][0]
    container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    # Every targetPort names a port of the app container.
    for port in ports.values():
        assert port["targetPort"] in container_ports
        assert port["protocol"] == "TCP"
    assert ports["grpc"]["targetPort"] == "grpc"
    assert ports["http"]["targetPort"] == "http"
    # /metrics is on the HTTP port: the metrics port targets it.
    assert ports["metrics"]["targetPort"] == "http"
    assert ports["grpc"]["appProtocol"] == "grpc"
    assert ports["http"]["appProtocol"] == "http"
    # Distinct Service port numbers (the API server refuses duplicates).
    assert len({p["port"] for p in ports.values()}) == 3


def test_service_app_protocol_is_https_with_tls() -> None:
    service = one_of_kind(render({"tls": {"enabled": True, "existingSecret": "t"}}), "Service")
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["http"]["appProtocol"] == "https"
    assert ports["metrics"]["appProtocol"] == "https"


def test_service_port_numbers_follow_the_values() -> None:
    service = one_of_kind(
        render({"service": {"ports": {"grpc": 443, "http": 80, "metrics": 9100}}}), "Service"
    )
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {
        "grpc": 443,
        "http": 80,
        "metrics": 9100,
    }


def test_internal_traffic_policy_is_local_for_the_daemonset() -> None:
    assert one_of_kind(render(), "Service")["spec"]["internalTrafficPolicy"] == "Cluster"
    assert one_of_kind(render(HOST_SOCKET), "Service")["spec"]["internalTrafficPolicy"] == "Local"
    override = {**HOST_SOCKET, "service": {"internalTrafficPolicy": "Cluster"}}
    assert one_of_kind(render(override), "Service")["spec"]["internalTrafficPolicy"] == "Cluster"


@pytest.mark.parametrize("scenario", scenario_files(), ids=lambda p: p.name)
def test_labels_and_selectors_are_consistent(scenario: Path) -> None:
    objs = render(values_files=[scenario])
    release_objs = manifests(objs)
    for obj in objs:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "imagesvc"
        assert labels["app.kubernetes.io/instance"] == "imagesvc"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "imagesvc-0.1.0"
        assert labels["app.kubernetes.io/version"] == "0.1.0"
    work = workload(objs)
    selector = work["spec"]["selector"]["matchLabels"]
    pod_labels = work["spec"]["template"]["metadata"]["labels"]
    assert matches(selector, pod_labels)
    # Every Service (the main one; the fleet's headless one) routes to the server pods.
    for service in objects_of_kind(objs, "Service"):
        assert matches(service["spec"]["selector"], pod_labels)
        assert service["spec"]["selector"] == selector
    for kind in ("PodDisruptionBudget",):
        for obj in objects_of_kind(release_objs, kind):
            assert obj["spec"]["selector"]["matchLabels"] == selector
    for policy in objects_of_kind(release_objs, "NetworkPolicy"):
        assert policy["spec"]["podSelector"]["matchLabels"] == selector
    for monitor in objects_of_kind(objs, "ServiceMonitor"):
        assert matches(
            monitor["spec"]["selector"]["matchLabels"], main_service(objs)["metadata"]["labels"]
        )
    # The test pod is no server pod: no controller adopts it, the Service does not route to it.
    for pod in objects_of_kind(objs, "Pod"):
        assert hook(pod) == "test"
        assert not matches(selector, pod["metadata"]["labels"])
    # Everything in the release namespace.
    for obj in objs:
        assert obj["metadata"]["namespace"] == "imagesvc", obj["kind"]


def test_common_labels_reach_every_object() -> None:
    objs = render({"commonLabels": {"team": "platform"}, "serviceMonitor": {"enabled": True}})
    for obj in objs:
        assert obj["metadata"]["labels"]["team"] == "platform", obj["kind"]


def test_service_account_mounts_no_api_token() -> None:
    objs = render()
    account = one_of_kind(objs, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    spec = workload(objs)["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == account["metadata"]["name"]
    assert spec["automountServiceAccountToken"] is False
    objs = render({"serviceAccount": {"create": False, "name": "existing"}})
    assert objects_of_kind(objs, "ServiceAccount") == []
    assert workload(objs)["spec"]["template"]["spec"]["serviceAccountName"] == "existing"


def test_pod_disruption_budget() -> None:
    pdb = one_of_kind(
        render({"replicaCount": 3, "podDisruptionBudget": {"maxUnavailable": 2}}),
        "PodDisruptionBudget",
    )
    assert pdb["spec"]["maxUnavailable"] == 2


def test_generated_tokens_secret_holds_the_hash_of_its_admin_token() -> None:
    secret = one_of_kind(render(), "Secret")
    data = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    token = data["admin-token"]
    assert len(token) >= 32
    tokens = json.loads(data["tokens.json"])
    assert tokens["tokens"] == [
        {
            "identity": "admin",
            "roles": ["admin"],
            "sha256": hashlib.sha256(token.encode()).hexdigest(),
            "comment": tokens["tokens"][0]["comment"],
        }
    ]
    # The tokens file the pods read holds no plain token.
    assert token not in data["tokens.json"]


def test_generated_tokens_file_is_one_the_server_loads() -> None:
    from imagesvc.core.credential_files import parse_tokens

    values = {"auth": {"tokens": {"generated": {"identity": "ops", "roles": ["viewer", "puller"]}}}}
    data = one_of_kind(render(values), "Secret")["data"]
    table = parse_tokens(base64.b64decode(data["tokens.json"]))
    entry = table.find(base64.b64decode(data["admin-token"]).decode())
    assert entry is not None
    assert (entry.identity, entry.roles) == ("ops", frozenset({"viewer", "puller"}))
    assert table.plain_tokens == 0


def test_no_generated_secret_with_existing_or_without_tokens() -> None:
    assert objects_of_kind(render({"auth": {"tokens": {"existingSecret": "s"}}}), "Secret") == []
    values = {
        "auth": {"tokens": {"enabled": False}, "insecureAllowUnauthenticated": True},
        "server": {"listenHost": "$(POD_IP)"},
    }
    assert objects_of_kind(render(values), "Secret") == []


# ----------------------------------------------------------------------------- NetworkPolicy


def test_network_policies_are_on_by_default_and_can_be_turned_off() -> None:
    policies = objects_of_kind(render(), "NetworkPolicy")
    assert [hook(p) for p in policies] == [None, "test"]
    assert objects_of_kind(render({"networkPolicy": {"enabled": False}}), "NetworkPolicy") == []


def server_policy(values: dict[str, Any]) -> Obj:
    [policy] = [p for p in objects_of_kind(render(values), "NetworkPolicy") if not hook(p)]
    return policy


def test_helm_test_pod_policy_allows_only_dns_and_the_grpc_port() -> None:
    objs = render()
    [policy] = [p for p in objects_of_kind(objs, "NetworkPolicy") if hook(p) == "test"]
    [test_pod] = objects_of_kind(objs, "Pod")
    assert matches(policy["spec"]["podSelector"]["matchLabels"], test_pod["metadata"]["labels"])
    assert "ingress" not in policy["spec"]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    dns, server = policy["spec"]["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    pod_labels = workload(objs)["spec"]["template"]["metadata"]["labels"]
    assert matches(server["to"][0]["podSelector"]["matchLabels"], pod_labels)
    assert server["ports"] == [{"port": 50051, "protocol": "TCP"}]


def test_network_policy_ingress_only_to_the_named_ports_from_the_peers() -> None:
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ci"}}}
    objs = render({"networkPolicy": {"ingress": {"from": [peer]}}})
    policy = server_policy({"networkPolicy": {"ingress": {"from": [peer]}}})["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    [rule] = policy["ingress"]
    assert {(p["port"], p["protocol"]) for p in rule["ports"]} == {("grpc", "TCP"), ("http", "TCP")}
    assert rule["from"][0] == peer
    # The helm test pod may connect too.
    [test_pod] = objects_of_kind(objs, "Pod")
    test_peer = rule["from"][1]["podSelector"]["matchLabels"]
    assert matches(test_peer, test_pod["metadata"]["labels"])
    # Without peers: the ports, from anywhere.
    [open_rule] = server_policy({})["spec"]["ingress"]
    assert "from" not in open_rule


def egress_ports(policy: Obj) -> list[set[tuple[Any, str]]]:
    return [
        {(p["port"], p.get("protocol", "TCP")) for p in rule.get("ports", [])}
        for rule in policy["spec"]["egress"]
    ]


def test_network_policy_egress_dns_and_registries_in_dind_mode() -> None:
    policy = server_policy({})
    rules = egress_ports(policy)
    assert {(53, "UDP"), (53, "TCP")} == rules[0]
    assert policy["spec"]["egress"][0]["to"][0]["podSelector"]["matchLabels"] == {
        "k8s-app": "kube-dns"
    }
    assert {(443, "TCP"), (80, "TCP")} in rules


def test_network_policy_no_registry_egress_for_the_node_daemon() -> None:
    policy = server_policy(HOST_SOCKET)
    assert egress_ports(policy) == [{(53, "UDP"), (53, "TCP")}]
    extra = {"ports": [{"port": 4317, "protocol": "TCP"}]}
    policy = server_policy({**HOST_SOCKET, "networkPolicy": {"egress": {"extraRules": [extra]}}})
    assert policy["spec"]["egress"][-1] == extra


def allows(rule: Obj, address: str, port: int) -> bool:
    """Whether an egress rule lets the pod connect to a cluster-external address:port
    (pod and namespace selectors match pods only; a rule without `to` matches anything)."""
    ports = rule.get("ports")
    if ports and not any(p["port"] == port for p in ports):
        return False
    peers = rule.get("to")
    if not peers:
        return True
    ip = ipaddress.ip_address(address)
    for peer in peers:
        block = peer.get("ipBlock")
        if block is None:
            continue
        network = ipaddress.ip_network(block["cidr"])
        excepted = any(ip in ipaddress.ip_network(e) for e in block.get("except", []))
        if ip.version == network.version and ip in network and not excepted:
            return True
    return False


# The link-local metadata services of AWS, GCP, Azure and OpenStack (IPv4), AWS (IPv6).
METADATA = ("169.254.169.254", "fd00:ec2::254")


def test_registry_egress_keeps_builds_away_from_the_cloud_metadata_service() -> None:
    # Builds' RUN steps run in the pod's network (nested containers NATed by the in-pod
    # daemon): a caller with the builder role must not read the node's cloud credentials.
    rules = server_policy({})["spec"]["egress"]
    for address in METADATA:
        for port in (80, 443):
            assert not any(allows(rule, address, port) for rule in rules), (address, port)
    # Registries anywhere else, outside the cluster or in it (a pod peer: some CNIs match
    # ipBlocks against cluster-external addresses only).
    for address in ("203.0.113.7", "2001:db8::7", "10.1.2.3"):
        assert any(allows(rule, address, 443) for rule in rules), address
        assert any(allows(rule, address, 80) for rule in rules), address
    [registries] = [r for r in rules if {p["port"] for p in r["ports"]} == {443, 80}]
    assert {"namespaceSelector": {}} in registries["to"]


def test_default_pod_disruption_budget_never_blocks_a_drain() -> None:
    # replicaCount 1: a budget of minAvailable 1 (or maxUnavailable 0) would stop every
    # `kubectl drain` of the node forever.
    [pdb] = objects_of_kind(render(), "PodDisruptionBudget")
    assert "minAvailable" not in pdb["spec"]
    assert pdb["spec"]["maxUnavailable"] == 1
    pod_labels = workload(render())["spec"]["template"]["metadata"]["labels"]
    assert matches(pdb["spec"]["selector"]["matchLabels"], pod_labels)


def test_pod_disruption_budget_lets_drains_evict_pods_that_serve_nobody() -> None:
    # A pod that is not ready (its Docker daemon down) serves nobody; with the default
    # policy (IfHealthyBudget) two such replicas would block every drain of their nodes.
    [pdb] = objects_of_kind(render({"replicaCount": 2}), "PodDisruptionBudget")
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
