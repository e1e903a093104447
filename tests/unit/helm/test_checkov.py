"""checkov's Kubernetes checks on the rendered manifests of every ci/ scenario: no failed
(or annotation-skipped) check but those in ALLOWED, each with its reason; and each of
ALLOWED does occur, so the list cannot outlive its reason.

checkov runs from its own virtualenv (tools/checkov, made by scripts/bootstrap: its pins
clash with ours), offline: no guideline download (BC_SKIP_MAPPING, --skip-download), no
version check, no platform key; one process for every scenario (a few seconds).

Not on the list: CKV_K8S_27 ("do not expose the docker daemon socket"). It matches a
hostPath of exactly /var/run/docker.sock, and the hostSocket mode mounts the socket's
directory (a socket file mounted by itself goes stale when the daemon restarts), so checkov
does not flag it; the hostPath and what it means are checked by test_rendered_workload.py
and said in docs/kubernetes.md instead.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.unit.helm import chart
from tests.unit.helm.conftest import RenderedScenarios

pytestmark = pytest.mark.chart

CHECKOV = chart.ROOT / "tools" / "checkov" / "bin" / "checkov"
CHECKOV_VERSION = "3.3.30"  # scripts/bootstrap's CHECKOV_VERSION
# Each run takes 3 s here for six scenarios; far more means it waits on something.
RUN_SECONDS = 60


@dataclass(frozen=True)
class Finding:
    """A failed or skipped check: in which mode, which check, on which object (Kind/name)
    and, for container checks, which container."""

    mode: str
    check: str
    resource: str
    container: str | None = None

    def __str__(self) -> str:
        where = self.resource + (f" container {self.container}" if self.container else "")
        return f"{self.check} on {where} ({self.mode} mode)"


_DIND_SIDECAR = "Docker-in-Docker runs dockerd, which needs a privileged container"
_TEST_POD = "the helm test Pod runs one health check to completion: there is nothing to probe"

# Findings each mode has by design, with why (the chart skips the last two itself with
# checkov.io/skip annotations; a skip must be listed here like a failure).
ALLOWED: dict[Finding, str] = {
    Finding("dind", "CKV_K8S_16", "Deployment/imagesvc", "dind"): (
        f"{_DIND_SIDECAR} (only that container; the app container is restricted)"
    ),
    Finding("dind", "CKV_K8S_20", "Deployment/imagesvc", "dind"): (
        f"{_DIND_SIDECAR}; Kubernetes refuses allowPrivilegeEscalation false with it"
    ),
    Finding("dind", "CKV_K8S_37", "Deployment/imagesvc", "dind"): (
        f"{_DIND_SIDECAR}: privileged holds every capability, dropping some is void"
    ),
    Finding("dind", "CKV_K8S_28", "Deployment/imagesvc", "dind"): (
        f"{_DIND_SIDECAR}: NET_RAW comes with privileged (and dockerd uses it for networks)"
    ),
    Finding("dind", "CKV_K8S_22", "Deployment/imagesvc", "dind"): (
        f"{_DIND_SIDECAR}, which may remount its root anyway; dockerd writes under /etc, "
        "/run, /tmp and /var/lib/docker"
    ),
    **{
        Finding(mode, check, "Pod/imagesvc-test-grpc-health"): _TEST_POD
        for mode in ("dind", "hostSocket")
        for check in ("CKV_K8S_8", "CKV_K8S_9")
    },
}

# A Pod that must fail these checks: proof that checkov's checks do run here.
CANARY = """\
apiVersion: v1
kind: Pod
metadata:
  name: canary
  namespace: imagesvc
spec:
  containers:
    - name: canary
      image: canary:1
      securityContext:
        privileged: true
      volumeMounts:
        - name: docker-socket
          mountPath: /var/run/docker.sock
  volumes:
    - name: docker-socket
      hostPath:
        path: /var/run/docker.sock
"""
CANARY_FAILS = {"CKV_K8S_16", "CKV_K8S_27"}


def offline_env(cache: Path) -> dict[str, str]:
    """The environment for checkov without network: no Prisma/Bridgecrew key or URL."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BC_", "PRISMA_", "CKV_", "CHECKOV_"))
    }
    env.update(
        BC_SKIP_MAPPING="TRUE",  # no download of the checks' guidelines
        CKV_SKIP_PACKAGE_UPDATE_CHECK="TRUE",  # no PyPI version check
        CKV_CACHE_DIR=str(cache),
        LOG_LEVEL="WARNING",
    )
    return env


