"""imagesvc-cli refuses unusable connection options with one line naming the option and
exit code 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagesvc_client.cli.main import main as cli_main


def _usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        cli_main(["--server", "127.0.0.1:1", *argv])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("imagesvc-cli: ")
    assert err.count("\n") == 1
    return err


def test_a_client_certificate_needs_its_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "c.pem").write_text("x")
    err = _usage_error(capsys, "--tls-cert", str(tmp_path / "c.pem"), "ls")
    assert "--tls-cert and --tls-key go together" in err


@pytest.mark.parametrize("flag", ["--tls-ca", "--tls-cert", "--tls-key"])
def test_unreadable_tls_files_are_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, flag: str
) -> None:
    pair = {"--tls-cert": "--tls-key", "--tls-key": "--tls-cert"}
    readable = tmp_path / "ok.pem"
    readable.write_text("x")
    other = [pair[flag], str(readable)] if flag in pair else []
    missing = tmp_path / "missing.pem"
    err = _usage_error(capsys, flag, str(missing), *other, "ls")
    assert f"cannot read {flag} {missing}: No such file or directory" in err


def test_a_token_of_several_lines_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGESVC_TOKEN", "first\nsecond")
    err = _usage_error(capsys, "ls")
    assert "IMAGESVC_TOKEN must hold one line" in err
    assert "first" not in err


class _Tuned(Exception):
    """Raised by the stand-in allocator setting: the command went no further."""


@pytest.mark.parametrize("command", [["save", "app:1"], ["load"], ["build", "."]])
def test_archive_commands_set_the_allocator_first(
    command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def tuned() -> bool:
        raise _Tuned

    monkeypatch.setattr("imagesvc_client.cli.allocator.keep_transfer_buffers", tuned)
    with pytest.raises(_Tuned):
        cli_main(["--server", "127.0.0.1:1", *command])


def test_other_commands_leave_the_allocator_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bool] = []
    monkeypatch.setattr(
        "imagesvc_client.cli.allocator.keep_transfer_buffers", lambda: calls.append(True)
    )
    assert cli_main(["--server", "127.0.0.1:1", "--timeout", "2", "ls"]) != 0
    assert calls == []
