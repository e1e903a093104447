"""values.yaml and values.schema.json: every key documented, the schema closed at every
level of values.yaml (a misspelt key is refused, not silently ignored), and the `helm
test` pod rendered from them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from copy import deepcopy
from typing import Any

import helm_python
import pytest
import yaml

from tests.unit.helm.chart import CHART_DIR, Obj, hook, objects_of_kind, render

pytestmark = pytest.mark.chart

VALUES = CHART_DIR / "values.yaml"
SCHEMA = CHART_DIR / "values.schema.json"
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z][\w.-]*):")


def defaults() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(VALUES.read_text(encoding="utf-8"))
    return loaded


def test_every_key_of_values_yaml_has_a_comment() -> None:
    """Each key has a comment right above it, unless it is part of a value documented as
    a whole (helm-docs' `# --` comment on an ancestor: e.g. resources' requests)."""
    lines = VALUES.read_text(encoding="utf-8").splitlines()
    undocumented = []
    documented_value_indent: int | None = None
    for number, line in enumerate(lines):
        match = _KEY.match(line)
        if not match:
            continue
        indent = len(match["indent"])
        if documented_value_indent is not None and indent > documented_value_indent:
            continue  # inside a value documented as a whole
        documented_value_indent = None
        previous = number - 1
        while previous >= 0 and not lines[previous].strip():
            previous -= 1
        comment = lines[previous].strip() if previous >= 0 else ""
        if not comment.startswith("#"):
            undocumented.append(f"line {number + 1}: {line.strip()}")
            continue
        block_start = previous
        while block_start > 0 and lines[block_start - 1].strip().startswith("#"):
            block_start -= 1
        if lines[block_start].strip().startswith("# --"):
            documented_value_indent = indent
    assert undocumented == []


def object_paths(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every mapping of values.yaml that the schema describes key by key (not the free
    maps of labels and annotations, nor Kubernetes types passed through)."""
    if not isinstance(value, dict):
        return
    yield path
    for key, child in value.items():
        yield from object_paths(child, (*path, key))


