"""The chart's workload as rendered: the mode switch (Deployment with a Docker-in-Docker
sidecar, or DaemonSet on the node's socket directory), containers, ports, probes,
security contexts, Secrets mounted as directories, and the server settings the values
turn into."""

from __future__ import annotations

import re
from typing import Any

import helm_python
import pytest

from tests.unit.helm.chart import (
    CHART_DIR,
    Obj,
    objects_of_kind,
    render,
    scenario_files,
    workload,
)

pytestmark = pytest.mark.chart

HOST_SOCKET: dict[str, Any] = {"mode": "hostSocket", "hostSocket": {"socketGroupId": 999}}
TLS: dict[str, Any] = {"tls": {"enabled": True, "existingSecret": "server-tls"}}
MTLS: dict[str, Any] = {
    "tls": {
        "enabled": True,
        "existingSecret": "server-tls",
        "clientCA": {"existingSecret": "client-ca"},
    },
    "tests": {"tls": {"clientSecret": "test-client"}},
}


def pod_spec(objs: list[Obj]) -> Obj:
    spec: Obj = workload(objs)["spec"]["template"]["spec"]
    return spec


def container(spec: Obj, name: str) -> Obj:
    found: list[Obj] = [c for c in spec.get("containers", []) if c["name"] == name]
    assert len(found) == 1, name
    return found[0]


def app(objs: list[Obj]) -> Obj:
    return container(pod_spec(objs), "imagesvc")


# What the kubelet would give the downward API's fields in these tests: the pod's address
# (POD_IP) and its node's name (NODE_NAME).
SAMPLE_POD_IP = "10.244.3.17"
SAMPLE_NODE_NAME = "node-a"
POD_IP_SOURCE = {"fieldRef": {"fieldPath": "status.podIP"}}
NODE_NAME_SOURCE = {"fieldRef": {"fieldPath": "spec.nodeName"}}
DOWNWARD_API = {
    "POD_IP": (POD_IP_SOURCE, SAMPLE_POD_IP),
    "NODE_NAME": (NODE_NAME_SOURCE, SAMPLE_NODE_NAME),
}


def env(objs: list[Obj]) -> dict[str, str]:
    """The app container's environment, name -> value, as the process sees it: literal
    values, POD_IP and NODE_NAME from the downward API (SAMPLE_POD_IP, SAMPLE_NODE_NAME),
    `$(VAR)` of an earlier variable expanded as the kubelet does."""
    values: dict[str, str] = {}
    for e in app(objs)["env"]:
        if "value" in e:
            values[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: values.get(m[1], m[0]), e["value"])
        else:
            source, sample = DOWNWARD_API[e["name"]]
            assert e["valueFrom"] == source, e
            values[e["name"]] = sample
    return values


def volumes(spec: Obj) -> dict[str, Obj]:
    return {v["name"]: v for v in spec["volumes"]}


def mounts(c: Obj) -> dict[str, Obj]:
    return {m["name"]: m for m in c.get("volumeMounts", [])}


def render_error(values: dict[str, Any]) -> str:
    with pytest.raises(helm_python.HelmError) as error:
        render(values)
    return str(error.value)


# ----------------------------------------------------------------------------- modes


def test_default_mode_is_a_deployment_with_a_native_dind_sidecar() -> None:
    objs = render()
    assert objects_of_kind(objs, "DaemonSet") == []
    deployment = workload(objs)
    assert deployment["kind"] == "Deployment"
    spec = pod_spec(objs)
    [dind] = spec["initContainers"]
    assert dind["name"] == "dind"
    # A native sidecar: starts before the app, stops after it.
    assert dind["restartPolicy"] == "Always"
    assert dind["image"].startswith("docker:")
    assert dind["image"].endswith("-dind")
    assert "startupProbe" in dind
    assert [c["name"] for c in spec["containers"]] == ["imagesvc"]


