"""The table of docs/engines.md says what tests/integration/engine_differences.py declares:
"differs" exactly in the cells of declared differences, with their sentences as notes."""

from __future__ import annotations

import re
from pathlib import Path

from devtools.engine_kinds import KINDS
from tests.integration.engine_differences import AREAS, DIFFERENCES

_ROOT = Path(__file__).resolve().parents[2]
_NOTE = re.compile(r"^- \((?P<label>[a-z]\d+)\) (?P<text>.+)$", re.MULTILINE)


_ENGINES_DOC = _ROOT / "docs" / "engines.md"


def _engines_doc() -> str:
    return _ENGINES_DOC.read_text()


def _table() -> tuple[list[str], dict[str, dict[str, str]]]:
    """The kinds named in the header (in backticks) and each area's cell per kind: the
    table whose header starts with "Contract area", to its last row."""
    text = _engines_doc()
    table = text[text.index("\n| Contract area |") + 1 :].split("\n\n", 1)[0]
    lines = table.splitlines()
    assert all(line.startswith("|") for line in lines), table
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    kinds = [re.findall(r"`([^`]+)`", cell)[0] for cell in header[1:]]
    rows: dict[str, dict[str, str]] = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(kinds, cells[1:], strict=True))
    return kinds, rows


def _notes() -> dict[str, str]:
    return {m["label"]: m["text"].strip() for m in _NOTE.finditer(_engines_doc())}


def test_the_table_has_every_kind_and_area() -> None:
    kinds, rows = _table()
    assert kinds == [kind.name for kind in KINDS]
    assert list(rows) == list(AREAS)


def test_differences_name_known_kinds_areas_and_tests() -> None:
    names = {kind.name for kind in KINDS}
    for difference in DIFFERENCES:
        assert difference.kind in names
        assert difference.area in AREAS
        assert difference.what.endswith(".")
        for test in difference.tests:
            module, _, function = test.partition("::")
            source = (_ROOT / "tests" / "integration" / module).read_text()
            assert f"def {function.split('[')[0]}(" in source, test


def test_differs_exactly_where_differences_are_declared_with_their_sentences() -> None:
    _, rows = _table()
    notes = _notes()
    for area, cells in rows.items():
        for kind, cell in cells.items():
            declared = {d.what for d in DIFFERENCES if d.kind == kind and d.area == area}
            labels = re.findall(r"\(([a-z]\d+)\)", cell)
            assert all(label in notes for label in labels), (area, kind, cell)
            if declared:
                assert cell.startswith("differs"), (area, kind, cell)
                assert {notes[label] for label in labels} == declared, (area, kind)
            else:
                assert cell.startswith("passes"), (area, kind, cell)
