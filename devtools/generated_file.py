"""The command line of a generator of a committed file (docs/settings.md, the OpenAPI
document): ``--out PATH`` to write it elsewhere, ``--check`` to fail when it is stale."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def generator_parser(doc: str, out: Path) -> argparse.ArgumentParser:
    """``--out`` (default ``out``) and ``--check``, described by ``doc``'s first paragraph."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--check", action="store_true", help="fail if --out is stale")
    return parser


def write_or_check(out: Path, text: str, *, check: bool, regenerate: str) -> int:
    """Write ``text`` to ``out``; with ``check`` only compare, and say to run
    ``regenerate`` when they differ. The exit code."""
    if check:
        current = out.read_text() if out.exists() else ""
        if current != text:
            print(f"{out} is stale: run {regenerate}", file=sys.stderr)
            return 1
        return 0
    out.write_text(text)
    return 0