def test_dind_shares_the_socket_directory_through_an_empty_dir() -> None:
    spec = pod_spec(render())
    dind = spec["initContainers"][0]
    vols = volumes(spec)
    assert vols["docker-socket"] == {"name": "docker-socket", "emptyDir": {}}
    assert mounts(dind)["docker-socket"]["mountPath"] == "/var/run"
    assert "--host=unix:///var/run/docker.sock" in dind["args"]
    socket_dir = mounts(container(spec, "imagesvc"))["docker-socket"]
    assert socket_dir["readOnly"] is True
    assert "subPath" not in socket_dir
    assert env(render())["DOCKER_HOST"] == f"unix://{socket_dir['mountPath']}/docker.sock"
    # The daemon's data on its own emptyDir, bounded.
    assert mounts(dind)["docker-data"]["mountPath"] == "/var/lib/docker"
    assert vols["docker-data"]["emptyDir"] == {"sizeLimit": "20Gi"}


def test_dind_data_root_can_be_an_existing_claim() -> None:
    objs = render({"dind": {"dataVolume": {"existingClaim": "docker-data"}}})
    assert volumes(pod_spec(objs))["docker-data"] == {
        "name": "docker-data",
        "persistentVolumeClaim": {"claimName": "docker-data"},
    }
    # Two daemons must never share a data root: no surge pod during a rollout.
    assert workload(objs)["spec"]["strategy"] == {"type": "Recreate"}
    assert "strategy" not in workload(render())["spec"]


def test_only_the_dind_sidecar_is_privileged() -> None:
    spec = pod_spec(render())
    dind = spec["initContainers"][0]
    assert dind["securityContext"]["privileged"] is True
    for c in spec["containers"]:
        assert c["securityContext"].get("privileged") is not True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False


def test_dind_socket_group_is_the_apps_supplementary_group() -> None:
    objs = render({"dind": {"socketGroupId": 4242}})
    spec = pod_spec(objs)
    assert "--group=4242" in spec["initContainers"][0]["args"]
    assert spec["securityContext"]["supplementalGroups"] == [4242]


def test_dind_extra_args_reach_dockerd_after_the_chart_flags() -> None:
    args = pod_spec(render({"dind": {"extraArgs": ["--registry-mirror=https://m.example"]}}))[
        "initContainers"
    ][0]["args"]
    assert args[0] == "dockerd"
    assert args[-1] == "--registry-mirror=https://m.example"


def test_host_socket_mode_is_a_daemonset_mounting_the_socket_directory() -> None:
    objs = render(HOST_SOCKET)
    assert objects_of_kind(objs, "Deployment") == []
    assert workload(objs)["kind"] == "DaemonSet"
    spec = pod_spec(objs)
    assert "initContainers" not in spec
    assert volumes(spec)["docker-socket"]["hostPath"] == {"path": "/var/run", "type": "Directory"}
    mount = mounts(app(objs))["docker-socket"]
    assert mount["readOnly"] is True
    assert "subPath" not in mount
    assert env(objs)["DOCKER_HOST"] == f"unix://{mount['mountPath']}/docker.sock"
    # The node's socket group, no root.
    assert spec["securityContext"]["supplementalGroups"] == [999]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert not [c for c in spec["containers"] if c["securityContext"].get("privileged")]


def test_host_socket_directory_and_name_are_configurable() -> None:
    objs = render(
        {
            "mode": "hostSocket",
            "hostSocket": {"socketGroupId": 5, "directory": "/run/dk", "socketName": "d.sock"},
        }
    )
    assert volumes(pod_spec(objs))["docker-socket"]["hostPath"]["path"] == "/run/dk"
    assert env(objs)["DOCKER_HOST"].endswith("/d.sock")


def test_host_socket_mode_needs_the_socket_group() -> None:
    assert "hostSocket.socketGroupId" in render_error({"mode": "hostSocket"})


def test_no_pod_disruption_budget_for_the_daemonset() -> None:
    assert objects_of_kind(render(), "PodDisruptionBudget")
    assert objects_of_kind(render(HOST_SOCKET), "PodDisruptionBudget") == []
    assert (
        objects_of_kind(render({"podDisruptionBudget": {"enabled": False}}), "PodDisruptionBudget")
        == []
    )


