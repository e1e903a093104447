"""Every relative link of the Markdown documentation (the repository's top-level *.md and
docs/*.md) leads to a file or folder of the repository, and every #anchor to a heading of
its target, named as GitHub names it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted([*ROOT.glob("*.md"), *(ROOT / "docs").glob("*.md")])

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _prose(markdown: str) -> str:
    """The text outside fenced code blocks."""
    return _FENCE.sub("", markdown)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text (links reduced to their text, code marks
    dropped) in lower case, without punctuation but hyphens and underscores, spaces as
    hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every heading's anchor; a repeated one gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for heading in _HEADING.findall(_prose(markdown)):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(markdown: str) -> Iterator[str]:
    """The targets of inline links and images, outside code."""
    yield from _LINK.findall(_CODE_SPAN.sub("", _prose(markdown)))


def broken_links(document: Path, root: Path) -> list[str]:
    """The relative links of `document` that lead nowhere inside `root`."""
    broken = []
    for target in links(document.read_text(encoding="utf-8")):
        if _SCHEME.match(target):
            continue
        path_text, _, anchor = target.partition("#")
        path = (document.parent / path_text).resolve() if path_text else document
        if not path.is_relative_to(root.resolve()) or not path.exists():
            broken.append(f"{target}: no such file in the repository")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path.read_text()):
            broken.append(f"{target}: no heading #{anchor} in {path.relative_to(root)}")
    return broken


def test_the_documentation_is_found() -> None:
    names = {str(path.relative_to(ROOT)) for path in DOCUMENTS}
    assert {"README.md", "ARCHITECTURE.md", "SECURITY.md", "docs/security.md"} <= names


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_relative_links_resolve(document: Path) -> None:
    assert broken_links(document, ROOT) == []


def test_github_anchors() -> None:
    text = (
        "# Using the API: gRPC and REST/JSON\n"
        "## Python: `clients/python` (`pip install ./clients/python`)\n"
        "## What stays open, and why\n"
        "## Settings\n"
        "```sh\n# not a heading\n```\n"
        "### Settings\n"
        "## See [the guide](x.md) #2\n"
    )
    assert anchors(text) == {
        "using-the-api-grpc-and-restjson",
        "python-clientspython-pip-install-clientspython",
        "what-stays-open-and-why",
        "settings",
        "settings-1",
        "see-the-guide-2",
    }


def test_a_missing_file_or_anchor_is_reported(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n## Set-up\n")
    document = tmp_path / "README.md"
    document.write_text(
        "[ok](docs/guide.md#set-up) [ok](#top) [web](https://example.org/x.md#nope)\n"
        "# Top\n"
        "`[in code](missing.md)`\n"
        "```\n[in a block](missing.md)\n```\n"
        "[gone](docs/old.md) [no anchor](docs/guide.md#setup) [here](#nowhere)"
        " [outside](../elsewhere.md)\n"
    )
    assert broken_links(document, tmp_path) == [
        "docs/old.md: no such file in the repository",
        "docs/guide.md#setup: no heading #setup in docs/guide.md",
        "#nowhere: no heading #nowhere in README.md",
        "../elsewhere.md: no such file in the repository",
    ]
