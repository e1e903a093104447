"""The chart in helm/imagesvc rendered offline, as `helm template` would, through the Helm
v4 SDK (helm-python-sdk: no helm binary, no cluster, no network).

    objs = render({"serviceMonitor": {"enabled": True}},
                  values_files=[CHART_DIR / "ci" / "host-socket-values.yaml"])
    [daemonset] = objects_of_kind(objs, "DaemonSet")

Objects come back as plain dicts, ordered by template path (render_templates keeps them by
template); hooks (the `helm test` Pod under templates/tests/) are among them, told apart by
`is_hook` (`manifests` leaves them out). NOTES.txt is not an object and is left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from copy import deepcopy
from pathlib import Path
from typing import Any, NamedTuple

import helm_python
import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART_DIR = ROOT / "helm" / "imagesvc"
RELEASE = "imagesvc"
NAMESPACE = "imagesvc"

# Rendered but never applied: Helm prints NOTES.txt to the installer.
_NOT_MANIFESTS = ("NOTES.txt",)

Obj = dict[str, Any]


def minimum_kube_version() -> str:
    """The lowest Kubernetes version Chart.yaml's kubeVersion (">=1.29.0-0") admits, x.y.0."""
    metadata = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text(encoding="utf-8"))
    constraint = str(metadata["kubeVersion"])
    found = re.fullmatch(r"\s*>=\s*v?(\d+)\.(\d+)(?:\.\d+)?(?:-0)?\s*", constraint)
    if not found:
        raise ValueError(f"kubeVersion {constraint!r}: expected a lower bound like >=1.29.0-0")
    return f"{found[1]}.{found[2]}.0"


def scenario_files() -> list[Path]:
    """The chart's CI scenarios, helm/imagesvc/ci/*-values.yaml, sorted by name."""
    return sorted((CHART_DIR / "ci").glob("*-values.yaml"))


def scenario_name(path: Path) -> str:
    """`dind` for ci/dind-values.yaml: the name tests and allowlists use."""
    return path.name.removesuffix("-values.yaml")


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> Obj:
    """`override` laid over `base` as Helm merges -f files and --set: maps merge key by key,
    anything else (lists included) is replaced whole; a null is kept, so that Helm's own
    coalescing with the chart's defaults then deletes that key."""
    merged: Obj = deepcopy(dict(base))
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = deepcopy(value)
    return merged


def load_values_file(path: Path) -> Obj:
    """A values file read by Helm's own YAML parser (as `-f path` reads it)."""
    return helm_python.values_from_yaml(path.read_text(encoding="utf-8"))


def user_values(
    values: Mapping[str, Any] | None = None, *, values_files: Iterable[Path] = ()
) -> Obj:
    """What `helm template -f a -f b --set ...` hands the chart: the files in order, then
    `values` on top (not yet coalesced with values.yaml; Helm does that)."""
    merged: Obj = {}
    for path in values_files:
        merged = deep_merge(merged, load_values_file(path))
    return deep_merge(merged, values or {})


def effective_values(
    values: Mapping[str, Any] | None = None, *, values_files: Iterable[Path] = ()
) -> Obj:
    """The values the templates see: values.yaml coalesced with the files and `values`."""
    with helm_python.Chart.load(CHART_DIR) as chart:
        return chart.merge_values(user_values(values, values_files=values_files))


