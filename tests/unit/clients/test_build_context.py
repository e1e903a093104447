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


def test_every_chunk_size_cuts_the_same_stream(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "Dockerfile": "FROM scratch\n",
            "a/one.bin": "1" * 511,
            "a/two.bin": "2" * 513,
            "b.bin": "b" * 70_000,
            "empty": "",
        },
    )
    elsewhere = write_tree(tmp_path.parent / "df", {"Dockerfile": "FROM scratch\n"})
    context = BuildContext.prepare(tmp_path, elsewhere / "Dockerfile")  # an extra file too
    whole = b"".join(context.chunks(1 << 20))
    assert len(whole) % 512 == 0
    assert _content(context, "b.bin") == b"b" * 70_000
    for chunk_size in (1, 100, 512, 1000, 4096, 100_000):
        chunks = list(context.chunks(chunk_size))
        assert b"".join(chunks) == whole, chunk_size
        assert {len(c) for c in chunks[:-1]} <= {chunk_size}
        assert 0 < len(chunks[-1]) <= chunk_size
        # The views of chunk_views are the same pieces (each one read before the next).
        assert [bytes(view) for view in context.chunk_views(chunk_size)] == chunks


def test_chunk_views_reuse_one_buffer(tmp_path: Path) -> None:
    write_tree(tmp_path, {"Dockerfile": "FROM scratch\n", "big.bin": "x" * 10_000})
    views = BuildContext.prepare(tmp_path).chunk_views(4096)
    first = next(views)
    kept = bytes(first)
    second = next(views)
    assert second.obj is first.obj  # the same buffer, now holding the second chunk
    assert bytes(first) != kept


@pytest.mark.parametrize("chunk_size", [512, 1000])
@pytest.mark.parametrize("change", ["shrinks", "grows"])
def test_a_file_changed_while_read_keeps_its_declared_size(
    tmp_path: Path, chunk_size: int, change: str
) -> None:
    """The tar header already went out with the file's size: exactly that many bytes
    follow, zeros for what a shrunk file no longer has, nothing of what a grown one added;
    the next entries are intact."""
    size = 1 << 20
    write_tree(tmp_path, {"Dockerfile": "FROM scratch\n", "data.bin": "x" * size, "z": "z"})
    data = tmp_path / "data.bin"
    pieces = []
    changed = False
    for chunk in BuildContext.prepare(tmp_path).chunks(chunk_size):
        pieces.append(chunk)
        if not changed and b"x" * 200 in chunk:  # data.bin is being read
            changed = True
            if change == "shrinks":
                os.truncate(data, 1000)
            else:
                with data.open("ab") as more:
                    more.write(b"y" * 5000)
    assert changed
    assert {len(c) for c in pieces[:-1]} == {chunk_size}
    with tarfile.open(fileobj=io.BytesIO(b"".join(pieces))) as archive:
        member = archive.getmember("data.bin")
        extracted = archive.extractfile(member)
        assert extracted is not None
        content = extracted.read()
        last = archive.extractfile("z")
        assert last is not None
        assert last.read() == b"z"
    assert member.size == len(content) == size
    if change == "shrinks":
        sent = len(content.rstrip(b"\0"))
        assert 1000 <= sent < size  # what was read before the file shrank, then zeros
        assert content == b"x" * sent + bytes(size - sent)
    else:
        assert content == b"x" * size
