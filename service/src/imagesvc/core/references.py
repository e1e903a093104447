"""Docker image references: parsing, validation and normalisation.

Follows the grammar of distribution/reference:
    reference := name [ ":" tag ] [ "@" digest ]
    name      := [domain "/"] path-component ["/" path-component]*
A name's first component is a registry domain when it contains "." or ":" or is
"localhost"; otherwise the image lives on Docker Hub, and every path component must be
lower case.

Newer parsers (distribution/reference 0.5+, in Engine 26 and later) also take a first
component with an upper-case letter for a domain, so Engine 26 accepts ``UPPER/case``
as image ``case`` on a registry host ``UPPER`` where Engine 20.10 refuses it ("repository
name must be lowercase"). The service decides by the older, stricter rule, the one every
supported engine and the docker CLI agree on: the same reference gets the same answer
on every engine, and a registry host with upper case can always be written in lower
case (host names are case-insensitive) or with its port.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from imagesvc.core.errors import InvalidArgumentError, Reason
from imagesvc.core.redaction import without_userinfo

DEFAULT_DOMAIN = "docker.io"
DEFAULT_TAG = "latest"
_MAX_NAME_LENGTH = 255

_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_IMAGE_ID = re.compile(r"(?:sha256:)?[0-9a-f]{1,64}")
_PLATFORM = re.compile(r"[a-z0-9_]+(?:/[a-z0-9_]+(?:/[a-z0-9_.]+)?)?")


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed reference. `domain` is empty when the text named none (Docker Hub)."""

    domain: str
    path: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        """The repository as written: domain (if any) and path, no tag or digest."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def full_name(self) -> str:
        """The repository with Docker Hub made explicit: docker.io/library/busybox."""
        if self.domain and self.domain != DEFAULT_DOMAIN:
            return self.name
        path = self.path if "/" in self.path else f"library/{self.path}"
        return f"{DEFAULT_DOMAIN}/{path}"

    @property
    def registry(self) -> str:
        return self.domain or DEFAULT_DOMAIN

    def with_default_tag(self) -> Reference:
        """This reference, with ":latest" when it names neither a tag nor a digest."""
        if self.tag or self.digest:
            return self
        return Reference(self.domain, self.path, DEFAULT_TAG, "")

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    def normalized(self) -> str:
        """The fully-qualified form: docker.io/library/busybox:latest."""
        text = self.full_name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def _invalid(text: str, why: str) -> InvalidArgumentError:
    # `user:password@registry/app` is a common mistake: never echo the password.
    shown = without_userinfo(text)
    return InvalidArgumentError(
        f"invalid image reference {shown!r}: {why}",
        reason=Reason.INVALID_REFERENCE,
        metadata={"reference": shown[:256]},
    )


def parse_reference(text: str) -> Reference:
    """Parses `[domain/]path[:tag][@digest]`, raising INVALID_REFERENCE with the cause."""
    if not text or not text.strip():
        raise _invalid(text, "it is empty")
    if text != text.strip() or any(ch.isspace() for ch in text):
        raise _invalid(text, "it contains white space")
    remainder, at, digest = text.partition("@")
    if at and not _DIGEST.fullmatch(digest):
        raise _invalid(text, "the digest must look like sha256:<64 hex digits>")
    tag = ""
    slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > slash:
        remainder, tag = remainder[:colon], remainder[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise _invalid(
                text, "a tag is 1 to 128 letters, digits, '_', '.' or '-', not starting with those"
            )
    if not remainder:
        raise _invalid(text, "it has no repository name")
    domain = ""
    first, sep, rest = remainder.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        if not _DOMAIN.fullmatch(first):
            raise _invalid(text, f"{first!r} is not a valid registry host[:port]")
        domain, remainder = first, rest
    for component in remainder.split("/"):
        if not _PATH_COMPONENT.fullmatch(component):
            raise _invalid(
                text,
                "repository names are lower-case letters, digits and separators ('.', '_', '-')"
                f" between them; {component!r} is not",
            )
    reference = Reference(domain, remainder, tag, digest)
    if len(reference.name) > _MAX_NAME_LENGTH:
        raise _invalid(text, f"the repository name is longer than {_MAX_NAME_LENGTH} characters")
    return reference


def parse_tag_target(text: str) -> Reference:
    """A name to tag or build as: `repository[:tag]`, default tag latest, no digest."""
    reference = parse_reference(text)
    if reference.digest:
        raise _invalid(text, "a tag target cannot contain a digest")
    return reference.with_default_tag()


def is_registry_domain(text: str) -> bool:
    """Whether `text` is a registry host[:port] as references name one."""
    return bool(_DOMAIN.fullmatch(text))


def is_image_id(text: str) -> bool:
    return bool(_IMAGE_ID.fullmatch(text))


def validate_image_identifier(text: str) -> str:
    """Accepts an image id (full or prefix, with or without sha256:) or a reference."""
    if is_image_id(text):
        return text
    parse_reference(text)
    return text


# containerd's platforms package (what Docker parses a platform with) knows these; a
# platform of one component must be one of them, or an alias of an architecture.
_KNOWN_OS = frozenset(
    [
        "aix",
        "android",
        "darwin",
        "dragonfly",
        "freebsd",
        "hurd",
        "illumos",
        "ios",
        "js",
        "linux",
        "nacl",
        "netbsd",
        "openbsd",
        "plan9",
        "solaris",
        "windows",
        "zos",
        "macos",
    ]
)
_KNOWN_ARCH = frozenset(
    [
        "386",
        "amd64",
        "amd64p32",
        "arm",
        "armbe",
        "arm64",
        "arm64be",
        "ppc64",
        "ppc64le",
        "loong64",
        "mips",
        "mipsle",
        "mips64",
        "mips64le",
        "mips64p32",
        "mips64p32le",
        "ppc",
        "riscv",
        "riscv64",
        "s390",
        "s390x",
        "sparc",
        "sparc64",
        "wasm",
        "i386",
        "x86_64",
        "aarch64",
        "armhf",
        "armel",
    ]
)


def validate_platform(text: str) -> str:
    """Empty, or `os[/arch[/variant]]` in lower case; one component must name a known
    operating system or architecture. That is Docker's rule (containerd's platforms
    parser), applied here so every engine gives the same answer: Podman pulls with a
    platform of `nonsense`."""
    if text and not _PLATFORM.fullmatch(text):
        raise InvalidArgumentError(
            f"invalid platform {text!r}: expected os/arch[/variant], e.g. linux/amd64",
            reason=Reason.INVALID_ARGUMENT,
        )
    if text and "/" not in text and text not in _KNOWN_OS | _KNOWN_ARCH:
        raise InvalidArgumentError(
            f"invalid platform {text!r}: neither an operating system nor an architecture"
            " Docker knows; give os/arch[/variant], e.g. linux/amd64",
            reason=Reason.INVALID_ARGUMENT,
        )
    return text


def familiar(text: str) -> str:
    """Docker's familiar form of a name an Engine reports, as Docker's FamiliarString:
    ``docker.io/library/busybox:1`` is ``busybox:1``, ``docker.io/acc/tiny:1`` is
    ``acc/tiny:1``; other registries are kept.

    Podman reports Docker Hub names fully qualified. It also names images built by its
    own CLI ``localhost/x:1``; that prefix stays: ``localhost`` is a registry domain, so
    without it ``x:1`` would mean Docker Hub's ``library/x`` (a push would go there),
    and the name the service shows must name the same image when it is sent back.
    """
    prefix = f"{DEFAULT_DOMAIN}/"
    if not text.startswith(prefix):
        return text
    rest = text.removeprefix(prefix)
    short = rest.removeprefix("library/")
    repository = re.split(r"[:@]", short, maxsplit=1)[0]
    if short != rest and "/" not in repository:
        return short
    return rest


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Go's path.Match pattern as a regex: ``*`` and ``?`` never match ``/``; ``[...]``
    (``^`` negates) and ``\\`` escapes; anything malformed is INVALID_ARGUMENT."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i == len(pattern):
                raise _bad_pattern(pattern)
            out.append(re.escape(pattern[i]))
            i += 1
        elif ch == "[":
            negate = i < len(pattern) and pattern[i] == "^"
            i += negate
            ranges: list[str] = []
            while True:
                if i == len(pattern):
                    raise _bad_pattern(pattern)
                if pattern[i] == "]" and ranges:
                    i += 1
                    break
                low, i = _class_char(pattern, i)
                high = low
                if i < len(pattern) and pattern[i] == "-":
                    high, i = _class_char(pattern, i + 1)
                    if high < low:
                        raise _bad_pattern(pattern)
                ranges.append(f"{re.escape(low)}-{re.escape(high)}")
            out.append(f"[{'^' if negate else ''}{''.join(ranges)}]")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    if i == len(pattern) or pattern[i] in "-]":
        raise _bad_pattern(pattern)
    if pattern[i] == "\\":
        i += 1
        if i == len(pattern):
            raise _bad_pattern(pattern)
    return pattern[i], i + 1


def _bad_pattern(pattern: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"invalid reference filter {pattern!r}: not a valid pattern (path.Match syntax)",
        reason=Reason.INVALID_ARGUMENT,
        metadata={"field": "references"},
    )


def reference_pattern(pattern: str) -> re.Pattern[str]:
    """A reference filter, compiled; INVALID_ARGUMENT when malformed."""
    return _glob_regex(pattern)


def familiar_match(pattern: re.Pattern[str], familiar_text: str) -> bool:
    """Docker's reference filter (FamiliarMatch): the pattern matches the familiar
    reference, or its name without tag or digest."""
    if pattern.fullmatch(familiar_text):
        return True
    name = familiar_text.partition("@")[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name = name[:colon]
    return bool(pattern.fullmatch(name))
