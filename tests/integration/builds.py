"""Helpers for the BuildImage tests: build contexts made in memory, request streams,
and reading a build's output."""

from __future__ import annotations

import gzip
import io
import tarfile
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import grpc

from devtools.engine_kinds import EngineKind
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc

BASE_IMAGE = "imagesvc-test/busybox:1.0"


def unique_repo(purpose: str) -> str:
    """A throwaway repository name, unique per call."""
    return f"imagesvc-test/{purpose}-{uuid.uuid4().hex[:10]}"


def make_tar(files: Mapping[str, str | bytes], *, compress: bool = False) -> bytes:
    """A tar archive (gzip-compressed if asked) holding ``files`` (path -> content)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue()
    return gzip.compress(raw) if compress else raw


def dockerfile(*lines: str) -> str:
    return "\n".join(lines) + "\n"


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def build_requests(
    options: pb.BuildOptions, context: bytes, *, chunk_size: int = 64 * 1024
) -> list[pb.BuildImageRequest]:
    """The options message, then the context in chunks of ``chunk_size`` bytes."""
    return [pb.BuildImageRequest(options=options)] + [
        pb.BuildImageRequest(context_chunk=part) for part in chunks(context, chunk_size)
    ]


@dataclass
class BuildOutcome:
    """What a BuildImage call streamed back, and how it ended."""

    logs: list[str] = field(default_factory=list)
    result: pb.BuildImageResult | None = None
    # Messages that came after the result (there should be none).
    after_result: int = 0
    error: grpc.RpcError | None = None

    @property
    def text(self) -> str:
        return "".join(self.logs)

    def failed(self) -> grpc.RpcError:
        assert self.error is not None, f"the build succeeded; output:\n{self.text}"
        return self.error

    def succeeded(self) -> pb.BuildImageResult:
        assert self.error is None, f"the build failed: {self.error}\noutput:\n{self.text}"
        assert self.result is not None, f"no result message; output:\n{self.text}"
        assert self.after_result == 0, "messages followed the result"
        return self.result


def read_build(responses: Iterable[pb.BuildImageResponse]) -> BuildOutcome:
    """Reads a BuildImage response stream to its end, keeping the error if it fails."""
    outcome = BuildOutcome()
    try:
        for response in responses:
            kind = response.WhichOneof("kind")
            if outcome.result is not None:
                outcome.after_result += 1
            if kind == "log":
                outcome.logs.append(response.log)
            elif kind == "result":
                outcome.result = response.result
    except grpc.RpcError as error:
        outcome.error = error
    return outcome


def run_build(
    stub: image_service_pb2_grpc.ImageServiceStub,
    options: pb.BuildOptions,
    context: bytes,
    *,
    chunk_size: int = 64 * 1024,
    timeout: float = 60,
) -> BuildOutcome:
    return run_build_requests(
        stub, build_requests(options, context, chunk_size=chunk_size), timeout=timeout
    )


def run_build_requests(
    stub: image_service_pb2_grpc.ImageServiceStub,
    requests: Iterable[pb.BuildImageRequest],
    *,
    timeout: float = 60,
) -> BuildOutcome:
    responses: Iterator[pb.BuildImageResponse] = stub.BuildImage(iter(requests), timeout=timeout)
    return read_build(responses)


def step_line(kind: EngineKind, number: int, steps: int, instruction: str = "") -> str:
    """How the kind's builder announces a Dockerfile step in the build's output."""
    if kind.buildah:
        return f"STEP {number}/{steps}: {instruction}".rstrip()
    return f"Step {number}/{steps} : {instruction}".rstrip()


def step_failure(kind: EngineKind, exit_code: int) -> str:
    """How the kind's builder words a RUN step that exited with ``exit_code``."""
    if kind.buildah:
        return f"while running runtime: exit status {exit_code}"
    return f"returned a non-zero code: {exit_code}"
