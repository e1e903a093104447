"""The chart's fleet (hostSocket mode): the headless Service the pods find each other
through, the settings it gives the server (peers, node name, address, credentials), the
NetworkPolicy rules between the pods, and the kept-images ConfigMap."""

from __future__ import annotations

import base64
from typing import Any

import helm_python
import kubernetes_validate
import pytest

from imagesvc.config import Settings
from imagesvc.core.access import FLEET_REQUIRED_ROLE, Role, authorize
from imagesvc.core.credential_files import parse_tokens
from imagesvc.core.errors import PermissionDeniedError
from imagesvc.core.fleet_discovery import DnsTarget, parse_peers
from imagesvc.core.identity import Identity
from imagesvc.server_fleet import fleet_address, node_name
from tests.unit.helm.chart import (
    NAMESPACE,
    Obj,
    deep_merge,
    hook,
    minimum_kube_version,
    objects_of_kind,
    one_of_kind,
    render,
)
from tests.unit.helm.test_rendered_notes import notes
from tests.unit.helm.test_rendered_workload import (
    SAMPLE_NODE_NAME,
    SAMPLE_POD_IP,
    app,
    env,
    mounts,
    pod_spec,
    render_error,
    volumes,
)

pytestmark = pytest.mark.chart

HOST_SOCKET: dict[str, Any] = {"mode": "hostSocket", "hostSocket": {"socketGroupId": 999}}
FLEET: dict[str, Any] = deep_merge(HOST_SOCKET, {"fleet": {"enabled": True}})
TLS: dict[str, Any] = {"tls": {"enabled": True, "existingSecret": "server-tls"}}
MTLS_ALONE: dict[str, Any] = {
    "auth": {"tokens": {"enabled": False}, "clientCertRoles": {"existingSecret": "roles"}},
    "tls": {"enabled": True, "existingSecret": "server-tls", "clientCA": {"existingSecret": "ca"}},
    "tests": {"tls": {"clientSecret": "test-client"}},
}
KEPT = ["registry.example.org/base/runtime:2.1", "registry.example.org/tools@sha256:" + "ab" * 32]


def fleet(*overrides: dict[str, Any]) -> list[Obj]:
    values = FLEET
    for override in overrides:
        values = deep_merge(values, override)
    return render(values)


def fleet_service(objs: list[Obj]) -> Obj:
    [service] = [
        s for s in objects_of_kind(objs, "Service") if s["metadata"]["name"].endswith("-fleet")
    ]
    return service


def server_policy(objs: list[Obj]) -> Obj:
    [policy] = [p for p in objects_of_kind(objs, "NetworkPolicy") if not hook(p)]
    return policy


def server_pod_selector(objs: list[Obj]) -> dict[str, str]:
    [daemonset] = objects_of_kind(objs, "DaemonSet")
    selector: dict[str, str] = daemonset["spec"]["selector"]["matchLabels"]
    return selector


# ----------------------------------------------------------------------------- off, refused


def test_the_fleet_is_off_by_default() -> None:
    objs = render(HOST_SOCKET)
    assert [s["metadata"]["name"] for s in objects_of_kind(objs, "Service")] == ["imagesvc"]
    variables = env(objs)
    assert not [name for name in variables if "FLEET" in name or name == "NODE_NAME"]
    assert "fleet-token" not in volumes(pod_spec(objs))
    assert "FleetService" not in notes(HOST_SOCKET)


def test_the_fleet_in_dind_mode_fails_the_render() -> None:
    error = render_error({"fleet": {"enabled": True}})
    assert "fleet.enabled needs mode hostSocket" in error
    error = render_error({"fleet": {"keepImages": KEPT}})
    assert "fleet.keepImages needs mode hostSocket" in error


def test_the_schema_refuses_a_fleet_token_below_the_fleet_role() -> None:
    values = deep_merge(FLEET, {"fleet": {"token": {"generated": {"roles": ["pusher"]}}}})
    with pytest.raises(helm_python.HelmValuesError):
        render(values)
    with pytest.raises(helm_python.HelmValuesError):
        render(deep_merge(FLEET, {"fleet": {"parallelism": 0}}))


# ----------------------------------------------------------------------------- discovery