# ----------------------------------------------------------------------------- ports, probes


def container_ports(c: Obj) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in c["ports"]}


def probe_port(c: Obj, probe: Obj) -> int:
    """A probe's port as a number (a named port resolved against the container's)."""
    action = probe.get("grpc") or probe.get("httpGet")
    assert action is not None, probe
    port = action["port"]
    return container_ports(c)[port] if isinstance(port, str) else int(port)


@pytest.mark.parametrize("values", [{}, HOST_SOCKET], ids=["dind", "hostSocket"])
def test_grpc_probes_on_the_numeric_grpc_port_without_tls(values: dict[str, Any]) -> None:
    c = app(render(values))
    ports = container_ports(c)
    assert ports == {"grpc": 50051, "http": 8080}
    for name in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = c[name]
        assert "httpGet" not in probe
        # Kubernetes' gRPC probe takes a number only.
        assert probe["grpc"]["port"] == ports["grpc"]
    assert c["livenessProbe"]["grpc"]["service"] == "liveness"
    assert c["startupProbe"]["grpc"]["service"] == "liveness"
    # Readiness follows the Docker daemon.
    assert c["readinessProbe"]["grpc"]["service"] == "imagesvc.v1.ImageService"


@pytest.mark.parametrize("tls", [TLS, MTLS], ids=["tls", "mtls"])
def test_https_probes_with_tls(tls: dict[str, Any]) -> None:
    c = app(render(tls))
    for name, path in (
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        probe = c[name]
        assert "grpc" not in probe, "the kubelet's gRPC probe speaks no TLS"
        assert probe["httpGet"]["scheme"] == "HTTPS"
        assert probe["httpGet"]["path"] == path
        assert probe_port(c, probe) == container_ports(c)["http"]


def test_ports_follow_the_values() -> None:
    objs = render({"server": {"grpcPort": 9000, "httpPort": 9001}})
    c = app(objs)
    assert container_ports(c) == {"grpc": 9000, "http": 9001}
    assert probe_port(c, c["livenessProbe"]) == 9000
    assert env(objs)["IMAGESVC_GRPC_ADDRESS"] == "0.0.0.0:9000"
    assert env(objs)["IMAGESVC_HTTP_ADDRESS"] == "0.0.0.0:9001"
    c = app(render({"server": {"httpPort": 9001}, **TLS}))
    assert probe_port(c, c["readinessProbe"]) == 9001


def test_ipv6_listen_host_is_bracketed() -> None:
    assert env(render({"server": {"listenHost": "::"}}))["IMAGESVC_GRPC_ADDRESS"] == "[::]:50051"


def test_probe_timings_follow_the_values() -> None:
    c = app(render({"probes": {"readiness": {"periodSeconds": 7, "failureThreshold": 4}}}))
    assert c["readinessProbe"]["periodSeconds"] == 7
    assert c["readinessProbe"]["failureThreshold"] == 4


# ----------------------------------------------------------------------------- security


RESTRICTED = {
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


@pytest.mark.parametrize("scenario", scenario_files(), ids=lambda p: p.name)
def test_app_container_is_restricted_in_every_scenario(scenario: Any) -> None:
    objs = render(values_files=[scenario])
    spec = pod_spec(objs)
    context = app(objs)["securityContext"]
    for key, value in RESTRICTED.items():
        assert context[key] == value, key
    assert isinstance(context["runAsUser"], int)
    assert context["runAsUser"] > 0
    assert isinstance(context["runAsGroup"], int)
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    assert "hostNetwork" not in spec
    assert "hostPID" not in spec
    # Privileged only the dind sidecar, hostPath only the socket directory.
    privileged = [
        c["name"]
        for c in spec.get("initContainers", []) + spec["containers"]
        if c.get("securityContext", {}).get("privileged")
    ]
    host_paths = [v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v]
    if workload(objs)["kind"] == "Deployment":
        assert privileged == ["dind"]
        assert host_paths == []
    else:
        assert privileged == []
        assert len(host_paths) == 1


@pytest.mark.parametrize("scenario", scenario_files(), ids=lambda p: p.name)
def test_every_container_has_resources_and_pinned_images(scenario: Any) -> None:
    spec = pod_spec(render(values_files=[scenario]))
    for c in spec.get("initContainers", []) + spec["containers"]:
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][kind]), (c["name"], kind)
        assert not c["image"].endswith(":latest")
        assert ":" in c["image"] or "@" in c["image"]
        assert c["imagePullPolicy"] in ("IfNotPresent", "Always")


