from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from imagesvc.core.documents import (
    created_unix,
    history_from_engine,
    image_from_inspect,
    image_from_summary,
    parse_engine_time,
)
from imagesvc.core.models import Healthcheck

ID = "sha256:" + "ab" * 32
PARENT = "sha256:" + "cd" * 32


def inspect_document() -> dict[str, Any]:
    """Trimmed from a real GET /images/{name}/json (API 1.47)."""
    return {
        "Id": ID,
        "RepoTags": ["127.0.0.1:5000/team/app:1.0", "<none>:<none>"],
        "RepoDigests": ["127.0.0.1:5000/team/app@sha256:" + "ef" * 32, "<none>@<none>"],
        "Parent": PARENT,
        "Comment": "buildkit.dockerfile.v0",
        "Created": "2024-05-06T07:08:09.123456789Z",
        "DockerVersion": "27.3.1",
        "Author": "Team <team@example.com>",
        "Config": {
            "Hostname": "",
            "User": "app",
            "ExposedPorts": {"8080/tcp": {}, "443/tcp": {}, "53/udp": {}},
            "Env": ["PATH=/usr/bin:/bin", "MODE=prod"],
            "Cmd": ["serve", "--port", "8080"],
            "Entrypoint": ["/entrypoint.sh"],
            "Healthcheck": {
                "Test": ["CMD-SHELL", "wget -q -O- localhost:8080/health"],
                "Interval": 30_000_000_000,
                "Timeout": 5_000_000_000,
                "StartPeriod": 1_000_000_000,
                "Retries": 3,
            },
            "Volumes": {"/var/lib/app": {}, "/data": {}},
            "WorkingDir": "/srv",
            "Labels": {"org.opencontainers.image.title": "app", "team": "core"},
            "StopSignal": "SIGTERM",
        },
        "Architecture": "arm64",
        "Variant": "v8",
        "Os": "linux",
        "Size": 4_261_574,
        "GraphDriver": {"Data": {"MergedDir": "/var/lib/docker/overlay2/x/merged"}},
        "RootFS": {"Type": "layers", "Layers": ["sha256:" + "11" * 32, "sha256:" + "22" * 32]},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    }


def test_inspect_maps_every_field() -> None:
    image = image_from_inspect(inspect_document())
    assert image.id == ID
    assert image.repo_tags == ("127.0.0.1:5000/team/app:1.0",)
    assert image.repo_digests == ("127.0.0.1:5000/team/app@sha256:" + "ef" * 32,)
    assert image.parent == PARENT
    assert image.created == datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    assert image.author == "Team <team@example.com>"
    assert image.comment == "buildkit.dockerfile.v0"
    assert (image.architecture, image.os, image.variant) == ("arm64", "linux", "v8")
    assert image.size == 4_261_574
    assert image.docker_version == "27.3.1"
    assert image.root_fs_layers == ("sha256:" + "11" * 32, "sha256:" + "22" * 32)
    assert image.labels == {"org.opencontainers.image.title": "app", "team": "core"}
    assert image.containers == -1
    config = image.config
    assert config is not None
    assert config.env == ("PATH=/usr/bin:/bin", "MODE=prod")
    assert config.cmd == ("serve", "--port", "8080")
    assert config.entrypoint == ("/entrypoint.sh",)
    assert config.working_dir == "/srv"
    assert config.user == "app"
    assert config.exposed_ports == ("443/tcp", "53/udp", "8080/tcp")
    assert config.volumes == ("/data", "/var/lib/app")
    assert config.labels == image.labels
    assert config.stop_signal == "SIGTERM"
    assert config.healthcheck == Healthcheck(
        test=("CMD-SHELL", "wget -q -O- localhost:8080/health"),
        interval_ns=30_000_000_000,
        timeout_ns=5_000_000_000,
        start_period_ns=1_000_000_000,
        retries=3,
    )


def test_inspect_json_round_trips_the_whole_document() -> None:
    document = inspect_document()
    image = image_from_inspect(document)
    assert json.loads(image.inspect_json) == document
    # Deterministic: keys sorted.
    assert image.inspect_json == json.dumps(document, sort_keys=True)


def test_inspect_with_null_and_missing_fields() -> None:
    document: dict[str, Any] = {
        "Id": ID,
        "RepoTags": None,
        "RepoDigests": None,
        "Created": "0001-01-01T00:00:00Z",
        "Config": {
            "Env": None,
            "Cmd": None,
            "Entrypoint": None,
            "Labels": None,
            "ExposedPorts": None,
            "Volumes": None,
            "Healthcheck": None,
        },
        "RootFS": {"Type": "layers"},
    }
    image = image_from_inspect(document)
    assert image.repo_tags == ()
    assert image.repo_digests == ()
    assert image.created is None
    assert image.labels == {}
    assert image.root_fs_layers == ()
    assert image.size == 0
    config = image.config
    assert config is not None
    assert (config.env, config.cmd, config.entrypoint) == ((), (), ())
    assert config.exposed_ports == ()
    assert config.healthcheck is None
    no_config = image_from_inspect({"Id": ID, "Config": None})
    assert no_config.config is not None
    assert no_config.config.labels == {}


