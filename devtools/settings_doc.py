"""docs/settings.md, generated from the definitions of the settings (imagesvc/config.py):
one table per section, one row per setting (flag, variables, default, meaning).

`python -m devtools.settings_doc [--out PATH] [--check]`; tests/unit/test_settings.py
fails when the committed file is stale.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from devtools.generated_file import generator_parser, write_or_check
from imagesvc.config import SETTINGS, Section, SettingSpec

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "settings.md"

_HEADER = """\
# Settings

<!-- Generated from service/src/imagesvc/config.py by `python -m devtools.settings_doc`:
edit the definitions there, then regenerate. -->

Every setting of `imagesvc serve` is an environment variable `IMAGESVC_<NAME>`; most are
also a flag `--<name>` (flags win over variables). Sizes are bytes, times seconds; a
boolean variable is on when it is `1`, `true`, `yes` or `on`.
"""


def _row(spec: SettingSpec) -> str:
    names = [f"`{spec.flag}`"] if spec.flag else []
    names.append(f"`{spec.env}`")
    if spec.doc.fallback_env:
        names.append(f"`{spec.doc.fallback_env}`")
    default = spec.shown_default()
    shown = default if spec.doc.shown_default is not None else f"`{default}`"
    return f"| {' / '.join(names)} | {shown} | {spec.doc.help} |"


def render() -> str:
    parts = [_HEADER]
    for section in Section:
        parts.append(f"\n## {section.value}\n\n")
        parts.append("| flag / variable | default | meaning |\n|---|---|---|\n")
        parts.extend(_row(spec) + "\n" for spec in SETTINGS if spec.doc.section is section)
    return "".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    args = generator_parser(__doc__, OUT).parse_args(argv)
    return write_or_check(
        args.out, render(), check=args.check, regenerate="python -m devtools.settings_doc"
    )


if __name__ == "__main__":
    sys.exit(main())