def test_pull_policy_always_for_tags_if_not_present_for_digests() -> None:
    spec = pod_spec(render())
    assert container(spec, "imagesvc")["imagePullPolicy"] == "Always"
    assert spec["initContainers"][0]["imagePullPolicy"] == "Always"
    digest = "sha256:" + "b" * 64
    spec = pod_spec(render({"image": {"digest": digest}, "dind": {"image": {"digest": digest}}}))
    assert container(spec, "imagesvc")["imagePullPolicy"] == "IfNotPresent"
    assert spec["initContainers"][0]["imagePullPolicy"] == "IfNotPresent"
    spec = pod_spec(render({"image": {"pullPolicy": "Never"}}))
    assert container(spec, "imagesvc")["imagePullPolicy"] == "Never"


def test_images_by_digest() -> None:
    digest = "sha256:" + "a" * 64
    spec = pod_spec(render({"image": {"digest": digest}, "dind": {"image": {"digest": digest}}}))
    assert container(spec, "imagesvc")["image"] == f"imagesvc@{digest}"
    assert spec["initContainers"][0]["image"] == f"docker@{digest}"
    assert container(pod_spec(render()), "imagesvc")["image"] == "imagesvc:0.1.0"


def test_read_only_root_gets_a_bounded_tmp() -> None:
    objs = render({"tmpSizeLimit": "3Gi"})
    assert volumes(pod_spec(objs))["tmp"] == {"name": "tmp", "emptyDir": {"sizeLimit": "3Gi"}}
    assert mounts(app(objs))["tmp"]["mountPath"] == "/tmp"
    assert env(objs)["IMAGESVC_BUILD_SPOOL_DIR"] == "/tmp"


def test_termination_grace_exceeds_the_drain() -> None:
    objs = render()
    grace = pod_spec(objs)["terminationGracePeriodSeconds"]
    assert grace > float(env(objs)["IMAGESVC_SHUTDOWN_GRACE_SECONDS"])
    error = render_error({"server": {"shutdownGraceSeconds": 60}})
    assert "terminationGracePeriodSeconds" in error


# ----------------------------------------------------------------------------- Secrets


def secret_volume(spec: Obj, name: str) -> Obj:
    secret: Obj = volumes(spec)[name]["secret"]
    return secret


def test_generated_tokens_secret_is_mounted_as_a_directory() -> None:
    objs = render()
    spec = pod_spec(objs)
    secret = secret_volume(spec, "tokens")
    assert secret["secretName"] == "imagesvc-tokens"
    # Only the tokens file: the plain admin token stays out of the pod.
    assert secret["items"] == [{"key": "tokens.json", "path": "tokens.json"}]
    assert secret["defaultMode"] == 0o440
    mount = mounts(app(objs))["tokens"]
    assert "subPath" not in mount, "subPath mounts never see Secret updates"
    assert env(objs)["IMAGESVC_TOKENS_FILE"] == f"{mount['mountPath']}/tokens.json"


def test_existing_tokens_secret_is_used_and_none_generated() -> None:
    objs = render({"auth": {"tokens": {"existingSecret": "mine", "key": "t.json"}}})
    assert objects_of_kind(objs, "Secret") == []
    secret = secret_volume(pod_spec(objs), "tokens")
    assert secret["secretName"] == "mine"
    assert secret["items"] == [{"key": "t.json", "path": "tokens.json"}]