def test_summary_maps_list_entries() -> None:
    summary = {
        "Id": ID,
        "ParentId": PARENT,
        "RepoTags": ["busybox:1.36", "busybox:latest"],
        "RepoDigests": ["busybox@sha256:" + "ef" * 32],
        "Created": 1_715_000_000,
        "Size": 4_261_574,
        "SharedSize": -1,
        "Labels": {"a": "b"},
        "Containers": 2,
    }
    image = image_from_summary(summary)
    assert image.id == ID
    assert image.parent == PARENT
    assert image.repo_tags == ("busybox:1.36", "busybox:latest")
    assert image.repo_digests == ("busybox@sha256:" + "ef" * 32,)
    assert image.created == datetime(2024, 5, 6, 12, 53, 20, tzinfo=UTC)
    assert image.size == 4_261_574
    assert image.labels == {"a": "b"}
    assert image.containers == 2
    assert image.config is None
    assert image.inspect_json == ""
    assert created_unix(summary) == 1_715_000_000


def test_dangling_summary_drops_none_placeholders() -> None:
    summary = {
        "Id": ID,
        "ParentId": "",
        "RepoTags": ["<none>:<none>"],
        "RepoDigests": ["<none>@<none>"],
        "Created": 1,
        "Size": 0,
        "Labels": None,
        "Containers": -1,
    }
    image = image_from_summary(summary)
    assert image.repo_tags == ()
    assert image.repo_digests == ()
    assert image.labels == {}
    assert image.parent == ""
    assert image.containers == -1


def test_summary_without_containers_or_created() -> None:
    image = image_from_summary({"Id": ID})
    assert image.containers == -1
    assert image.created is None
    assert created_unix({"Id": ID}) == 0
    assert created_unix({"Created": "2024-01-01T00:00:00Z"}) == 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-06T07:08:09.123456789Z", datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)),
        ("2024-05-06T07:08:09.1Z", datetime(2024, 5, 6, 7, 8, 9, 100000, tzinfo=UTC)),
        ("2024-05-06T07:08:09Z", datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)),
        (
            "2024-05-06T09:08:09.987654321+02:00",
            datetime(2024, 5, 6, 9, 8, 9, 987654, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("2024-05-06T07:08:09", datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)),
        (1_715_000_000, datetime(2024, 5, 6, 12, 53, 20, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", None),
        ("0001-01-01T00:00:00.000000000Z", None),
        (0, None),
        (-1, None),
        ("", None),
        (None, None),
        ("yesterday", None),
        (True, None),
        (1.5, None),
    ],
)
def test_parse_engine_time(value: object, expected: datetime | None) -> None:
    parsed = parse_engine_time(value)
    assert parsed == expected
    if parsed is not None:
        assert parsed.tzinfo is not None


def test_nanosecond_times_keep_their_instant() -> None:
    parsed = parse_engine_time("2024-05-06T09:08:09.999999999+02:00")
    assert parsed is not None
    assert parsed.astimezone(UTC) == datetime(2024, 5, 6, 7, 8, 9, 999999, tzinfo=UTC)


def test_history_keeps_engine_order_and_fields() -> None:
    entries = [
        {
            "Id": ID,
            "Created": 1_715_000_100,
            "CreatedBy": '/bin/sh -c #(nop)  CMD ["sh"]',
            "Tags": ["busybox:1.36", "<none>:<none>"],
            "Size": 0,
            "Comment": "",
        },
        {
            "Id": "<missing>",
            "Created": 1_715_000_000,
            "CreatedBy": "/bin/sh -c #(nop) ADD file:abc in / ",
            "Tags": None,
            "Size": 4_261_574,
            "Comment": "imported",
        },
    ]
    history = history_from_engine(entries)
    assert [entry.id for entry in history] == [ID, "<missing>"]
    assert history[0].tags == ("busybox:1.36",)
    assert history[0].created == datetime(2024, 5, 6, 12, 55, tzinfo=UTC)
    assert history[1].tags == ()
    assert history[1].size == 4_261_574
    assert history[1].comment == "imported"
    assert history[1].created_by.startswith("/bin/sh -c #(nop) ADD")
    assert history_from_engine([{}])[0].id == "<missing>"
    assert history_from_engine([]) == ()
