"""Hypothesis strategies for hostile input: image references and tags, build options,
Dockerfiles whose base image is known, and build-context archives (path traversal,
absolute paths, escaping links, devices, oversized headers, gzip bombs, corruption).

Shared by the unit property tests (core over a fake Engine) and the integration ones
(the real server and engine). Every registry in here is loopback, a documentation
domain or a private address: the tests configure an allowlist that admits only
127.0.0.1:<port>, and assert that nothing else reaches the Engine.
"""

from __future__ import annotations

import functools
import gzip
import io
import tarfile
from dataclasses import dataclass

from hypothesis import strategies as st

ALLOWED_PREFIX = "127.0.0.1:5000/"

_DOMAINS = [
    "",
    "127.0.0.1:5000",
    "127.0.0.1:5001",
    "127.0.0.1",
    "localhost:5000",
    "localhost",
    "[::1]:5000",
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "ghcr.io",
    "evil.example.com",
    "Evil.Example.COM:443",
    "127.0.0.1.example.com:5000",
    "127.0.0.1:5000.example.com",
    "10.0.0.1:5000",
    "169.254.169.254",
    "xn--80ak6aa92e.example",
]
_COMPONENTS = [
    "team",
    "app",
    "library",
    "busybox",
    "a",
    "a-b",
    "a__b",
    "a.b",
    "..",
    ".",
    "",
    "A",
    "x" * 130,
    "%2e%2e",
    "a b",
    "a\tb",
    "é",
    "$X",
    "${X}",
    "a@b",
    "a:b",
    "-a",
    "a-",
    "\x00",
    "*",
    "**",
]
_TAGS = ["", "latest", "1.0", "v1_2-3", "-bad", ".bad", "x" * 129, "ä", "a b", "a/b", "a:b"]
_DIGESTS = ["", "sha256:" + "a" * 64, "sha256:short", "md5:" + "0" * 32, "sha256:" + "G" * 64]


@st.composite
def structured_references(draw: st.DrawFn) -> str:
    domain = draw(st.sampled_from(_DOMAINS))
    path = "/".join(draw(st.lists(st.sampled_from(_COMPONENTS), min_size=1, max_size=4)))
    text = f"{domain}/{path}" if domain else path
    tag = draw(st.sampled_from(_TAGS))
    if tag:
        text += f":{tag}"
    digest = draw(st.sampled_from(_DIGESTS))
    if digest:
        text += f"@{digest}"
    return text


@st.composite
def valid_references(draw: st.DrawFn) -> str:
    """Well-formed references, half of them on the allowed registry, the rest elsewhere
    (the ones a policy mistake would let through)."""
    domain = draw(
        st.sampled_from(["127.0.0.1:5000"] * 6 + [d for d in _DOMAINS if d != "127.0.0.1:5000"])
    )
    components = st.sampled_from(["team", "app", "library", "busybox", "a-b", "a.b", "x9"])
    path = "/".join(draw(st.lists(components, min_size=1, max_size=3)))
    text = f"{domain}/{path}" if domain else path
    tag = draw(st.sampled_from(["", "latest", "1.0", "v1_2-3"]))
    return f"{text}:{tag}" if tag else text


def references() -> st.SearchStrategy[str]:
    """Image references: mostly near-valid and hostile ones, some arbitrary text."""
    return st.one_of(
        valid_references(),
        structured_references(),
        structured_references(),
        st.text(max_size=60),
        st.text(alphabet="abc0123456789.:/@_-[]$%{}* ", max_size=60),
    )


def is_allowed_repository(reference: str) -> bool:
    """What the tests' allowlist admits: the open registry on loopback, nothing else."""
    return reference.startswith(ALLOWED_PREFIX)


# Build options -------------------------------------------------------------------------------

_ARG_NAMES = ["VERSION", "BASE", "A", "GITHUB_TOKEN", "db_password", "A=B", "", "a b", "X" * 300]


@dataclass(frozen=True)
class Options:
    tags: tuple[str, ...]
    network_mode: str
    build_args: dict[str, str]
    dockerfile: str
    target: str
    platform: str


@st.composite
def build_options(draw: st.DrawFn) -> Options:
    return Options(
        tags=tuple(draw(st.lists(references(), max_size=3))),
        network_mode=draw(
            st.one_of(
                st.sampled_from(["", "default", "none", "host", "bridge", "container:x", "HOST"]),
                st.text(max_size=20),
            )
        ),
        build_args=draw(
            st.dictionaries(
                st.one_of(st.sampled_from(_ARG_NAMES), st.text(max_size=10)),
                st.text(max_size=20),
                max_size=3,
            )
        ),
        dockerfile=draw(
            st.sampled_from(["", "Dockerfile", "./Dockerfile", "../Dockerfile", "/etc/passwd"])
        ),
        target=draw(st.sampled_from(["", "final", "-x", "a b"])),
        platform=draw(st.sampled_from(["", "linux/amd64", "linux/", "Linux/AMD64", "a b"])),
    )


# Dockerfiles whose base image is known -----------------------------------------------------


@dataclass(frozen=True)
class BaseCase:
    """A Dockerfile and the image the Engine would use for its FROM (None: none, such as
    scratch or an unset variable, where the policy must refuse or nothing is pulled)."""

    dockerfile: str
    build_args: dict[str, str]
    effective: str | None