def test_tls_secrets_are_mounted_as_directories_and_configured() -> None:
    objs = render(
        {
            **MTLS,
            "auth": {"clientCertRoles": {"existingSecret": "roles", "key": "c.json"}},
        }
    )
    spec = pod_spec(objs)
    variables = env(objs)
    expected = {
        "tls": ("server-tls", {"tls.crt", "tls.key"}),
        "client-ca": ("client-ca", {"ca.crt"}),
        "client-cert-roles": ("roles", {"clients.json"}),
    }
    app_mounts = mounts(app(objs))
    for volume, (secret_name, paths) in expected.items():
        secret = secret_volume(spec, volume)
        assert secret["secretName"] == secret_name
        assert {item["path"] for item in secret["items"]} == paths
        mount = app_mounts[volume]
        assert "subPath" not in mount
        assert mount["readOnly"] is True
        for path in paths:
            assert f"{mount['mountPath']}/{path}" in variables.values()
    assert variables["IMAGESVC_TLS_CERT_FILE"].endswith("/tls.crt")
    assert variables["IMAGESVC_TLS_KEY_FILE"].endswith("/tls.key")
    assert variables["IMAGESVC_TLS_CLIENT_CA_FILE"].endswith("/ca.crt")
    assert variables["IMAGESVC_CLIENT_CERT_ROLES_FILE"].endswith("/clients.json")


def test_without_tls_no_tls_settings() -> None:
    variables = env(render())
    assert not [name for name in variables if name.startswith("IMAGESVC_TLS")]


def test_no_secret_is_mounted_with_sub_path_in_any_scenario() -> None:
    for scenario in scenario_files():
        objs = render(values_files=[scenario])
        spec = pod_spec(objs)
        for c in spec.get("initContainers", []) + spec["containers"]:
            assert not [m for m in c.get("volumeMounts", []) if "subPath" in m], scenario.name


# ----------------------------------------------------------------------------- auth rules


def test_unauthenticated_installs_are_refused_unless_explicitly_insecure() -> None:
    error = render_error({"auth": {"tokens": {"enabled": False}}})
    assert "auth.insecureAllowUnauthenticated" in error
    objs = render(
        {
            "auth": {"tokens": {"enabled": False}, "insecureAllowUnauthenticated": True},
            "server": {"listenHost": "$(POD_IP)"},
        }
    )
    variables = env(objs)
    assert variables["IMAGESVC_INSECURE_ALLOW_UNAUTHENTICATED"] == "true"
    assert "IMAGESVC_TOKENS_FILE" not in variables
    assert "tokens" not in volumes(pod_spec(objs))
    assert "IMAGESVC_INSECURE_ALLOW_UNAUTHENTICATED" not in env(render())


def test_mutual_tls_alone_is_authentication_enough() -> None:
    values = {**MTLS, "auth": {"tokens": {"enabled": False}}}
    variables = env(render(values))
    assert "IMAGESVC_TOKENS_FILE" not in variables
    assert "IMAGESVC_INSECURE_ALLOW_UNAUTHENTICATED" not in variables
    assert variables["IMAGESVC_TLS_CLIENT_CA_FILE"]


@pytest.mark.parametrize(
    ("values", "names"),
    [
        ({"tls": {"enabled": True}}, "tls.existingSecret"),
        ({"tls": {"clientCA": {"existingSecret": "ca"}}}, "tls.enabled"),
        ({"auth": {"clientCertRoles": {"existingSecret": "r"}}}, "tls.clientCA.existingSecret"),
    ],
)
def test_settings_the_server_would_refuse_fail_the_render(
    values: dict[str, Any], names: str
) -> None:
    assert names in render_error(values)


# ----------------------------------------------------------------------------- server settings


