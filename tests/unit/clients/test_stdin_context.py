"""`imagesvc-cli build -`: a tar archive on stdin (plain or compressed) is the context
as is, anything else a Dockerfile packed into a context of its own (as the docker CLI)."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest

from imagesvc_client.cli.stdin_context import is_archive, stdin_context


def _tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


class _Trickle(io.RawIOBase):
    """A pipe that hands over at most 100 bytes a read."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        size = min(len(buffer), 100, len(self._data))
        buffer[:size] = self._data[:size]
        self._data = self._data[size:]
        return size


def test_a_tar_archive_passes_through_whole_and_keeps_the_dockerfile_name() -> None:
    archive = _tar({"build/App.dockerfile": b"FROM scratch\n", "big": bytes(100_000)})
    context, dockerfile = stdin_context(
        io.BufferedReader(_Trickle(archive)), "build/App.dockerfile"
    )
    assert not isinstance(context, bytes)
    assert context.read() == archive
    assert dockerfile == "build/App.dockerfile"


@pytest.mark.parametrize(
    "compressed",
    [
        gzip.compress(b"x" * 1000),
        b"BZh91AY&SY" + bytes(20),
        b"\xfd7zXZ\x00" + bytes(20),
        b"\x28\xb5\x2f\xfd" + bytes(20),
    ],
)
def test_compressed_streams_are_archives(compressed: bytes) -> None:
    assert is_archive(compressed)


@pytest.mark.parametrize("text", [b"FROM scratch\nCOPY . /\n", b"", b"x" * 600])
def test_anything_else_is_a_dockerfile_in_a_context_of_its_own(text: bytes) -> None:
    assert not is_archive(text)
    context, dockerfile = stdin_context(io.BufferedReader(_Trickle(text)), "ignored")
    assert isinstance(context, bytes)
    assert dockerfile == "Dockerfile"
    with tarfile.open(fileobj=io.BytesIO(context)) as tar:
        assert tar.getnames() == ["Dockerfile"]
        member = tar.extractfile("Dockerfile")
        assert member is not None
        assert member.read() == text