def schema_at(schema: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    for key in path:
        schema = schema["properties"][key]
    return schema


def test_schema_is_draft_07_and_closed_at_every_level_of_values_yaml() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    closed = []
    for path in object_paths(defaults()):
        node = schema_at(schema, path)
        if node.get("additionalProperties") is False:
            closed.append(path)
            # Every key values.yaml has is described.
            assert set(_at(defaults(), path)) <= set(node["properties"]), path
    assert len(closed) > 40


def _at(values: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    for key in path:
        values = values[key]
    return values


def misspelt(path: tuple[str, ...]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    node = values
    for key in path:
        node = node.setdefault(key, {})
    node["noSuchKey"] = 1
    return values


@pytest.mark.parametrize(
    "path",
    [
        (),
        ("image",),
        ("server",),
        ("auth", "tokens"),
        ("auth", "tokens", "generated"),
        ("tls", "clientCA"),
        ("build",),
        ("limits",),
        ("dind", "dataVolume"),
        ("hostSocket", "updateStrategy"),
        ("securityContext",),
        ("podSecurityContext",),
        ("probes", "readiness"),
        ("service", "ports"),
        ("networkPolicy", "egress"),
        ("serviceMonitor",),
        ("grafanaDashboard",),
        ("tests", "tls"),
    ],
    ids=lambda path: ".".join(path) or "top",
)
def test_misspelt_keys_are_refused(path: tuple[str, ...]) -> None:
    with (
        helm_python.Chart.load(CHART_DIR) as chart,
        pytest.raises(helm_python.HelmValuesError, match="noSuchKey"),
    ):
        chart.validate_schema(misspelt(path))


@pytest.mark.parametrize(
    "values",
    [
        {"mode": "docker"},
        {"server": {"grpcPort": 0}},
        {"server": {"logLevel": "verbose"}},
        {"auth": {"tokens": {"generated": {"roles": ["root"]}}}},
        {"image": {"digest": "latest"}},
        {"limits": {"maxConcurrentBuilds": -1}},
        {"hostSocket": {"socketGroupId": "docker"}},
        {"service": {"internalTrafficPolicy": "Node"}},
        {"auth": {"insecureAllowUnauthenticated": "yes"}},
    ],
    ids=json.dumps,
)
def test_bad_values_are_refused(values: dict[str, Any]) -> None:
    with helm_python.Chart.load(CHART_DIR) as chart, pytest.raises(helm_python.HelmValuesError):
        chart.validate_schema(values)


def test_default_values_validate() -> None:
    with helm_python.Chart.load(CHART_DIR) as chart:
        chart.validate_schema(deepcopy(defaults()))
        assert chart.metadata["appVersion"] == project_version()


def project_version() -> str:
    pyproject = (CHART_DIR.parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE)
    assert match
    return match[1]


# ----------------------------------------------------------------------------- helm test pod


def helm_test_pod(values: dict[str, Any]) -> Obj:
    """The Pod `helm test` runs."""
    [pod] = objects_of_kind(render(values), "Pod")
    return pod


def test_helm_test_pod_checks_readiness_through_the_service() -> None:
    objs = render()
    pod = helm_test_pod({})
    assert hook(pod) == "test"
    [c] = pod["spec"]["containers"]
    assert c["command"] == ["imagesvc", "healthcheck"]
    [service] = objects_of_kind(objs, "Service")
    grpc_port = {p["name"]: p["port"] for p in service["spec"]["ports"]}["grpc"]
    address = f"{service['metadata']['name']}.imagesvc.svc:{grpc_port}"
    assert f"--grpc-address={address}" in c["args"]
    assert "--service=imagesvc.v1.ImageService" in c["args"]
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["automountServiceAccountToken"] is False
    context = c["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert {"cpu", "memory"} <= set(c["resources"]["limits"])
    assert "env" not in c
    assert "volumes" not in pod["spec"]


def test_helm_test_pod_speaks_tls_and_mtls() -> None:
    tls = {"enabled": True, "existingSecret": "server-tls"}
    pod = helm_test_pod({"tls": tls})
    [c] = pod["spec"]["containers"]
    assert "--tls" in c["args"]
    assert "env" not in c  # a probe from elsewhere needs no server settings, only the CA
    ca_arg = next(a for a in c["args"] if a.startswith("--tls-ca-file="))
    volumes = {v["name"]: v["secret"] for v in pod["spec"]["volumes"]}
    assert set(volumes) == {"ca"}  # never the server's certificate or key
    assert volumes["ca"]["secretName"] == "server-tls"
    mount_dirs = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert ca_arg == f"--tls-ca-file={mount_dirs['ca']}/ca.crt"
    assert not [a for a in c["args"] if a.startswith("--tls-client")]

    mtls = {**tls, "clientCA": {"existingSecret": "client-ca"}}
    values = {
        "tls": mtls,
        "tests": {"tls": {"clientSecret": "probe-client", "serverName": "x.example"}},
    }
    pod = helm_test_pod(values)
    [c] = pod["spec"]["containers"]
    volumes = {v["name"]: v["secret"] for v in pod["spec"]["volumes"]}
    assert volumes["client-cert"]["secretName"] == "probe-client"
    client_dir = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}["client-cert"]
    assert f"--tls-client-cert-file={client_dir}/tls.crt" in c["args"]
    assert f"--tls-client-key-file={client_dir}/tls.key" in c["args"]
    assert "--tls-server-name=x.example" in c["args"]


def test_mutual_tls_without_a_test_client_certificate_is_refused() -> None:
    mtls = {"enabled": True, "existingSecret": "s", "clientCA": {"existingSecret": "ca"}}
    with pytest.raises(helm_python.HelmError, match=r"tests\.tls\.clientSecret"):
        render({"tls": mtls})
    assert objects_of_kind(render({"tls": mtls, "tests": {"enabled": False}}), "Pod") == []


def test_helm_test_pod_lands_where_a_daemonset_pod_serves_it() -> None:
    # hostSocket: the Service routes a caller to the imagesvc of its own node only
    # (internalTrafficPolicy Local), so the test pod must run on a node the DaemonSet
    # covers: the DaemonSet's node selector, affinity and tolerations.
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "docker", "operator": "Exists"}]}
                ]
            }
        }
    }
    tolerations = [{"key": "builders", "operator": "Exists", "effect": "NoSchedule"}]
    values = {
        "mode": "hostSocket",
        "hostSocket": {"socketGroupId": 999},
        "nodeSelector": {"pool": "docker"},
        "affinity": affinity,
        "tolerations": tolerations,
    }
    objs = render(values)
    [daemonset] = objects_of_kind(objs, "DaemonSet")
    pod_spec = daemonset["spec"]["template"]["spec"]
    spec = helm_test_pod(values)["spec"]
    for key in ("nodeSelector", "affinity", "tolerations"):
        assert spec[key] == pod_spec[key], key