@dataclass(repr=False)
class CheckovRun:
    report: dict[str, Any]
    stderr: str
    seconds: float
    objects: dict[str, list[chart.Obj]]  # by file name

    def __repr__(self) -> str:  # not the whole report in a failure's traceback
        return f"<checkov run: {self.report.get('summary')}>"

    def results(self, kind: str) -> list[dict[str, Any]]:
        checks: list[dict[str, Any]] = self.report["results"].get(kind, [])
        return checks

    def findings(self, file_name: str, mode: str) -> set[Finding]:
        """The failed and the skipped checks of one file."""
        found: set[Finding] = set()
        for result in self.results("failed_checks") + self.results("skipped_checks"):
            if Path(result["file_path"]).name != file_name:
                continue
            kind, _, name = result["resource"].split(".", 2)  # Kind.namespace.name
            obj = self._object(file_name, kind, name)
            keys = result["check_result"].get("evaluated_keys") or []
            containers = {_container(obj, key) for key in keys} - {None} or {None}
            found |= {Finding(mode, result["check_id"], f"{kind}/{name}", c) for c in containers}
        return found

    def _object(self, file_name: str, kind: str, name: str) -> chart.Obj:
        [obj] = [
            o
            for o in self.objects[file_name]
            if o["kind"] == kind and o["metadata"]["name"] == name
        ]
        return obj


_CONTAINER_KEY = re.compile(r"^(.*?\b(?:initContainers|containers))/\[(\d+)\]")


def _container(obj: chart.Obj, key: str) -> str | None:
    """The container an evaluated key such as spec/template/spec/initContainers/[0]/...
    points into, by name."""
    found = _CONTAINER_KEY.match(key)
    if not found:
        return None
    node: Any = obj
    for part in found[1].split("/"):
        node = node[part]
    return str(node[int(found[2])]["name"])


@pytest.fixture(scope="module")
def checkov(rendered: RenderedScenarios, tmp_path_factory: pytest.TempPathFactory) -> CheckovRun:
    """One checkov run over every scenario's rendered.yaml (and the canary)."""
    assert CHECKOV.is_file(), f"{CHECKOV} is missing: run scripts/bootstrap"
    workdir = tmp_path_factory.mktemp("checkov")
    objects: dict[str, list[chart.Obj]] = {}
    files = []
    for scenario in chart.scenario_files():
        objs = rendered(scenario)
        path = workdir / f"{chart.scenario_name(scenario)}.yaml"
        path.write_text(chart.to_yaml(objs))
        objects[path.name] = objs
        files.append(path)
    canary = workdir / "canary.yaml"
    canary.write_text(CANARY)
    files.append(canary)
    started = time.monotonic()
    result = subprocess.run(
        [str(CHECKOV), "--framework", "kubernetes", "--output", "json", "--compact"]
        + ["--skip-download", "--soft-fail"]
        + [arg for path in files for arg in ("--file", path.name)],
        cwd=workdir,
        env=offline_env(workdir / "cache"),
        capture_output=True,
        text=True,
        timeout=5 * RUN_SECONDS,
        check=False,
    )
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-4000:]
    return CheckovRun(json.loads(result.stdout), result.stderr, seconds, objects)


def test_checkov_ran_every_scenario_offline(checkov: CheckovRun) -> None:
    summary = checkov.report["summary"]
    assert summary["checkov_version"] == CHECKOV_VERSION
    assert summary["parsing_errors"] == 0, checkov.report["results"].get("parsing_errors")
    checked = {Path(r["file_path"]).name for r in checkov.results("passed_checks")}
    assert checked == {*checkov.objects, "canary.yaml"}, "some manifests were not checked"
    # Nothing tried to reach Prisma Cloud / Bridgecrew or PyPI, and nothing waited on it.
    assert not re.search(r"(?i)prismacloud|bridgecrew|pypi|https?://", checkov.stderr), (
        checkov.stderr[-4000:]
    )
    assert checkov.seconds < RUN_SECONDS


def test_the_canary_fails_checkov(checkov: CheckovRun) -> None:
    failed = {
        r["check_id"]
        for r in checkov.results("failed_checks")
        if Path(r["file_path"]).name == "canary.yaml"
    }
    assert failed >= CANARY_FAILS


@pytest.mark.parametrize("scenario", chart.scenario_files(), ids=chart.scenario_name)
def test_checkov_finds_nothing_but_what_the_mode_implies(
    scenario: Path, checkov: CheckovRun
) -> None:
    findings = checkov.findings(
        f"{chart.scenario_name(scenario)}.yaml", chart.scenario_mode(scenario)
    )
    unexplained = sorted(str(f) for f in findings - ALLOWED.keys())
    assert not unexplained, (
        f"checkov fails {unexplained}: fix the chart, or, when a mode needs it by design, "
        "add it to ALLOWED with the reason"
    )


def test_every_allowed_finding_occurs(checkov: CheckovRun) -> None:
    seen: set[Finding] = set()
    for scenario in chart.scenario_files():
        seen |= checkov.findings(
            f"{chart.scenario_name(scenario)}.yaml", chart.scenario_mode(scenario)
        )
    stale = sorted(str(f) for f in ALLOWED.keys() - seen)
    assert not stale, f"ALLOWED lists findings checkov no longer reports: remove {stale}"
