"""clients/python stands on its own: its wheel holds the typed package (py.typed, the
stubs' .pyi files), the CLI and its entry point, depends on grpcio, protobuf,
googleapis-common-protos and rich only, and imports neither the server nor docker."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

CLIENT_ROOT = Path(__file__).resolve().parents[3] / "clients" / "python"
SOURCES = CLIENT_ROOT / "src" / "imagesvc_client"


def test_the_wheel_is_complete_and_standalone(tmp_path: Path) -> None:
    # Built from a copy: an in-tree build would leave build/ and egg-info behind.
    source = tmp_path / "src-copy"
    shutil.copytree(
        CLIENT_ROOT, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip_wheel, "-w", str(tmp_path / "dist"), str(source)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = (tmp_path / "dist").glob("imagesvc_client-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (metadata_name,) = (n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(metadata_name).decode())
        (entry_points_name,) = (n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_points = archive.read(entry_points_name).decode()
        archive.extractall(tmp_path / "unpacked")

    expected = {
        f"imagesvc_client/{path.relative_to(SOURCES).as_posix()}"
        for path in SOURCES.rglob("*")
        if path.suffix in (".py", ".pyi", ".typed")
    }
    assert "imagesvc_client/py.typed" in expected
    assert "imagesvc_client/v1/image_service_pb2.pyi" in expected
    assert expected <= names, expected - names
    assert not any(name.startswith("imagesvc/") for name in names)
    assert "imagesvc-cli = imagesvc_client.cli:run" in entry_points
    requirements = {
        requirement.split("<")[0].split(">")[0].split("=")[0].strip()
        for requirement in metadata.get_all("Requires-Dist") or []
    }
    assert requirements == {"googleapis-common-protos", "grpcio", "protobuf", "rich"}

    # The unpacked wheel first on the path: the client and its CLI load without the
    # server's package or docker.
    probe = (
        "import sys, imagesvc_client, imagesvc_client.cli, imagesvc_client.aio\n"
        "assert imagesvc_client.__file__.startswith(sys.argv[1]), imagesvc_client.__file__\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        "assert not loaded & {'imagesvc', 'docker'}, loaded & {'imagesvc', 'docker'}\n"
        "sys.argv = ['imagesvc-cli', '--help']\n"
        "imagesvc_client.cli.main()\n"
    )
    unpacked = str(tmp_path / "unpacked")
    ran = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {unpacked!r})\n{probe}", unpacked],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    assert "usage: imagesvc-cli" in ran.stdout
