"""Packing a build context directory: what goes into the tar stream, how, and in what
pieces (the tar is read back with the standard library)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from imagesvc_client.build_context import BuildContext, ContextError, chunked
from tests.unit.file_trees import write_tree


def _read(context: BuildContext, chunk_size: int = 512) -> dict[str, tarfile.TarInfo]:
    data = b"".join(context.chunks(chunk_size))
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return {member.name: member for member in archive.getmembers()}


def _content(context: BuildContext, name: str) -> bytes:
    data = b"".join(context.chunks())
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        extracted = archive.extractfile(name)
        assert extracted is not None
        return extracted.read()


def test_sends_what_dockerignore_leaves_in_sorted_and_root_owned(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "Dockerfile": "FROM scratch\n",
            ".dockerignore": "*.log\nbuild\nvendor\n!vendor/keep/**\nDockerfile\n",
            "b.txt": "b",
            "a.txt": "a",
            "app.log": "log",
            "build/out.bin": "out",
            "vendor/drop/x.go": "x",
            "vendor/keep/y.go": "y",
            "src/z.txt": "z",
        },
    )
    context = BuildContext.prepare(tmp_path)

    names = context.names()
    members = _read(context)

    assert names == [
        ".dockerignore",
        "Dockerfile",  # excluded by .dockerignore, sent anyway
        "a.txt",
        "b.txt",
        "src/",
        "src/z.txt",
        "vendor/keep/y.go",  # brought back from an excluded directory
    ]
    assert sorted(members) == sorted(n.rstrip("/") for n in names)
    assert all(m.uid == 0 and m.gid == 0 and m.uname == "" for m in members.values())
    assert _content(context, "vendor/keep/y.go") == b"y"


def test_links_stay_links_and_keep_their_mode(tmp_path: Path) -> None:
    write_tree(tmp_path, {"Dockerfile": "FROM scratch\n", "tool.sh": "#!/bin/sh\n"})
    (tmp_path / "tool.sh").chmod(0o755)
    (tmp_path / "alias").symlink_to("tool.sh")
    (tmp_path / "outside").symlink_to("/etc/passwd")
    os.link(tmp_path / "tool.sh", tmp_path / "z-hard")

    members = _read(BuildContext.prepare(tmp_path))

    assert members["tool.sh"].mode & 0o777 == 0o755
    assert members["alias"].issym()
    assert members["alias"].linkname == "tool.sh"
    # Never followed: the link itself is sent, not the host file.
    assert members["outside"].issym()
    assert members["outside"].size == 0
    assert members["z-hard"].islnk()
    assert members["z-hard"].linkname == "tool.sh"


def test_chunks_have_the_asked_size(tmp_path: Path) -> None:
    write_tree(tmp_path, {"Dockerfile": "FROM scratch\n", "big.bin": "x" * 100_000})
    chunks = list(BuildContext.prepare(tmp_path).chunks(4096))
    assert len(chunks) > 20
    assert {len(c) for c in chunks[:-1]} == {4096}
    assert 0 < len(chunks[-1]) <= 4096
    assert list(chunked(iter([b"abc", b"", b"defg"]), 3)) == [b"abc", b"def", b"g"]


def test_dockerfile_inside_and_outside_the_context(tmp_path: Path) -> None:
    context_dir = write_tree(tmp_path / "ctx", {"sub/Build.df": "FROM scratch\n", "f": "f"})
    elsewhere = write_tree(tmp_path / "other", {"Dockerfile.dev": "FROM scratch\nLABEL dev=1\n"})

    by_name = BuildContext.prepare(context_dir, "sub/Build.df")
    by_path = BuildContext.prepare(context_dir, context_dir / "sub" / "Build.df")
    outside = BuildContext.prepare(context_dir, elsewhere / "Dockerfile.dev")

    assert by_name.dockerfile == by_path.dockerfile == "sub/Build.df"
    assert outside.dockerfile.startswith(".dockerfile.")
    assert outside.dockerfile in _read(outside)
    assert _content(outside, outside.dockerfile) == b"FROM scratch\nLABEL dev=1\n"


def test_unusable_contexts_are_refused_before_sending(tmp_path: Path) -> None:
    with pytest.raises(ContextError, match="not a directory"):
        BuildContext.prepare(tmp_path / "nowhere")
    with pytest.raises(ContextError, match="Dockerfile"):
        BuildContext.prepare(tmp_path)
    write_tree(tmp_path, {"Dockerfile": "FROM scratch\n"})
    with pytest.raises(ContextError, match="outside the build context"):
        BuildContext.prepare(tmp_path, "../Dockerfile")
    (tmp_path / ".dockerignore").write_text("[unclosed\n")
    with pytest.raises(ContextError, match=r"\.dockerignore"):
        BuildContext.prepare(tmp_path)