def test_server_settings_reflect_the_values() -> None:
    variables = env(
        render(
            {
                "server": {
                    "logLevel": "DEBUG",
                    "shutdownGraceSeconds": 12.5,
                    "dockerWorkers": 3,
                    "grpcMaxConnectionIdleSeconds": 0,
                    "grpcMaxConnectionAgeSeconds": 600.5,
                    "grpcMaxConnectionAgeGraceSeconds": 120,
                    "grpcMinPingIntervalSeconds": 10,
                    "httpHeaderTimeoutSeconds": 2.5,
                    "httpKeepaliveTimeoutSeconds": 30,
                    "httpMaxConnections": 5000,
                },
                "policy": {
                    "pullAllowlist": ["registry.example.org/base/**", "docker.io/library/*"],
                    "pushAllowlist": ["registry.example.org/team/*"],
                },
                "build": {
                    "contextMaxBytes": 1073741824,
                    "memoryBytes": 4294967296,
                    "cpus": 1.5,
                    "cpuShares": 512,
                    "cpusetCpus": "0-1",
                    "timeoutSeconds": 1800,
                    "argAllowlist": ["VERSION", "GIT_*"],
                    "argDenylist": ["none"],
                    "allowRemoteAdd": True,
                },
                "limits": {
                    "maxConcurrentPulls": 1,
                    "maxConcurrentPushes": 2,
                    "maxConcurrentBuilds": 0,
                    "transferStallTimeoutSeconds": 42.5,
                    "rateLimitPerSecond": 2.5,
                    "rateLimitBurst": 9,
                    "maxQueuedCalls": 0,
                    "maxQueueWaitSeconds": 7.5,
                },
            }
        )
    )
    expected = {
        "IMAGESVC_LOG_LEVEL": "DEBUG",
        "IMAGESVC_SHUTDOWN_GRACE_SECONDS": "12.5",
        "IMAGESVC_DOCKER_WORKERS": "3",
        "IMAGESVC_PULL_ALLOWLIST": "registry.example.org/base/**,docker.io/library/*",
        "IMAGESVC_PUSH_ALLOWLIST": "registry.example.org/team/*",
        "IMAGESVC_BUILD_CONTEXT_MAX_BYTES": "1073741824",
        "IMAGESVC_BUILD_MEMORY_BYTES": "4294967296",
        "IMAGESVC_BUILD_CPUS": "1.5",
        "IMAGESVC_BUILD_CPU_SHARES": "512",
        "IMAGESVC_BUILD_CPUSET_CPUS": "0-1",
        "IMAGESVC_BUILD_TIMEOUT_SECONDS": "1800",
        "IMAGESVC_BUILD_ARG_ALLOWLIST": "VERSION,GIT_*",
        "IMAGESVC_BUILD_ARG_DENYLIST": "none",
        "IMAGESVC_BUILD_ALLOW_REMOTE_ADD": "true",
        "IMAGESVC_MAX_CONCURRENT_PULLS": "1",
        "IMAGESVC_MAX_CONCURRENT_PUSHES": "2",
        "IMAGESVC_MAX_CONCURRENT_BUILDS": "0",
        "IMAGESVC_TRANSFER_STALL_TIMEOUT_SECONDS": "42.5",
        "IMAGESVC_RATE_LIMIT_PER_SECOND": "2.5",
        "IMAGESVC_RATE_LIMIT_BURST": "9",
        "IMAGESVC_MAX_QUEUED_CALLS": "0",
        "IMAGESVC_MAX_QUEUE_WAIT_SECONDS": "7.5",
        "IMAGESVC_GRPC_MAX_CONNECTION_IDLE_SECONDS": "0",
        "IMAGESVC_GRPC_MAX_CONNECTION_AGE_SECONDS": "600.5",
        "IMAGESVC_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS": "120",
        "IMAGESVC_GRPC_MIN_PING_INTERVAL_SECONDS": "10",
        "IMAGESVC_HTTP_HEADER_TIMEOUT_SECONDS": "2.5",
        "IMAGESVC_HTTP_KEEPALIVE_TIMEOUT_SECONDS": "30",
        "IMAGESVC_HTTP_MAX_CONNECTIONS": "5000",
    }
    assert {name: variables.get(name) for name in expected} == expected