def render_templates(
    values: Mapping[str, Any] | None = None,
    *,
    values_files: Iterable[Path] = (),
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> dict[str, list[Obj]]:
    """Each manifest template (path relative to the chart, e.g. `templates/service.yaml`)
    with the objects it rendered; templates that rendered nothing are left out, and so is
    NOTES.txt. Raises helm_python.HelmError (HelmValuesError for values the schema refuses,
    HelmRenderError for a failing template)."""
    with helm_python.Chart.load(CHART_DIR) as chart:
        rendered = chart.render(
            user_values(values, values_files=values_files),
            name=release,
            namespace=namespace,
            is_install=True,
        )
    by_template: dict[str, list[Obj]] = {}
    for key in sorted(rendered):
        template = key.split("/", 1)[1]  # keys are "<chart name>/templates/..."
        if template.endswith(_NOT_MANIFESTS):
            continue
        docs = [doc for doc in yaml.safe_load_all(rendered[key]) if doc]
        for doc in docs:
            if not isinstance(doc, dict):
                raise TypeError(f"{template} rendered a YAML document that is no object: {doc!r}")
        if docs:
            by_template[template] = docs
    return by_template


def render(
    values: Mapping[str, Any] | None = None,
    *,
    values_files: Iterable[Path] = (),
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> list[Obj]:
    """Every object the chart renders (hooks included, NOTES.txt not), as `helm template
    -f <values_files...> --set <values>` would with this release name and namespace."""
    by_template = render_templates(
        values, values_files=values_files, release=release, namespace=namespace
    )
    return [obj for objs in by_template.values() for obj in objs]


def render_scenario(path: Path, values: Mapping[str, Any] | None = None) -> list[Obj]:
    """The objects of one ci/ scenario, optionally with more values on top."""
    return render(values, values_files=[path])


def objects_of_kind(objs: Sequence[Obj], kind: str) -> list[Obj]:
    """The objects of one kind (`Deployment`, `ServiceMonitor`, ...), in render order."""
    return [obj for obj in objs if obj.get("kind") == kind]


def one_of_kind(objs: Sequence[Obj], kind: str) -> Obj:
    """The one object of a kind; fails when there are none or several."""
    found = objects_of_kind(objs, kind)
    assert len(found) == 1, f"{len(found)} objects of kind {kind}"
    return found[0]


def workload(objs: Sequence[Obj]) -> Obj:
    """The one Deployment (mode dind) or DaemonSet (mode hostSocket) of a render."""
    found = objects_of_kind(objs, "Deployment") + objects_of_kind(objs, "DaemonSet")
    assert len(found) == 1, [o["kind"] for o in found]
    return found[0]


def scenario_mode(path: Path) -> str:
    """The `mode` a ci/ scenario runs in (dind or hostSocket)."""
    mode = effective_values(values_files=[path])["mode"]
    assert isinstance(mode, str)
    return mode


def hook(obj: Obj) -> str | None:
    """The object's helm.sh/hook annotation (`test` for templates/tests/), or None."""
    annotations = obj.get("metadata", {}).get("annotations") or {}
    value = annotations.get("helm.sh/hook")
    return None if value is None else str(value)


def is_hook(obj: Obj) -> bool:
    """Whether Helm runs this object as a hook instead of installing it with the release."""
    return hook(obj) is not None


def manifests(objs: Sequence[Obj]) -> list[Obj]:
    """The objects a `helm install` applies as the release (hooks left out)."""
    return [obj for obj in objs if not is_hook(obj)]


class LintMessage(NamedTuple):
    """One finding of `helm lint`: severity 1 info, 2 warning, 3 error (0 unknown)."""

    severity: int
    path: str
    message: str

    def __str__(self) -> str:
        name = {1: "INFO", 2: "WARNING", 3: "ERROR"}.get(self.severity, "UNKNOWN")
        return f"[{name}] {self.path}: {self.message}"


# `helm lint --strict` fails on warnings too; infos (such as "icon is recommended") pass.
LINT_WARNING = 2


def lint(
    values: Mapping[str, Any] | None = None,
    *,
    values_files: Iterable[Path] = (),
    kube_version: str | None = None,
    chart_dir: Path = CHART_DIR,
) -> list[LintMessage]:
    """Every finding of `helm lint --strict` on the chart with these values (infos too);
    `lint_failures` keeps those that fail the lint."""
    report = helm_python.lint(
        chart_dir,
        user_values(values, values_files=values_files),
        strict=True,
        namespace=NAMESPACE,
        kube_version=kube_version,
    )
    found = [
        LintMessage(int(m["severity"]), str(m["path"]), str(m["error"]).strip())
        for m in report.get("messages") or []
    ]
    # The report's errors repeat its error messages, and add those of no file (a chart that
    # fails to load): keep only the new ones.
    said = {m.message for m in found}
    found += [
        LintMessage(3, "", str(error).strip())
        for error in report.get("errors") or []
        if str(error).strip() not in said
    ]
    return found


def lint_failures(
    values: Mapping[str, Any] | None = None,
    *,
    values_files: Iterable[Path] = (),
    kube_version: str | None = None,
    chart_dir: Path = CHART_DIR,
) -> list[str]:
    """What makes `helm lint --strict` fail (warnings and errors), each as text; empty when
    the chart passes."""
    found = lint(values, values_files=values_files, kube_version=kube_version, chart_dir=chart_dir)
    return [str(m) for m in found if m.severity == 0 or m.severity >= LINT_WARNING]


def to_yaml(objs: Sequence[Obj]) -> str:
    """The objects as one multi-document YAML stream (what `helm template` prints)."""
    return yaml.safe_dump_all(objs, sort_keys=False)
