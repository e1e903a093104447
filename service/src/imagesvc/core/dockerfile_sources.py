"""What a Dockerfile brings in from outside the build context, found before the build
starts so the registry policy can check it: the images of `FROM`, `COPY --from` and
`RUN --mount=from=`, and remote `ADD` sources (which the daemon fetches itself).

Follows the Engine's parser (moby/buildkit frontend/dockerfile/parser and shell/lex.go):
the `escape` directive, line continuations (joined without a space), comment lines,
flags before the arguments, global `ARG`s before the first `FROM` with `build_args`
overriding their defaults, and `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR:+word}`,
`${VAR:?word}` with single and double quotes.

Where this parser and the Engine could disagree it fails closed: a variable that is not
set (Docker would substitute an empty string), a substitution form it does not know, or
an unterminated quote leaves the image undetermined, and the policy refuses the build.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from imagesvc.core.errors import InvalidArgumentError
from imagesvc.core.redaction import without_userinfo
from imagesvc.core.references import Reference, parse_reference

SCRATCH = "scratch"
# Parser directives as Engines of different versions read them, on the line without its
# leading blanks: 20.10 (buildkit 0.8) takes the first character after `escape=` and stops
# at any other line; later ones take the whole value of a known directive (`syntax`,
# `escape`, since buildkit 0.14 also `check`) and stop at any other line. Go's \s is ASCII.
_ESCAPE_DIRECTIVE_0_8 = re.compile(r"#[ \t]*escape[ \t]*=[ \t]*(.).*")
_DIRECTIVE = re.compile(
    r"#[\t\n\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*"
)
_DIRECTIVE_NAMES = (frozenset({"syntax", "escape"}), frozenset({"syntax", "escape", "check"}))
_INSTRUCTION = re.compile(r"([^\t\v\f\r ]+)[\t\v\f\r ]*(.*)", re.DOTALL)
_STAGE_INDEX = re.compile(r"[0-9]+")
_BUILTIN_ARGS = frozenset(
    name
    for base in ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY")
    for name in (base, base.lower())
)
# Go's unicode.IsSpace, which the Engine splits words on (str.isspace also has \x1c-\x1f).
_GO_SPACES = "\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_FIELDS = re.compile(f"[^{_GO_SPACES}]+")
_GO_LEADING_SPACE = re.compile(f"^[{_GO_SPACES}]+")
_MAX_NESTING = 16
_MAX_TEXT = 200
_URL_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")
# Stands for a variable whose value is unknown while looking for remote ADD sources.
_UNKNOWN = "\x00"


@dataclass(frozen=True, slots=True)
class ImageSource:
    """An image a build step needs. `reference` is None when it could not be determined;
    `problem` then says why."""

    line: int
    instruction: str
    text: str
    reference: Reference | None
    problem: str = ""


@dataclass(frozen=True, slots=True)
class RemoteSource:
    """An `ADD` source the daemon would download (a URL or git address)."""

    line: int
    text: str


@dataclass(frozen=True, slots=True)
class DockerfileSources:
    images: tuple[ImageSource, ...]
    remote: tuple[RemoteSource, ...]


class _Unresolved(Exception):
    """A word whose value this parser cannot establish the way the Engine would."""


# Logical lines -------------------------------------------------------------------------


def _is_space(ch: str) -> bool:
    return ch.isspace() and ch not in "\x1c\x1d\x1e\x1f"


def _escape_characters(lines: list[str]) -> frozenset[str]:
    """The escape character each Engine version would take from the parser directives at
    the top (default backslash). Where versions disagree, the Dockerfile is read with
    each, so that no image one of them would pull goes unchecked."""
    top = [_GO_LEADING_SPACE.sub("", line.removesuffix("\r")) for line in lines]
    found = {_escape_0_8(top)}
    for names in _DIRECTIVE_NAMES:
        found.add(_escape_later(top, names))
    return frozenset(found)


def _escape_0_8(lines: list[str]) -> str:
    escape = "\\"
    for line in lines:
        match = _ESCAPE_DIRECTIVE_0_8.fullmatch(line.lower())
        if match is None:
            break
        escape = match.group(1)
    return escape


def _escape_later(lines: list[str], names: frozenset[str]) -> str:
    escape = "\\"
    for line in lines:
        match = _DIRECTIVE.fullmatch(line)
        if match is None or match.group(1).lower() not in names:
            break
        if match.group(1).lower() == "escape":
            escape = match.group(2)
    return escape


def _continues(line: str, escape: str) -> tuple[str, bool]:
    """The line without a trailing escape (and blanks after it); whether it continues."""
    stripped = line.rstrip(" \t")
    if stripped.endswith(escape):
        return stripped[: -len(escape)], True
    return line, False


def _logical_lines(text: str, escape: str) -> list[tuple[int, str]]:
    """(line number, instruction text) with continuations joined as the Engine does."""
    # Lines end at "\n" only, as for the Engine's scanner (str.splitlines knows more).
    physical = [line.removesuffix("\r") for line in text.split("\n")]
    result: list[tuple[int, str]] = []
    index = 0
    while index < len(physical):
        start = index + 1
        # Blank means Go's unicode.IsSpace, which (unlike str.isspace) excludes \x1c-\x1f:
        # a line of those ends a continuation for the Engine, so it must here too.
        line = _GO_LEADING_SPACE.sub("", physical[index])
        index += 1
        if not line or line.startswith("#"):
            continue
        line, more = _continues(line, escape)
        while more and index < len(physical):
            raw = physical[index]
            index += 1
            content = _GO_LEADING_SPACE.sub("", raw)
            if not content or content.startswith("#"):
                continue
            part, more = _continues(raw, escape)
            line += part
        if _GO_LEADING_SPACE.sub("", line):
            result.append((start, line))
    return result


def _split_flags(rest: str) -> tuple[list[str], str]:
    """Leading `--flag[=value]` words (quotes removed) and the rest of the line
    (buildkit parser.extractBuilderFlags, which always escapes with a backslash)."""
    escape = "\\"
    words: list[str] = []
    pos = 0
    length = len(rest)
    while True:
        while pos < length and _is_space(rest[pos]):
            pos += 1
        if pos >= length or not rest.startswith("--", pos):
            return words, rest[pos:]
        word = ""
        quote = ""
        while pos < length:
            ch = rest[pos]
            if quote:
                if ch == quote:
                    quote = ""
                elif ch == escape and pos + 1 < length:
                    pos += 1
                    word += rest[pos]
                else:
                    word += ch
            elif _is_space(ch):
                break
            elif ch in ("'", '"'):
                quote = ch
            elif ch == escape and pos + 1 < length:
                pos += 1
                word += rest[pos]
            else:
                word += ch
            pos += 1
        if word == "--":
            return words, rest[pos:]
        words.append(word)


def _flag(flags: list[str], name: str) -> str | None:
    value = None
    for flag in flags:
        key, sep, found = flag[2:].partition("=")
        if key.lower() == name and sep:
            value = found
    return value


def _words(rest: str, escape: str) -> list[str]:
    """White-space separated words with quotes and escapes kept (buildkit parseWords)."""
    words: list[str] = []
    word = ""
    quote = ""
    blank_ok = False
    pos = 0
    while pos < len(rest):
        ch = rest[pos]
        if quote:
            if ch == quote:
                quote = ""
            elif ch == escape and quote != "'" and pos + 1 < len(rest):
                word += ch
                pos += 1
                ch = rest[pos]
            word += ch
        elif _is_space(ch):
            if word or blank_ok:
                words.append(word)
            word, blank_ok = "", False
        else:
            if ch in ("'", '"'):
                quote, blank_ok = ch, True
            elif ch == escape:
                if pos + 1 == len(rest):
                    break
                word += ch
                pos += 1
                ch = rest[pos]
            word += ch
        pos += 1
    if word or blank_ok:
        words.append(word)
    return words


# Variable expansion (shell/lex.go) ------------------------------------------------------


class _Word:
    """Expands one word like the Engine's shell lexer. `env` values of None are declared
    but unset. With `unknown_ok`, unset variables become _UNKNOWN instead of failing."""

    def __init__(
        self, text: str, env: Mapping[str, str | None], escape: str, *, unknown_ok: bool = False
    ) -> None:
        self._text = text
        self._pos = 0
        self._env = env
        self._escape = escape
        self._unknown_ok = unknown_ok

    def _peek(self) -> str:
        return self._text[self._pos] if self._pos < len(self._text) else ""

    def _next(self) -> str:
        ch = self._peek()
        self._pos += 1
        return ch

    def expand(self) -> str:
        return self._until("", 0)

    def _until(self, stop: str, depth: int) -> str:
        if depth > _MAX_NESTING:
            raise _Unresolved("substitutions are nested too deeply")
        out: list[str] = []
        while self._pos < len(self._text):
            ch = self._peek()
            if stop and ch == stop:
                self._next()
                return "".join(out)
            if ch == "'":
                out.append(self._single_quoted())
            elif ch == '"':
                out.append(self._double_quoted(depth))
            elif ch == "$":
                out.append(self._dollar(depth))
            else:
                self._next()
                if ch == self._escape:
                    if self._pos >= len(self._text):
                        break
                    ch = self._next()
                out.append(ch)
        if stop:
            raise _Unresolved(f"a '{stop}' is missing")
        return "".join(out)

    def _single_quoted(self) -> str:
        self._next()
        end = self._text.find("'", self._pos)
        if end < 0:
            raise _Unresolved("a single quote is not closed")
        value = self._text[self._pos : end]
        self._pos = end + 1
        return value

    def _double_quoted(self, depth: int) -> str:
        self._next()
        out: list[str] = []
        while True:
            if self._pos >= len(self._text):
                raise _Unresolved("a double quote is not closed")
            ch = self._peek()
            if ch == '"':
                self._next()
                return "".join(out)
            if ch == "$":
                out.append(self._dollar(depth))
                continue
            self._next()
            if ch == self._escape and self._peek() in ('"', "$", self._escape) and self._peek():
                ch = self._next()
            out.append(ch)

    def _name(self) -> str:
        start = self._pos
        if self._peek().isdecimal():
            while self._peek().isdecimal():
                self._pos += 1
            return self._text[start : self._pos]
        while self._peek() and (
            self._peek().isalpha() or self._peek().isdecimal() or (self._peek() == "_")
        ):
            self._pos += 1
        return self._text[start : self._pos]

    def _lookup(self, name: str) -> str | None:
        value = self._env.get(name)
        if value is None and self._unknown_ok:
            return _UNKNOWN
        return value

    def _require(self, name: str) -> str:
        value = self._lookup(name)
        if value is None:
            raise _Unresolved(
                f"${name} is not set: declare it with ARG {name}=<default> before the first"
                f" FROM, or pass build_args {name}"
            )
        return value

    def _dollar(self, depth: int) -> str:
        self._next()
        if self._peek() != "{":
            name = self._name()
            return self._require(name) if name else "$"
        self._next()
        if self._peek() in ("", "{", "}", ":"):
            raise _Unresolved("bad substitution")
        name = self._name()
        ch = self._next()
        if ch == "}":
            return self._require(name)
        if not ch:
            raise _Unresolved("a '}' is missing")
        if ch != ":":
            raise _Unresolved(f"substitution form ${{{name}{ch}...}} is not supported")
        modifier = self._next()
        word = self._until("}", depth + 1)
        value = self._lookup(name)
        if modifier == "-":
            return value or word
        if modifier == "+":
            return word if value else ""
        if modifier == "?":
            return value or self._require(name)
        raise _Unresolved(f"substitution modifier ':{modifier}' is not supported")


def _expand(word: str, env: Mapping[str, str | None], escape: str) -> str:
    return _Word(word, env, escape).expand()


# Instructions ---------------------------------------------------------------------------


def _shorten(text: str) -> str:
    """The text quoted in messages: bounded, and without URL user information (an
    `ADD https://user:password@host/...` or a mistaken `FROM user:password@registry/...`)."""
    text = without_userinfo(text.strip())
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


class _Scanner:
    def __init__(self, build_args: Mapping[str, str], escape: str) -> None:
        self._build_args = build_args
        self._escape = escape
        # Global ARGs: name -> value (None: declared, no value; or its default failed).
        # The proxy arguments are known without an ARG when passed as build arguments,
        # to FROM and to ARG defaults alike (the Engine's builtinAllowedBuildArgs).
        self._meta: dict[str, str | None] = {
            name: value for name, value in build_args.items() if name in _BUILTIN_ARGS
        }
        # Names of the finished stages: the Engine knows a stage only once it is built,
        # so within a stage its own name is an image, not a stage.
        self._stages: list[str] = []
        self._current_stage = ""
        self._seen_from = False
        self.images: list[ImageSource] = []
        self.remote: list[RemoteSource] = []

    def instruction(self, line: int, text: str, *, trigger: bool = False) -> None:
        """`trigger`: the text of an ONBUILD, which runs in every build FROM the image
        this one makes, as that build's instruction: its `--from` names none of this
        build's stages, so it is an image to pull (a self-built base with an
        `ONBUILD COPY --from=<any image>` would otherwise carry a pull past the policy)."""
        match = _INSTRUCTION.match(text.strip())
        if match is None:
            return
        keyword, rest = match.group(1).lower(), match.group(2)
        prefix = "ONBUILD " if trigger else ""
        if keyword == "arg" and not self._seen_from and not trigger:
            self._global_arg(rest)
        elif keyword == "from" and not trigger:
            self._from(line, rest)
        elif keyword == "onbuild" and not trigger:
            self.instruction(line, rest, trigger=True)
        elif keyword == "copy":
            flags, _ = _split_flags(rest)
            self._from_flag(line, f"{prefix}COPY --from", _flag(flags, "from"), trigger=trigger)
        elif keyword == "run":
            flags, _ = _split_flags(rest)
            for flag in flags:
                key, _, value = flag[2:].partition("=")
                if key.lower() == "mount":
                    self._from_flag(
                        line, f"{prefix}RUN --mount from", _mount_from(value), trigger=trigger
                    )
        elif keyword == "add":
            self._add(line, rest, prefix)

    def _global_arg(self, rest: str) -> None:
        # The Engine expands every default of one ARG line with the arguments known
        # before that line: in `ARG A=x B=${A:-y}`, B is y.
        known = dict(self._meta)
        for word in _words(rest, self._escape):
            name, has_default, default = word.partition("=")
            if name in self._build_args:
                # A build argument's value is used as given, never expanded.
                self._meta[name] = self._build_args[name]
            elif has_default:
                try:
                    self._meta[name] = _expand(default, known, self._escape)
                except _Unresolved:
                    self._meta[name] = None
            else:
                self._meta[name] = None

    def _from(self, line: int, rest: str) -> None:
        self._seen_from = True
        if self._current_stage:
            self._stages.append(self._current_stage)
        _, args_text = _split_flags(rest)
        args = _FIELDS.findall(args_text)
        text = f"FROM {_shorten(rest)}"
        if len(args) not in (1, 3) or (len(args) == 3 and args[1].lower() != "as"):
            self._unresolved(line, "FROM", text, "FROM takes an image and optionally AS <name>")
            return
        try:
            image = _expand(args[0], self._meta, self._escape)
        except _Unresolved as why:
            self._unresolved(line, "FROM", text, str(why))
        else:
            if image != SCRATCH and image not in self._stages:
                self._image(line, "FROM", text, image)
        self._current_stage = args[2].lower() if len(args) == 3 else ""

    def _from_flag(
        self, line: int, instruction: str, value: str | None, *, trigger: bool = False
    ) -> None:
        if value is None:
            return
        text = f"{instruction}={_shorten(value)}"
        if "$" in value:
            # The classic builder takes --from literally; BuildKit would expand it in the
            # stage's scope. Neither can be verified here, so the build is refused.
            self._unresolved(line, instruction, text, "variables in --from are not supported")
        elif not _STAGE_INDEX.fullmatch(value) and (trigger or value not in self._stages):
            self._image(line, instruction, text, value)

    def _add(self, line: int, rest: str, prefix: str = "") -> None:
        _, args_text = _split_flags(rest)
        stripped = args_text.strip()
        sources = _json_list(stripped) if stripped.startswith("[") else None
        if sources is None:
            words = _words(stripped, self._escape)
            sources = words[:-1] if len(words) > 1 else words
        else:
            sources = sources[:-1] if len(sources) > 1 else sources
        for source in sources:
            if _may_be_remote(source, self._escape):
                self.remote.append(RemoteSource(line, f"{prefix}ADD {_shorten(source)}"))

    def _image(self, line: int, instruction: str, text: str, image: str) -> None:
        try:
            reference = parse_reference(image)
        except InvalidArgumentError as exc:
            self._unresolved(line, instruction, text, exc.message)
            return
        self.images.append(ImageSource(line, instruction, text, reference))

    def _unresolved(self, line: int, instruction: str, text: str, problem: str) -> None:
        self.images.append(ImageSource(line, instruction, text, None, problem))


def _mount_from(spec: str) -> str | None:
    value = None
    for field in spec.split(","):
        key, sep, found = field.partition("=")
        if key.strip().lower() == "from" and sep:
            value = found.strip().strip("'\"")
    return value


def _json_list(text: str) -> list[str] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    return None


def _may_be_remote(source: str, escape: str) -> bool:
    """Whether an ADD source is, or could expand to, something the daemon downloads
    (http(s) URL, git address). Unknown variables count as anything."""
    try:
        text = _Word(source, {}, escape, unknown_ok=True).expand()
    except _Unresolved:
        return True
    if _URL_SCHEME.match(text) or text.startswith("git@"):
        return True
    if _UNKNOWN not in text:
        return False
    prefix = text.split(_UNKNOWN, 1)[0].lower()
    return any(remote.startswith(prefix) for remote in ("http://", "https://", "git@"))


def dockerfile_sources(dockerfile: bytes, build_args: Mapping[str, str]) -> DockerfileSources:
    """The images and remote sources `dockerfile` needs, in the order they appear."""
    text = dockerfile.decode("utf-8", errors="replace").removeprefix("\ufeff")
    images: dict[ImageSource, None] = {}
    remote: dict[RemoteSource, None] = {}
    for escape in sorted(_escape_characters(text.split("\n"))):
        if escape not in ("\\", "`"):
            continue  # the Engine refuses the Dockerfile: nothing is pulled
        scanner = _Scanner(build_args, escape)
        for line, instruction in _logical_lines(text, escape):
            scanner.instruction(line, instruction)
        images.update(dict.fromkeys(scanner.images))
        remote.update(dict.fromkeys(scanner.remote))
    return DockerfileSources(tuple(images), tuple(remote))
