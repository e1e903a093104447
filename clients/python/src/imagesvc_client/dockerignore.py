""".dockerignore semantics, as the docker CLI applies them to a build context.

Follows moby/patternmatcher: lines starting with ``#`` are comments; each pattern is
trimmed and cleaned (``a/../b`` is ``b``, a leading ``/`` is dropped); ``*`` matches
within one path element, ``?`` one character of it, ``**`` any number of elements
(also none), ``[...]`` a character class, ``\\`` escapes; a pattern that matches a
directory also matches everything under it; ``!pattern`` re-includes what earlier
patterns excluded, and the last matching pattern wins.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

__all__ = ["IgnoreRules", "InvalidPattern", "read_patterns"]

_UTF8_BOM = "\ufeff"
# Regular-expression characters that mean nothing in a path pattern (as moby's shouldEscape).
_ESCAPED = frozenset(".+()|{}$")


class InvalidPattern(ValueError):
    """A .dockerignore line that is not a valid pattern."""


def read_patterns(text: str) -> list[str]:
    """The patterns of a .dockerignore file, like moby's ignorefile.ReadAll."""
    patterns: list[str] = []
    for number, raw in enumerate(text.splitlines()):
        line = raw.removeprefix(_UTF8_BOM) if number == 0 else raw
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = posixpath.normpath(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                # normpath keeps "//x" as is; Go's Clean makes it "/x".
                pattern = pattern.lstrip("/") or "/"
        patterns.append("!" + pattern if invert else pattern)
    return patterns


class _Kind(Enum):
    EXACT = "exact"
    PREFIX = "prefix"
    SUFFIX = "suffix"
    REGEXP = "regexp"


@dataclass(frozen=True)
class _Pattern:
    text: str  # cleaned, without the "!"
    exclusion: bool
    kind: _Kind
    regexp: re.Pattern[str] | None

    def match(self, path: str) -> bool:
        if self.kind is _Kind.EXACT:
            return path == self.text
        if self.kind is _Kind.PREFIX:
            return path.startswith(self.text[:-2])
        if self.kind is _Kind.SUFFIX:
            suffix = self.text[2:]
            if path.endswith(suffix):
                return True
            # "**/foo" matches "foo".
            return suffix.startswith("/") and path == suffix[1:]
        assert self.regexp is not None
        return self.regexp.match(path) is not None


def _compile(text: str, exclusion: bool) -> _Pattern:
    """Translates one cleaned pattern like moby's Pattern.compile."""
    regex = "^"
    kind = _Kind.EXACT
    i = 0
    first = True
    while i < len(text):
        ch = text[i]
        i += 1
        if ch == "*":
            if i < len(text) and text[i] == "*":
                i += 1
                if i < len(text) and text[i] == "/":  # "**/" is "**"
                    i += 1
                if i == len(text):
                    # A trailing "**" accepts everything below, as .gitignore does.
                    if kind is _Kind.EXACT:
                        kind = _Kind.PREFIX
                    else:
                        regex += ".*"
                        kind = _Kind.REGEXP
                else:
                    regex += "(.*/)?"
                    kind = _Kind.REGEXP
                if first:
                    kind = _Kind.SUFFIX
            else:
                regex += "[^/]*"
                kind = _Kind.REGEXP
        elif ch == "?":
            regex += "[^/]"
            kind = _Kind.REGEXP
        elif ch in _ESCAPED:
            regex += "\\" + ch
        elif ch == "\\":
            if i < len(text):
                regex += re.escape(text[i])
                i += 1
                kind = _Kind.REGEXP
            else:
                regex += "\\\\"
        elif ch in "[]":
            regex += ch
            kind = _Kind.REGEXP
        else:
            regex += ch  # as moby: "^" too (an anchor, or negation in a class)
        first = False
    if kind is not _Kind.REGEXP:
        return _Pattern(text, exclusion, kind, None)
    # No "[!...]" negation: moby hands the class to Go's regexp (and filepath.Match), where
    # only "[^...]" negates and "[!a]" is the class of "!" and "a".
    try:
        # \Z, not $: Go's $ never matches before a trailing newline.
        compiled = re.compile(regex + r"\Z")
    except re.error as error:
        raise InvalidPattern(f"invalid .dockerignore pattern {text!r}: {error}") from None
    return _Pattern(text, exclusion, _Kind.REGEXP, compiled)


class IgnoreRules:
    """Decides which paths of a build context are left out."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self._patterns: list[_Pattern] = []
        for raw in patterns:
            pattern = raw.strip()
            if not pattern:
                continue
            exclusion = pattern.startswith("!")
            if exclusion:
                pattern = pattern[1:]
                if not pattern:
                    raise InvalidPattern('illegal exclusion pattern: "!"')
            pattern = posixpath.normpath(pattern)
            self._patterns.append(_compile(pattern, exclusion))

    def excludes(self, path: str) -> bool:
        """Whether ``path`` (slash-separated, relative to the context) is left out: the
        last pattern matching it or one of its parent directories decides."""
        path = posixpath.normpath(path)
        if path == ".":
            return False
        parent = posixpath.dirname(path)
        parents = parent.split("/") if parent else []
        matched = False
        for pattern in self._patterns:
            # An exclusion can only change an excluded path, an inclusion an included one.
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path)
            if not hit:
                hit = any(pattern.match("/".join(parents[: n + 1])) for n in range(len(parents)))
            if hit:
                matched = not pattern.exclusion
        return matched

    def may_include_below(self, directory: str) -> bool:
        """Whether an exception (``!``) pattern may re-include something under an
        excluded ``directory``, so that the walk must still descend into it (the same
        prefix test as moby's archive walk)."""
        prefix = directory + "/"
        return any(p.exclusion and (p.text + "/").startswith(prefix) for p in self._patterns)