def test_default_server_settings_are_the_servers_own_defaults() -> None:
    """The chart's defaults change nothing: each variable it sets holds the default of
    config.Settings, and the unset list settings stay unset (the server's defaults)."""
    from imagesvc.config import Settings

    variables = env(render())
    parsed = Settings.from_env(variables)
    defaults = Settings()
    for name in (
        "build_context_max_bytes",
        "build_memory_bytes",
        "build_cpus",
        "build_cpu_shares",
        "build_timeout_seconds",
        "build_allow_remote_add",
        "build_arg_denylist",
        "build_arg_allowlist",
        "pull_allowlist",
        "push_allowlist",
        "max_concurrent_pulls",
        "max_concurrent_pushes",
        "max_concurrent_builds",
        "transfer_stall_timeout_seconds",
        "rate_limit_per_second",
        "rate_limit_burst",
        "docker_workers",
        "max_message_bytes",
        "max_queued_calls",
        "max_queue_wait_seconds",
        "grpc_max_connection_idle_seconds",
        "grpc_max_connection_age_seconds",
        "grpc_max_connection_age_grace_seconds",
        "grpc_min_ping_interval_seconds",
        "http_header_timeout_seconds",
        "http_keepalive_timeout_seconds",
        "http_max_connections",
        "shutdown_grace_seconds",
        "log_level",
    ):
        assert getattr(parsed, name) == getattr(defaults, name), name


def test_every_chart_variable_is_a_server_setting() -> None:
    """No typo in a variable name: each IMAGESVC_* the chart sets is a field of
    config.Settings (which silently ignores unknown variables)."""
    from imagesvc.config import SETTINGS

    # Each setting's variables: IMAGESVC_<FIELD>, and fallbacks such as DOCKER_HOST and
    # NODE_NAME.
    known = {variable for spec in SETTINGS for variable in spec.variables()}
    # Besides the settings: the pod address, which $(POD_IP) expands and the fleet reads.
    known |= {"POD_IP"}
    for scenario in scenario_files():
        names = set(env(render(values_files=[scenario])))
        assert names <= known, (scenario.name, names - known)


def test_extra_env_and_args() -> None:
    objs = render(
        {
            "server": {
                "extraEnv": [{"name": "IMAGESVC_STREAM_WORKERS", "value": "8"}],
                "extraArgs": ["--log-level", "WARNING"],
            }
        }
    )
    assert env(objs)["IMAGESVC_STREAM_WORKERS"] == "8"
    assert app(objs)["args"] == ["--log-level", "WARNING"]
    assert "args" not in app(render()), "the image's entry point is `imagesvc serve`"


def test_chart_dir_holds_no_copy_of_the_monitoring_files() -> None:
    # Guard for the single-source rule (the files/ entries are symlinks).
    for name in ("imagesvc-alerts.yaml", "imagesvc-dashboard.json"):
        assert (CHART_DIR / "files" / name).is_symlink()


@pytest.mark.parametrize("scenario", scenario_files(), ids=lambda p: p.name)
def test_the_server_accepts_the_settings_of_every_scenario(scenario: Any) -> None:
    """The variables parse as config.Settings and make a usable registry policy, build
    restrictions and limits (what the server checks at start-up), and some
    authentication (or the explicit insecure flag) lets it listen on the pod's network."""
    from imagesvc.config import Settings
    from imagesvc.server_policy import ServerPolicy
    from imagesvc.server_security import is_loopback_address

    settings = Settings.from_env(env(render(values_files=[scenario])))
    ServerPolicy(settings)
    assert not is_loopback_address(settings.grpc_address)
    assert not is_loopback_address(settings.http_address)
    assert (
        settings.tokens_file
        or settings.tls_client_ca_file
        or settings.insecure_allow_unauthenticated
    )


