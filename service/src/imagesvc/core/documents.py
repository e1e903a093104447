"""Reads the Engine's JSON documents (image summary, inspect, history) into core models."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from imagesvc.core.models import Healthcheck, HistoryEntry, Image, ImageConfig
from imagesvc.core.references import familiar

_NONE_TAGS = frozenset({"<none>:<none>", "<none>@<none>"})
_FRACTION = re.compile(r"(\.\d{6})\d+")
_BARE_ID = re.compile(r"[0-9a-f]{64}")


def _strings(value: object) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(str(item) for item in value)
    return ()


def _labels(value: object) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(key): str(val) for key, val in value.items()}
    return {}


def _int(value: object, default: int = 0) -> int:
    return value if isinstance(value, int) else default


def _tags(value: object) -> tuple[str, ...]:
    """Repo tags or digests in Docker's familiar form (Podman's docker.io/... too), without
    the "<none>:<none>" placeholders older Engines send."""
    return tuple(familiar(tag) for tag in _strings(value) if tag not in _NONE_TAGS)


def repo_tags(value: object) -> tuple[str, ...]:
    """An Engine document's RepoTags, familiar, without placeholders."""
    return _tags(value)


def image_id(value: object) -> str:
    """An image id as Docker writes it: Podman reports some (removed, pruned) as bare hex."""
    text = str(value or "")
    return f"sha256:{text}" if _BARE_ID.fullmatch(text) else text


def parse_engine_time(value: object) -> datetime | None:
    """An RFC 3339 time (nanoseconds allowed) or Unix seconds; None for Go's zero time."""
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC) if value > 0 else None
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    try:
        parsed = datetime.fromisoformat(_FRACTION.sub(r"\1", value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def created_unix(summary: dict[str, Any]) -> int:
    return _int(summary.get("Created"))


def image_from_summary(summary: dict[str, Any]) -> Image:
    """An image from one entry of GET /images/json."""
    labels = _labels(summary.get("Labels"))
    return Image(
        id=image_id(summary.get("Id")),
        repo_tags=_tags(summary.get("RepoTags")),
        repo_digests=_tags(summary.get("RepoDigests")),
        parent=image_id(summary.get("ParentId")),
        created=parse_engine_time(summary.get("Created")),
        size=_int(summary.get("Size")),
        labels=labels,
        containers=_int(summary.get("Containers"), -1),
    )


def _healthcheck(value: object) -> Healthcheck | None:
    if not isinstance(value, dict):
        return None
    return Healthcheck(
        test=_strings(value.get("Test")),
        interval_ns=_int(value.get("Interval")),
        timeout_ns=_int(value.get("Timeout")),
        start_period_ns=_int(value.get("StartPeriod")),
        retries=_int(value.get("Retries")),
    )


def _config(value: object) -> ImageConfig:
    config: dict[str, Any] = value if isinstance(value, dict) else {}
    ports = config.get("ExposedPorts")
    volumes = config.get("Volumes")
    return ImageConfig(
        env=_strings(config.get("Env")),
        cmd=_strings(config.get("Cmd")),
        entrypoint=_strings(config.get("Entrypoint")),
        working_dir=str(config.get("WorkingDir") or ""),
        user=str(config.get("User") or ""),
        exposed_ports=tuple(sorted(ports)) if isinstance(ports, dict) else (),
        volumes=tuple(sorted(volumes)) if isinstance(volumes, dict) else (),
        labels=_labels(config.get("Labels")),
        stop_signal=str(config.get("StopSignal") or ""),
        healthcheck=_healthcheck(config.get("Healthcheck")),
    )


def image_from_inspect(document: dict[str, Any]) -> Image:
    """An image from GET /images/{name}/json, with the whole document kept as JSON."""
    config = _config(document.get("Config"))
    root_fs = document.get("RootFS")
    layers = _strings(root_fs.get("Layers")) if isinstance(root_fs, dict) else ()
    return Image(
        id=image_id(document.get("Id")),
        repo_tags=_tags(document.get("RepoTags")),
        repo_digests=_tags(document.get("RepoDigests")),
        parent=image_id(document.get("Parent")),
        created=parse_engine_time(document.get("Created")),
        author=str(document.get("Author") or ""),
        comment=str(document.get("Comment") or ""),
        architecture=str(document.get("Architecture") or ""),
        os=str(document.get("Os") or ""),
        variant=str(document.get("Variant") or ""),
        size=_int(document.get("Size")),
        config=config,
        root_fs_layers=layers,
        labels=dict(config.labels),
        docker_version=str(document.get("DockerVersion") or ""),
        inspect_json=json.dumps(document, sort_keys=True),
    )


def history_from_engine(entries: list[dict[str, Any]]) -> tuple[HistoryEntry, ...]:
    """History entries in the Engine's order, which is newest first, like the CLI."""
    return tuple(
        HistoryEntry(
            id=str(entry.get("Id") or "<missing>"),
            created=parse_engine_time(entry.get("Created")),
            created_by=str(entry.get("CreatedBy") or ""),
            size=_int(entry.get("Size")),
            tags=_tags(entry.get("Tags")),
            comment=str(entry.get("Comment") or ""),
        )
        for entry in entries
    )
