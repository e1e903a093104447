"""What imagesvc-cli loads, since its start-up is part of every command's time (issue 16:
a build within 1.1x of docker build): --help loads neither gRPC nor rich, a quiet build
loads gRPC but neither rich nor the asyncio client. Each run in a fresh interpreter."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import imagesvc_client
from imagesvc_client.build_context import BuildContext
from imagesvc_client.v1 import image_service_pb2 as pb
from imagesvc_client.v1 import image_service_pb2_grpc
from tests.unit.clients.scripted_server import serving

# Runs the CLI's main() with argv[2:] and writes its exit code and sys.modules to argv[1].
_PROBE = """
import json, sys
from imagesvc_client.cli import main
try:
    code = main(sys.argv[2:])
except SystemExit as exit:
    code = exit.code
with open(sys.argv[1], "w") as report:
    json.dump({"code": code, "modules": sorted(sys.modules)}, report)
"""


class Builds(image_service_pb2_grpc.ImageServiceServicer):
    def BuildImage(
        self, request_iterator: Iterator[pb.BuildImageRequest], context: Any
    ) -> Iterator[pb.BuildImageResponse]:
        size = sum(len(request.context_chunk) for request in request_iterator)
        yield pb.BuildImageResponse(log="Step 1/1 : FROM scratch\n")
        yield pb.BuildImageResponse(result=pb.BuildImageResult(image_id=f"sha256:{size}"))


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    with serving(Builds()) as address:  # type: ignore[abstract]  # the other RPCs are not scripted
        yield address


def _run(tmp_path: Path, *argv: str) -> tuple[int, set[str], str]:
    report = tmp_path / "report.json"
    ran = subprocess.run(
        [sys.executable, "-c", _PROBE, str(report), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    found = json.loads(report.read_text())
    return found["code"], set(found["modules"]), ran.stdout


def _loaded(modules: set[str], *prefixes: str) -> set[str]:
    return {m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes)}


@pytest.mark.parametrize("argv", [["--help"], ["build", "--help"], ["build"]], ids=" ".join)
def test_help_and_usage_errors_load_neither_grpc_nor_rich(tmp_path: Path, argv: list[str]) -> None:
    code, modules, _ = _run(tmp_path, *argv)
    assert code == (2 if argv == ["build"] else 0)
    assert not _loaded(modules, "grpc", "google.protobuf", "rich", "imagesvc_client.client")


def test_a_quiet_build_loads_neither_rich_nor_the_asyncio_client(
    tmp_path: Path, address: str
) -> None:
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    code, modules, stdout = _run(tmp_path, "--server", address, "build", "-q", str(context))
    size = sum(len(chunk) for chunk in BuildContext.prepare(context).chunks())
    assert (code, stdout) == (0, f"sha256:{size}\n")
    assert "grpc" in modules
    assert not _loaded(modules, "rich", "imagesvc_client.aio", "imagesvc_client.cli.progress")


def test_the_package_exports_load_on_first_use() -> None:
    probe = (
        "import sys, imagesvc_client\n"
        "assert 'imagesvc_client.client' not in sys.modules\n"
        "from imagesvc_client import ImageClient\n"
        "assert 'imagesvc_client.aio' not in sys.modules\n"
        "print(ImageClient.__module__)\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, "imagesvc_client.client\n", "")
    # Every exported name is its module's own object, and dir() lists it.
    for name in imagesvc_client.__all__:
        value = getattr(imagesvc_client, name)
        module = sys.modules[f"imagesvc_client.{imagesvc_client._ORIGINS[name]}"]
        assert value is getattr(module, name), name
        assert name in dir(imagesvc_client)
    assert set(imagesvc_client._ORIGINS) == set(imagesvc_client.__all__)
    with pytest.raises(AttributeError):
        imagesvc_client.NoSuchName  # type: ignore[attr-defined]  # noqa: B018


def test_every_verb_runs_a_function_of_commands() -> None:
    """main() finds each verb's function by name, once the command line is parsed."""
    from imagesvc_client.cli import commands
    from imagesvc_client.cli.main import build_parser

    def runs(parser: argparse.ArgumentParser) -> Iterator[str]:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    if sub.get_default("run") is not None:
                        yield sub.get_default("run")
                    yield from runs(sub)

    names = set(runs(build_parser()))
    assert {"build", "ls", "manifest_inspect", "fleet_pull"} <= names
    assert all(callable(getattr(commands, name, None)) for name in names), names