def test_dind_runs_through_the_images_entry_point_on_the_socket_only() -> None:
    dind = pod_spec(render())["initContainers"][0]
    # Args only: docker:dind's entry point (dockerd-entrypoint.sh) must run, since it
    # starts dockerd under docker-init (reaps the shims) and the dind wrapper (cgroups,
    # mounts). Its first argument `dockerd` makes it add no --host of its own (it adds a
    # TCP listener on 2375/2376 when the arguments start with a flag or are empty).
    assert "command" not in dind
    assert dind["args"][0] == "dockerd"
    hosts = [a.split("=", 1)[1] for a in dind["args"] if a.startswith(("--host=", "-H="))]
    assert hosts == ["unix:///var/run/docker.sock"]
    assert not any("tcp://" in a for a in dind["args"])
    # No generated TLS certificates (a TCP listener would use them).
    assert {"name": "DOCKER_TLS_CERTDIR", "value": ""} in dind["env"]
    # The startup probe holds the app back until the daemon answers on its socket.
    assert dind["startupProbe"]["exec"]["command"][:2] == ["docker", "version"]


_BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity_bytes(quantity: str) -> int:
    """A Kubernetes quantity with a binary suffix (or none), in bytes."""
    for suffix, factor in _BINARY_SUFFIXES.items():
        if quantity.endswith(suffix):
            return int(quantity.removesuffix(suffix)) * factor
    return int(quantity)


def test_default_tmp_holds_the_spools_of_every_concurrent_build() -> None:
    # Each build spools its context as sent and, while it is checked, as rewritten for
    # the Engine (core/build_context.py): two files of up to contextMaxBytes. Past the
    # emptyDir's sizeLimit the kubelet evicts the pod, and every running call with it.
    objs = render()
    settings = env(objs)
    worst = (
        2
        * int(settings["IMAGESVC_BUILD_CONTEXT_MAX_BYTES"])
        * int(settings["IMAGESVC_MAX_CONCURRENT_BUILDS"])
    )
    limit = quantity_bytes(volumes(pod_spec(objs))["tmp"]["emptyDir"]["sizeLimit"])
    assert limit > worst


def test_listening_on_the_pod_address_only() -> None:
    # `$(POD_IP)`: the server binds the pod's own address, not 0.0.0.0, so that in dind
    # mode builds' RUN steps (nested containers behind the daemon's bridge, whose gateway
    # address belongs to the pod) cannot reach it from inside the pod, where no
    # NetworkPolicy applies.
    objs = render({"server": {"listenHost": "$(POD_IP)"}})
    entries = app(objs)["env"]
    names = [e["name"] for e in entries]
    [pod_ip] = [e for e in entries if e["name"] == "POD_IP"]
    assert pod_ip["valueFrom"] == POD_IP_SOURCE
    # The kubelet expands $(VAR) only from variables defined before.
    assert names.index("POD_IP") < names.index("IMAGESVC_GRPC_ADDRESS")
    assert env(objs)["IMAGESVC_GRPC_ADDRESS"] == f"{SAMPLE_POD_IP}:50051"
    assert env(objs)["IMAGESVC_HTTP_ADDRESS"] == f"{SAMPLE_POD_IP}:8080"
    assert "POD_IP" not in [e["name"] for e in app(render())["env"]]


def test_unauthenticated_dind_listens_on_the_pod_address_only() -> None:
    # Without authentication a build's RUN step that reached the server from inside the
    # pod would act as anyone, past the NetworkPolicy that admits only the proxy.
    insecure = {"auth": {"tokens": {"enabled": False}, "insecureAllowUnauthenticated": True}}
    message = render_error(insecure)
    assert "server.listenHost" in message
    assert "$(POD_IP)" in message
    objs = render({**insecure, "server": {"listenHost": "$(POD_IP)"}})
    assert env(objs)["IMAGESVC_GRPC_ADDRESS"] == f"{SAMPLE_POD_IP}:50051"
    # hostSocket mode runs no builds inside the pod.
    render({**insecure, **HOST_SOCKET})
