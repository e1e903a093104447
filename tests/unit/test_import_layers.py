"""The import direction between the service's layers (ARCHITECTURE.md, "Import rules"),
checked on the source of every module under service/src/imagesvc (the generated
imagesvc.v1 aside): every import statement counts, also one inside a function or a
TYPE_CHECKING block.

- core imports nothing but the standard library and core;
- only engine.docker_adapter imports docker (and docker-py's requests and urllib3);
- only the engine package and the server's wiring (imagesvc.server) import engine, and
  the Engine error table (engine.errors) is the engine package's alone;
- engine never imports transport;
- the gRPC transport never imports the REST gateway (REST calls gRPC, not the reverse);
- the generated code (imagesvc.v1) is imported only by transport and imagesvc.server.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "service" / "src" / "imagesvc"
GENERATED = "imagesvc.v1"
WIRING = "imagesvc.server"
DOCKER_ADAPTER = "imagesvc.engine.docker_adapter"
DOCKER_LIBRARIES = ("docker", "requests", "urllib3")


@dataclass(frozen=True, slots=True)
class Import:
    importer: str
    imported: str
    line: int


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def imports_in(module: str, source: str, *, is_package: bool = False) -> Iterator[Import]:
    """Every module `source` imports. `from a import b` counts as a and as a.b (b may be
    a submodule); relative imports are resolved against `module`."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                anchor = parts if is_package else parts[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield Import(module, base, node.lineno)
            for alias in node.names:
                if alias.name != "*":
                    yield Import(module, f"{base}.{alias.name}", node.lineno)


def violation(found: Import) -> str | None:
    """What layer rule the import breaks, or None."""
    importer, imported = found.importer, found.imported
    top = imported.partition(".")[0]
    outside_core = not (top in sys.stdlib_module_names or _within(imported, "imagesvc.core"))
    if _within(importer, "imagesvc.core") and outside_core:
        return "core imports only the standard library and core"
    if top in DOCKER_LIBRARIES and importer != DOCKER_ADAPTER:
        return f"only {DOCKER_ADAPTER} imports {top}"
    if _within(imported, "imagesvc.engine.errors") and not _within(importer, "imagesvc.engine"):
        return "the Engine error table is the engine package's alone"
    if _within(imported, "imagesvc.engine") and not (
        _within(importer, "imagesvc.engine") or importer == WIRING
    ):
        return f"only the engine package and {WIRING} import engine"
    if _within(importer, "imagesvc.engine") and _within(imported, "imagesvc.transport"):
        return "engine never imports transport"
    if _within(importer, "imagesvc.transport.grpc") and _within(
        imported, "imagesvc.transport.rest"
    ):
        return "the gRPC transport never imports the REST gateway"
    if _within(imported, GENERATED) and not (
        _within(importer, "imagesvc.transport") or importer == WIRING
    ):
        return f"only transport and {WIRING} import the generated {GENERATED}"
    return None


def violations(modules: Mapping[str, tuple[str, bool]]) -> list[str]:
    """`modules`: module name -> (source, is_package). One line per rule an import
    statement breaks."""
    found: dict[tuple[str, int, str], str] = {}
    for module, (source, is_package) in sorted(modules.items()):
        for imported in imports_in(module, source, is_package=is_package):
            broken = violation(imported)
            if broken is not None:
                found.setdefault(
                    (module, imported.line, broken),
                    f"{module}:{imported.line} imports {imported.imported}: {broken}",
                )
    return list(found.values())


def service_modules() -> dict[str, tuple[str, bool]]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        if not _within(name, GENERATED):
            modules[name] = (path.read_text(), is_package)
    return modules


def test_the_service_keeps_its_layers() -> None:
    modules = service_modules()
    # The walk found the layers (a moved tree would otherwise pass with nothing checked).
    for expected in ("imagesvc.core.image_core", DOCKER_ADAPTER, "imagesvc.transport.rest.gateway"):
        assert expected in modules
    assert violations(modules) == []


@pytest.mark.parametrize(
    ("module", "source", "broken"),
    [
        ("imagesvc.core.image_core", "import grpc", "core imports only"),
        ("imagesvc.core.image_core", "from imagesvc.engine import errors", "core imports only"),
        ("imagesvc.core.models", "from imagesvc.transport.grpc import convert", "core imports"),
        ("imagesvc.core.models", "import prometheus_client", "core imports only"),
        ("imagesvc.engine.instrumented", "import docker.errors", "only imagesvc.engine.docker"),
        ("imagesvc.server", "from requests import Session", "only imagesvc.engine.docker"),
        ("imagesvc.transport.grpc.servicer", "import imagesvc.engine.errors", "error table"),
        ("imagesvc.server", "from imagesvc.engine.errors import stream_failure", "error table"),
        ("imagesvc.transport.rest.gateway", "from imagesvc.engine import instrumented", "only the"),
        ("imagesvc.cli", "from imagesvc.engine.docker_adapter import DockerAdapter", "only the"),
        ("imagesvc.engine.instrumented", "from imagesvc.transport import request_id", "engine nev"),
        ("imagesvc.transport.grpc.errors", "from imagesvc.transport.rest import errors", "gRPC"),
        ("imagesvc.transport.grpc.servicer", "import imagesvc.transport.rest.json", "gRPC"),
        ("imagesvc.core.models", "from imagesvc.v1 import image_pb2", "core imports only"),
        ("imagesvc.engine.docker_adapter", "from imagesvc.v1 import image_pb2", "only transport"),
        ("imagesvc.healthcheck", "import imagesvc.v1.image_service_pb2", "only transport"),
    ],
)
def test_a_forbidden_import_is_reported(module: str, source: str, broken: str) -> None:
    (found,) = violations({module: (source, False)})
    assert found.startswith(f"{module}:1 imports ")
    assert broken in found


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("imagesvc.core.image_core", "from __future__ import annotations\nimport asyncio"),
        ("imagesvc.core.image_core", "from imagesvc.core.port import DockerPort"),
        ("imagesvc.engine.docker_adapter", "import docker\nimport requests"),
        ("imagesvc.engine.docker_adapter", "from imagesvc.engine.errors import stream_failure"),
        ("imagesvc.engine.instrumented", "from imagesvc.core.errors import ImageServiceError"),
        ("imagesvc.server", "from imagesvc.engine.docker_adapter import DockerAdapter"),
        ("imagesvc.transport.rest.gateway", "from imagesvc.transport.grpc import servicer"),
        ("imagesvc.transport.grpc.servicer", "from imagesvc.v1 import image_service_pb2"),
    ],
)
def test_an_allowed_import_is_not_reported(module: str, source: str) -> None:
    assert violations({module: (source, False)}) == []


def test_imports_inside_functions_and_type_checking_blocks_count() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    import grpc\n"
        "def late() -> None:\n"
        "    from imagesvc.engine import docker_adapter\n"
    )
    found = violations({"imagesvc.core.limits": (source, False)})
    assert [line.split(" imports ")[0] for line in found] == [
        "imagesvc.core.limits:3",
        "imagesvc.core.limits:5",
    ]


def test_relative_imports_are_resolved() -> None:
    assert violations({"imagesvc.core.limits": ("from ..engine import errors", False)})
    assert violations({"imagesvc.core": ("from ..transport import loopback", True)})
    assert violations({"imagesvc.core.limits": ("from .errors import Reason", False)}) == []
    assert violations({"imagesvc.core": ("from . import errors", True)}) == []