def test_the_headless_service_publishes_the_ready_daemonset_pods() -> None:
    objs = fleet({"serviceMonitor": {"enabled": True}})
    service = fleet_service(objs)
    spec = service["spec"]
    assert spec["clusterIP"] == "None"
    assert spec["publishNotReadyAddresses"] is False
    assert spec["selector"] == server_pod_selector(objs)
    [port] = spec["ports"]
    container_ports = {p["name"]: p["containerPort"] for p in app(objs)["ports"]}
    # Peers dial the pod address at the port of the DNS name: the container's gRPC port.
    assert port["targetPort"] == "grpc"
    assert port["port"] == container_ports["grpc"] == 50051
    # Scraped once, through the main Service: the ServiceMonitor does not select it.
    monitor_selector = one_of_kind(objs, "ServiceMonitor")["spec"]["selector"]["matchLabels"]
    labels = service["metadata"]["labels"]
    assert any(labels.get(key) != value for key, value in monitor_selector.items())


@pytest.mark.parametrize(
    ("values", "name", "port"),
    [
        ({}, "imagesvc-fleet.imagesvc.svc.cluster.local", 50051),
        (
            {"clusterDomain": "corp.example", "server": {"grpcPort": 7443}},
            "imagesvc-fleet.imagesvc.svc.corp.example",
            7443,
        ),
        ({"namespaceOverride": "nodes"}, "imagesvc-fleet.nodes.svc.cluster.local", 50051),
    ],
)
def test_the_peers_are_the_headless_services_dns_name(
    values: dict[str, Any], name: str, port: int
) -> None:
    objs = fleet(values)
    settings = Settings.from_env(env(objs))
    assert parse_peers(settings.fleet_peers) == DnsTarget(name, port, None)
    service = fleet_service(objs)
    assert name.startswith(f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.")
    assert service["spec"]["ports"][0]["port"] == port


def test_node_name_and_address_come_from_the_downward_api(monkeypatch: pytest.MonkeyPatch) -> None:
    variables = env(fleet())
    settings = Settings.from_env(variables)
    assert node_name(settings) == SAMPLE_NODE_NAME
    # On 0.0.0.0 the server takes POD_IP: its own address is what the DNS name answers.
    monkeypatch.setenv("POD_IP", variables["POD_IP"])
    assert fleet_address(settings, 50051) == f"{SAMPLE_POD_IP}:50051"
    # Each variable once, even when listenHost uses $(POD_IP) as well.
    names = [e["name"] for e in app(fleet({"server": {"listenHost": "$(POD_IP)"}}))["env"]]
    assert names.count("POD_IP") == 1


def test_fleet_settings_follow_the_values() -> None:
    settings = Settings.from_env(
        env(fleet({"fleet": {"nodeTimeoutSeconds": 2.5, "parallelism": 4}}))
    )
    assert (settings.fleet_node_timeout_seconds, settings.fleet_parallelism) == (2.5, 4)
    defaults = Settings.from_env(env(fleet()))
    assert defaults.fleet_node_timeout_seconds == Settings().fleet_node_timeout_seconds
    assert defaults.fleet_parallelism == Settings().fleet_parallelism


# ----------------------------------------------------------------------------- credentials


def secret_data(objs: list[Obj]) -> dict[str, str]:
    secret = one_of_kind(objs, "Secret")
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def test_the_generated_fleet_token_has_the_fleet_role_and_only_it_is_mounted() -> None:
    objs = fleet()
    data = secret_data(objs)
    table = parse_tokens(data["tokens.json"].encode())
    fleet_entry = table.find(data["fleet-token"])
    assert fleet_entry is not None
    assert fleet_entry.identity == "fleet"
    assert fleet_entry.roles == frozenset({"fleet"})
    # Every peer lets it call each FleetService RPC of the fleet role (the peers' tokens
    # file is this one), and refuses it the destructive ones, which need admin.
    identity = Identity(fleet_entry.identity, fleet_entry.roles, "token")
    for rpc, required in FLEET_REQUIRED_ROLE.items():
        if required is Role.FLEET:
            assert authorize(rpc, identity, None) == identity
        else:
            with pytest.raises(PermissionDeniedError, match="needs the admin role"):
                authorize(rpc, identity, None)
    # The admin token stays what it was.
    admin = table.find(data["admin-token"])
    assert admin is not None
    assert admin.roles == frozenset({"admin"})
    assert data["fleet-token"] != data["admin-token"]
    # The pod mounts the fleet token alone, as a directory, and the server reads it there.
    volume = volumes(pod_spec(objs))["fleet-token"]["secret"]
    assert volume["secretName"] == one_of_kind(objs, "Secret")["metadata"]["name"]
    assert volume["items"] == [{"key": "fleet-token", "path": "token"}]
    mount = mounts(app(objs))["fleet-token"]
    assert mount["readOnly"] is True
    assert "subPath" not in mount
    assert env(objs)["IMAGESVC_FLEET_TOKEN_FILE"] == f"{mount['mountPath']}/token"
    # No fleet, no fleet token.
    assert "fleet-token" not in secret_data(render(HOST_SOCKET))


def test_the_generated_fleet_token_identity_and_roles_follow_the_values() -> None:
    generated = {"identity": "peers", "roles": ["admin"]}
    data = secret_data(fleet({"fleet": {"token": {"generated": generated}}}))
    entry = parse_tokens(data["tokens.json"].encode()).find(data["fleet-token"])
    assert entry is not None
    assert (entry.identity, entry.roles) == ("peers", frozenset({"admin"}))


def test_existing_tokens_need_an_existing_fleet_token() -> None:
    tokens = {"auth": {"tokens": {"existingSecret": "tokens"}}}
    assert "fleet.token.existingSecret" in render_error(deep_merge(FLEET, tokens))
    objs = fleet(tokens, {"fleet": {"token": {"existingSecret": "fleet-tok", "key": "t"}}})
    assert objects_of_kind(objs, "Secret") == []
    volume = volumes(pod_spec(objs))["fleet-token"]["secret"]
    assert volume["secretName"] == "fleet-tok"
    assert volume["items"] == [{"key": "t", "path": "token"}]
    # A fleet token of your own beside the generated tokens file would be unknown to it.
    error = render_error(deep_merge(FLEET, {"fleet": {"token": {"existingSecret": "fleet-tok"}}}))
    assert "fleet.token.existingSecret needs auth.tokens.existingSecret" in error


def test_peers_are_called_over_tls_with_the_ca_of_the_server_certificates() -> None:
    objs = fleet(TLS)
    variables = env(objs)
    volume = volumes(pod_spec(objs))["fleet-ca"]["secret"]
    # Default: the server's own Secret, where cert-manager puts ca.crt.
    assert volume["secretName"] == "server-tls"
    assert volume["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    mount = mounts(app(objs))["fleet-ca"]
    assert variables["IMAGESVC_FLEET_TLS_CA_FILE"] == f"{mount['mountPath']}/ca.crt"
    objs = fleet(TLS, {"fleet": {"tls": {"caSecret": "server-ca", "caKey": "root.pem"}}})
    volume = volumes(pod_spec(objs))["fleet-ca"]["secret"]
    assert (volume["secretName"], volume["items"]) == (
        "server-ca",
        [{"key": "root.pem", "path": "ca.crt"}],
    )
    # Peers' certificates are checked against the pod IP unless a name is given.
    assert "IMAGESVC_FLEET_TLS_SERVER_NAME" not in variables
    named = fleet(TLS, {"fleet": {"tls": {"serverName": "imagesvc-fleet.imagesvc.svc"}}})
    settings = Settings.from_env(env(named))
    assert settings.fleet_tls_server_name == "imagesvc-fleet.imagesvc.svc"
    # Without TLS, plain gRPC between the pods.
    assert "IMAGESVC_FLEET_TLS_CA_FILE" not in env(fleet())
    assert "fleet-ca" not in volumes(pod_spec(fleet()))


def test_under_mutual_tls_alone_the_pods_certificate_names_them() -> None:
    without_roles = deep_merge(MTLS_ALONE, {"auth": {"clientCertRoles": {"existingSecret": ""}}})
    assert "auth.clientCertRoles.existingSecret" in render_error(deep_merge(FLEET, without_roles))
    objs = fleet(MTLS_ALONE)
    settings = Settings.from_env(env(objs))
    # Its own certificate goes to the peers as client certificate (server_fleet.py does
    # so whenever a client CA is set); no token.
    assert settings.tls_client_ca_file
    assert settings.tls_cert_file
    assert settings.tls_key_file
    assert settings.fleet_tls_ca_file
    assert settings.fleet_token_file is None
    assert "fleet-token" not in volumes(pod_spec(objs))


# ----------------------------------------------------------------------------- NetworkPolicy


def allows_peers(rule: Obj, selector: dict[str, str]) -> bool:
    """Whether an ingress or egress rule names the server pods as its peers."""
    peers: list[Obj] = rule.get("from") or rule.get("to") or []
    return any(p.get("podSelector", {}).get("matchLabels") == selector for p in peers)


def test_network_policy_lets_the_pods_reach_each_others_grpc_port() -> None:
    only_deploy = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "deploy"}}}
    objs = fleet({"networkPolicy": {"ingress": {"from": [only_deploy]}}})
    selector = server_pod_selector(objs)
    spec = server_policy(objs)["spec"]
    [ingress] = [rule for rule in spec["ingress"] if allows_peers(rule, selector)]
    assert ingress["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    [egress] = [rule for rule in spec["egress"] if allows_peers(rule, selector)]
    assert egress["ports"] == [{"port": 50051, "protocol": "TCP"}]
    # The pods' selector without a namespace selector: the release's namespace only.
    assert all(set(peer) == {"podSelector"} for peer in ingress["from"] + egress["to"])
    objs = fleet({"server": {"grpcPort": 7443}})
    [egress] = [r for r in server_policy(objs)["spec"]["egress"] if allows_peers(r, selector)]
    assert egress["ports"] == [{"port": 7443, "protocol": "TCP"}]
    # Without the fleet, no traffic between the pods.
    spec = server_policy(render(HOST_SOCKET))["spec"]
    assert not [r for r in spec["ingress"] + spec["egress"] if allows_peers(r, selector)]


# ----------------------------------------------------------------------------- kept images


def kept_images_file(objs: list[Obj]) -> list[str]:
    """The references the server reads: one a line, `#` comments and blank lines left out."""
    [config_map] = objects_of_kind(objs, "ConfigMap")
    lines = config_map["data"]["images"].splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


@pytest.mark.parametrize("with_fleet", [True, False], ids=["fleet", "no-fleet"])
def test_kept_images_are_a_config_map_mounted_as_a_directory(with_fleet: bool) -> None:
    values = deep_merge(FLEET if with_fleet else HOST_SOCKET, {"fleet": {"keepImages": KEPT}})
    objs = render(values)
    assert kept_images_file(objs) == KEPT
    [config_map] = objects_of_kind(objs, "ConfigMap")
    volume = volumes(pod_spec(objs))["keep-images"]["configMap"]
    assert volume["name"] == config_map["metadata"]["name"]
    assert volume["items"] == [{"key": "images", "path": "images"}]
    mount = mounts(app(objs))["keep-images"]
    # A directory, never subPath: an edited list reaches the running pods.
    assert mount["readOnly"] is True
    assert "subPath" not in mount
    assert env(objs)["IMAGESVC_KEEP_IMAGES_FILE"] == f"{mount['mountPath']}/images"
    for obj in (config_map, *objects_of_kind(objs, "DaemonSet")):
        kubernetes_validate.validate(obj, minimum_kube_version(), strict=True)


def test_no_kept_images_no_setting() -> None:
    objs = fleet()
    assert objects_of_kind(objs, "ConfigMap") == []
    assert "IMAGESVC_KEEP_IMAGES_FILE" not in env(objs)
    assert "keep-images" not in volumes(pod_spec(objs))


def test_the_schema_refuses_a_kept_image_that_is_no_reference_line() -> None:
    for bad in ("two words", "# comment", ""):
        with pytest.raises(helm_python.HelmValuesError):
            render(deep_merge(FLEET, {"fleet": {"keepImages": [bad]}}))


# ----------------------------------------------------------------------------- NOTES.txt


def test_notes_say_how_to_call_the_fleet() -> None:
    text = notes(FLEET)
    assert "imagesvc.v1.FleetService/ListNodes" in text
    assert "imagesvc.v1.FleetService/FindImage" in text
    assert "dns:///imagesvc-fleet.imagesvc.svc.cluster.local:50051" in text
    assert "fleet role" in text
    assert "pod IPs" in notes(deep_merge(FLEET, TLS))
    kept = notes(deep_merge(HOST_SOCKET, {"fleet": {"keepImages": KEPT}}))
    assert "keeps 2 image(s)" in kept
    assert NAMESPACE in text