@st.composite
def base_cases(draw: st.DrawFn) -> BaseCase:
    """FROM a literal reference, or ${BASE} with or without a global ARG default,
    a build-argument override and a fallback: the cases where a wrong reading of the
    Dockerfile would let a disallowed image through."""
    literal = draw(references())
    if draw(st.booleans()) and all(ch not in literal for ch in "$\n\r\\\"'` \t"):
        return BaseCase(f"FROM {literal}\nRUN true\n", {}, literal or None)
    maybe = st.one_of(st.none(), valid_references(), valid_references(), structured_references())
    default, override, fallback = draw(maybe), draw(maybe), draw(maybe)
    declared = draw(st.booleans())
    lines = []
    for value in (default, override, fallback):
        if value is not None and any(ch in value for ch in "$\n\r\\\"'`}{ \t"):
            return BaseCase("FROM scratch\n", {}, None)
    if declared:
        lines.append(f"ARG BASE={default}" if default is not None else "ARG BASE")
    use = f"${{BASE:-{fallback}}}" if fallback is not None else "${BASE}"
    lines += [f"FROM {use} AS stage", "RUN true", ""]
    build_args = {"BASE": override} if override is not None else {}
    value = None
    if declared:
        value = override if override is not None else default
    effective = value or fallback
    return BaseCase("\n".join(lines), build_args, effective)


# Build contexts ------------------------------------------------------------------------------

_NAMES = [
    "Dockerfile",
    "./Dockerfile",
    "app.txt",
    "dir/file",
    "dir",
    "../escape",
    "../../etc/passwd",
    "/etc/passwd",
    "/",
    ".",
    "a/../../b",
    "link",
    "link/inside",
    "x" * 300,
    "/".join(["d" * 100] * 50),
    "dev",
    "ä/ü",
    "a\\..\\b",
    "",
]
_TARGETS = [
    "app.txt",
    "dir",
    "..",
    "../..",
    "/",
    "/etc/shadow",
    "dir/../..",
    "link",
    "missing",
    ".",
]
_KINDS = ["file", "file", "dir", "symlink", "hardlink", "chr", "blk", "fifo", "pax-bomb"]


@dataclass(frozen=True)
class Member:
    name: str
    kind: str
    target: str
    data: bytes


@st.composite
def archive_members(draw: st.DrawFn) -> list[Member]:
    members = [
        Member(
            name=draw(
                st.one_of(
                    st.sampled_from(["app.txt", "dir/file", "dir", "link", "src/a.py"]),
                    st.sampled_from(_NAMES),
                    st.text(max_size=30),
                )
            ),
            kind=draw(st.sampled_from(_KINDS)),
            target=draw(st.one_of(st.sampled_from(_TARGETS), st.text(max_size=20))),
            data=draw(st.binary(max_size=64)),
        )
        for _ in range(draw(st.integers(min_value=0, max_value=6)))
    ]
    if draw(st.integers(min_value=0, max_value=3)):
        members.insert(0, Member("Dockerfile", "file", "", b"FROM scratch\nCOPY . /\n"))
    return members


def write_archive(members: list[Member]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for member in members:
            info = tarfile.TarInfo(member.name)
            data = None
            if member.kind == "file":
                info.size = len(member.data)
                data = io.BytesIO(member.data)
            elif member.kind == "dir":
                info.type = tarfile.DIRTYPE
            elif member.kind in ("symlink", "hardlink"):
                info.type = tarfile.SYMTYPE if member.kind == "symlink" else tarfile.LNKTYPE
                info.linkname = member.target
            elif member.kind in ("chr", "blk", "fifo"):
                info.type = {"chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE}.get(
                    member.kind, tarfile.FIFOTYPE
                )
            elif member.kind == "pax-bomb":
                info.pax_headers = {"comment": "p" * (1024 * 1024 + 1)}
            archive.addfile(info, data)
    return buffer.getvalue()


@functools.cache
def gzip_bomb() -> bytes:
    """About 40 KiB that unpack to a 32 MiB archive (a Dockerfile and a file of zeros)."""
    dockerfile = write_archive([Member("Dockerfile", "file", "", b"FROM scratch\n")])[:1024]
    zeros = tarfile.TarInfo("zeros")
    zeros.size = 32 * 1024 * 1024
    return gzip.compress(dockerfile + zeros.tobuf() + bytes(zeros.size) + bytes(1024), 9)


class DrawnContext:
    """A drawn build context. Its repr says how it was made (members, damage,
    compression) in under a kilobyte instead of showing its bytes: a gzip bomb or an
    archive of 5000-character names would print tens of kilobytes, which hypothesis
    refuses to generate (HypothesisWarning) whenever it reports a failing example."""

    __slots__ = ("data", "recipe")

    def __init__(self, data: bytes, recipe: str) -> None:
        self.data = data
        self.recipe = recipe

    def __repr__(self) -> str:
        return f"<context of {len(self.data)} bytes: {self.recipe}>"


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 40 else f"{text[:20]!r}...({len(text)} chars)"


def _recipe(members: list[Member]) -> str:
    return "[" + ", ".join(f"{m.kind} {_shown(m.name)}" for m in members) + "]"


@st.composite
def contexts(draw: st.DrawFn) -> DrawnContext:
    """A build context: a (hostile) archive, maybe gzipped, maybe damaged, or a bomb."""
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        return DrawnContext(gzip_bomb(), "gzip bomb")
    members = draw(archive_members())
    data = write_archive(members)
    recipe = _recipe(members)
    damage = draw(st.sampled_from(["none", "none", "none", "truncate", "flip", "append"]))
    if damage == "truncate" and data:
        data = data[: draw(st.integers(min_value=0, max_value=len(data)))]
        recipe += f", cut at {len(data)}"
    elif damage == "flip" and data:
        position = draw(st.integers(min_value=0, max_value=len(data) - 1))
        data = data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1 :]
        recipe += f", byte {position} flipped"
    elif damage == "append":
        appended = draw(st.binary(max_size=600))
        data += appended
        recipe += f", {len(appended)} bytes appended"
    if draw(st.booleans()):
        data = gzip.compress(data, 1)
        recipe = f"gzip of {recipe}"
    return DrawnContext(data, recipe)
