"""The settings are defined once (imagesvc.config.Settings): the `imagesvc serve` flags,
the IMAGESVC_* variables and docs/settings.md come from those definitions, and no other
document keeps its own table of them."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

import pytest

from devtools.settings_doc import OUT, render
from imagesvc.cli import _parser, settings_of
from imagesvc.config import SETTINGS, Settings, SettingSpec

ROOT = Path(__file__).parents[2]


def serve_flags() -> dict[str, argparse.Action]:
    parser = _parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    serve = commands.choices["serve"]
    return {a.option_strings[0]: a for a in serve._actions if a.option_strings != ["-h", "--help"]}


def spec(name: str) -> SettingSpec:
    return next(s for s in SETTINGS if s.name == name)


def test_docs_settings_md_is_generated_from_the_definitions() -> None:
    assert OUT.read_text() == render(), "docs/settings.md is stale: python -m devtools.settings_doc"


def test_every_setting_is_in_docs_settings_md() -> None:
    text = render()
    for item in SETTINGS:
        assert f"`{item.env}`" in text
        assert item.doc.help in text


def test_no_other_document_has_a_row_for_a_setting() -> None:
    starts = {f"| `{s.env}`" for s in SETTINGS} | {f"| `{s.flag}`" for s in SETTINGS if s.flag}
    documents = [
        path
        for path in ROOT.rglob("*.md")
        if path != OUT and not {".venv", "node_modules", ".git"} & set(path.parts)
    ]
    assert ROOT / "README.md" in documents
    for path in documents:
        for line in path.read_text().splitlines():
            assert not any(line.startswith(start) for start in starts), f"{path}: {line}"


def test_the_flags_are_the_settings_that_have_one() -> None:
    flags = serve_flags()
    assert set(flags) == {s.flag for s in SETTINGS if s.flag}
    for item in SETTINGS:
        if item.flag is None:
            continue
        action = flags[item.flag]
        assert action.dest == item.name
        assert action.default is None  # not given: the variable or the default holds
        assert action.type is (None if item.kind in (str, bool) else item.kind)
        assert isinstance(action, argparse._StoreTrueAction) is (item.kind is bool)
        assert action.help is not None
        assert item.shown_default().replace("`", "") in action.help


def test_flags_without_a_variable_stay_variables_only() -> None:
    assert spec("max_message_bytes").flag is None
    assert "--max-message-bytes" not in serve_flags()
    assert Settings.from_env({"IMAGESVC_MAX_MESSAGE_BYTES": "1024"}).max_message_bytes == 1024


def test_defaults_as_shown() -> None:
    assert spec("build_memory_bytes").shown_default() == "2 GiB"
    assert spec("max_message_bytes").shown_default() == "8 MiB"
    assert spec("insecure_allow_unauthenticated").shown_default() == "off"
    assert spec("progress_interval_seconds").shown_default() == "0.1"
    assert spec("shutdown_grace_seconds").shown_default() == "20"
    assert spec("build_cpus").shown_default() == "0"


def test_every_field_is_a_setting() -> None:
    assert [s.name for s in SETTINGS] == [f.name for f in fields(Settings)]
    assert SETTINGS[0].env == "IMAGESVC_GRPC_ADDRESS"
    assert SETTINGS[0].flag == "--grpc-address"


def test_variables_are_parsed_by_the_type_of_the_default() -> None:
    settings = Settings.from_env(
        {
            "IMAGESVC_DOCKER_WORKERS": "3",
            "IMAGESVC_BUILD_CPUS": "1.5",
            "IMAGESVC_INSECURE_ALLOW_UNAUTHENTICATED": "Yes",
            "IMAGESVC_BUILD_ALLOW_REMOTE_ADD": "0",
            "IMAGESVC_TOKENS_FILE": "/etc/tokens.json",
            "IMAGESVC_LOG_LEVEL": "",  # empty: not set
        }
    )
    assert settings.docker_workers == 3
    assert settings.build_cpus == 1.5
    assert settings.insecure_allow_unauthenticated is True
    assert settings.build_allow_remote_add is False
    assert settings.tokens_file == "/etc/tokens.json"
    assert settings.log_level == "INFO"


def test_a_malformed_variable_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match=r"^IMAGESVC_DOCKER_WORKERS='many': invalid literal"):
        Settings.from_env({"IMAGESVC_DOCKER_WORKERS": "many"})


def test_docker_host_reads_docker_host_then_its_own_variable() -> None:
    assert Settings.from_env({}).docker_host == "unix:///var/run/docker.sock"
    assert Settings.from_env({"DOCKER_HOST": "tcp://127.0.0.1:1"}).docker_host == (
        "tcp://127.0.0.1:1"
    )
    both = {"DOCKER_HOST": "tcp://127.0.0.1:1", "IMAGESVC_DOCKER_HOST": "tcp://127.0.0.1:2"}
    assert Settings.from_env(both).docker_host == "tcp://127.0.0.1:2"


def test_flags_win_over_variables() -> None:
    args = _parser().parse_args(["serve", "--docker-workers", "5", "--build-allow-remote-add"])
    environ = {"IMAGESVC_DOCKER_WORKERS": "3", "IMAGESVC_MAX_CONCURRENT_PULLS": "2"}
    settings = settings_of(args, environ)
    assert settings.docker_workers == 5
    assert settings.build_allow_remote_add is True
    assert settings.max_concurrent_pulls == 2  # no flag given: the variable holds
