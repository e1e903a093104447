"""BuildImage through a real channel against the sandboxed engine, checked with the CLI."""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator

import grpc
import pytest

from devtools.engine_kinds import EngineKind
from devtools.sandbox import BuiltImage, SandboxEngine
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc
from tests.integration.builds import (
    BASE_IMAGE,
    build_requests,
    dockerfile,
    make_tar,
    run_build,
    run_build_requests,
    step_failure,
    step_line,
    unique_repo,
)
from tests.integration.conftest import server_settings
from tests.integration.local_images import inspect
from tests.integration.rpc_errors import error_info
from tests.scrape import scrape

# The API contract: runs once per engine kind (tests/integration/conftest.py).
pytestmark = pytest.mark.contract

Stub = image_service_pb2_grpc.ImageServiceStub


def image_exists(engine: SandboxEngine, image: str) -> bool:
    return engine.docker("image", "inspect", image, check=False).returncode == 0


def run_in(engine: SandboxEngine, image: str, *command: str) -> str:
    return engine.docker("run", "--rm", "--network", "none", image, *command).stdout


def image_ids(engine: SandboxEngine) -> set[str]:
    """Every image id on the engine, intermediate ones included."""
    listed = engine.docker("image", "ls", "--all", "--no-trunc", "--quiet").stdout
    return set(listed.split())


# Successful builds ---------------------------------------------------------------------


def test_build_with_tags_labels_args_and_chunked_context(
    stub: Stub,
    engine: SandboxEngine,
    engine_kind: EngineKind,
    busybox_image: BuiltImage,
    cleanup: list[str],
) -> None:
    repo = unique_repo("build")
    tags = [f"{repo}:1.0", f"{repo}:latest-build"]
    cleanup.extend(tags)
    greeting = f"hello-{os.urandom(4).hex()}"
    payload = os.urandom(3000).hex()  # 6000 bytes: the tar is about 8 KiB
    context = make_tar(
        {
            "Dockerfile": dockerfile(
                f"FROM {busybox_image.tag}",
                "ARG GREETING=unset",
                "ENV FROM_ARG=$GREETING STATIC=fixed",
                "COPY payload.txt /data/payload.txt",
                'RUN echo "greeting=$GREETING" > /data/greeting && wc -c /data/payload.txt',
            ),
            "payload.txt": payload,
        }
    )
    options = pb.BuildOptions(
        tags=tags,
        labels={"org.example.build": "yes", "org.example.run": repo},
        build_args={"GREETING": greeting},
    )
    requests = build_requests(options, context, chunk_size=1000)
    assert len(requests) > 5  # the context really goes in several chunks

    outcome = run_build_requests(stub, requests)

    result = outcome.succeeded()
    assert step_line(engine_kind, 1, 7, f"FROM {busybox_image.tag}") in outcome.text
    assert f"FROM {busybox_image.tag}" in outcome.text
    assert "Successfully built" in outcome.text
    inspected = inspect(engine, tags[0])
    assert result.image_id == inspected["Id"]
    assert inspect(engine, tags[1])["Id"] == inspected["Id"]
    assert list(result.tags) == tags
    assert sorted(inspected["RepoTags"]) == sorted(tags)
    labels = inspected["Config"]["Labels"]
    assert labels["org.example.build"] == "yes"
    assert labels["org.example.run"] == repo
    assert f"FROM_ARG={greeting}" in inspected["Config"]["Env"]
    assert "STATIC=fixed" in inspected["Config"]["Env"]
    assert run_in(engine, tags[0], "cat", "/data/greeting") == f"greeting={greeting}\n"
    assert run_in(engine, tags[0], "cat", "/data/payload.txt") == payload
    # The RUN step's output came back in the log.
    assert "6000 /data/payload.txt" in outcome.text


def test_build_gzip_context_with_custom_dockerfile_path(
    stub: Stub,
    engine: SandboxEngine,
    engine_kind: EngineKind,
    busybox_image: BuiltImage,
    cleanup: list[str],
) -> None:
    tag = f"{unique_repo('gzip')}:1"
    cleanup.append(tag)
    context = make_tar(
        {
            "ci/build/App.dockerfile": dockerfile(
                f"FROM {busybox_image.tag}",
                "COPY app/config.txt /etc/app.txt",
                "RUN echo compressed-ok > /marker",
            ),
            "app/config.txt": "config from a gzip context\n",
            # A decoy: the default path must not be used.
            "Dockerfile": dockerfile("FROM 127.0.0.1:1/must-not-be-used:1"),
        },
        compress=True,
    )
    assert context[:2] == b"\x1f\x8b"

    outcome = run_build(
        stub,
        pb.BuildOptions(tags=[tag], dockerfile="ci/build/App.dockerfile"),
        context,
        chunk_size=200,
    )

    result = outcome.succeeded()
    assert step_line(engine_kind, 1, 3) in outcome.text
    assert result.image_id == inspect(engine, tag)["Id"]
    assert run_in(engine, tag, "cat", "/etc/app.txt", "/marker") == (
        "config from a gzip context\ncompressed-ok\n"
    )


def test_build_stops_at_target_stage(
    stub: Stub, engine: SandboxEngine, busybox_image: BuiltImage, cleanup: list[str]
) -> None:
    tag = f"{unique_repo('target')}:1"
    cleanup.append(tag)
    context = make_tar(
        {
            "Dockerfile": dockerfile(
                f"FROM {busybox_image.tag} AS base",
                "RUN echo base > /stage",
                "FROM base AS middle",
                "ARG STAGE_NOTE",
                'RUN echo "middle $STAGE_NOTE" > /stage',
                "FROM base AS final",
                "RUN echo final-stage-ran > /stage",
            )
        }
    )

    outcome = run_build(
        stub,
        pb.BuildOptions(tags=[tag], target="middle", build_args={"STAGE_NOTE": "note"}),
        context,
    )

    result = outcome.succeeded()
    assert result.image_id == inspect(engine, tag)["Id"]
    assert run_in(engine, tag, "cat", "/stage") == "middle note\n"
    assert "final-stage-ran" not in outcome.text


# Build failures ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "exit_code"), [("RUN false", 1), ("RUN exit 3", 3)], ids=["false", "exit3"]
)
def test_failing_run_step_is_build_failed(
    stub: Stub,
    engine: SandboxEngine,
    engine_kind: EngineKind,
    busybox_image: BuiltImage,
    step: str,
    exit_code: int,
) -> None:
    tag = f"{unique_repo('fail')}:1"
    context = make_tar(
        {
            "Dockerfile": dockerfile(
                f"FROM {busybox_image.tag}",
                "RUN echo before-the-failure",
                step,
                "RUN echo never-reached",
            )
        }
    )
    outcome = run_build(stub, pb.BuildOptions(tags=[tag]), context)

    error = outcome.failed()
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "BUILD_FAILED"
    message = error.details() or ""
    assert step_line(engine_kind, 3, 4, step) in message  # the failing step ...
    assert step_failure(engine_kind, exit_code) in message  # ... and the Engine's error
    # What happened before the failure was streamed.
    assert step_line(engine_kind, 1, 4) in outcome.text
    assert "before-the-failure" in outcome.text
    assert "never-reached" not in outcome.text
    assert not image_exists(engine, tag)


def test_unknown_instruction_is_invalid_argument(
    stub: Stub, engine: SandboxEngine, busybox_image: BuiltImage
) -> None:
    tag = f"{unique_repo('parse')}:1"
    context = make_tar(
        {"Dockerfile": dockerfile(f"FROM {busybox_image.tag}", "FROBNICATE the build")}
    )
    outcome = run_build(stub, pb.BuildOptions(tags=[tag]), context)

    error = outcome.failed()
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error).reason == "INVALID_BUILD_OPTIONS"
    assert "unknown instruction" in (error.details() or "").lower()
    assert "frobnicate" in (error.details() or "").lower()
    assert not image_exists(engine, tag)


def test_from_unreachable_registry_is_unavailable(
    stub: Stub, engine: SandboxEngine, engine_kind: EngineKind
) -> None:
    tag = f"{unique_repo('nobase')}:1"
    context = make_tar({"Dockerfile": dockerfile("FROM 127.0.0.1:1/nope:1", "RUN true")})
    outcome = run_build(stub, pb.BuildOptions(tags=[tag]), context, timeout=30)

    error = outcome.failed()
    message = error.details() or ""
    # The base image can come from nowhere: the registry refuses the connection.
    assert error.code() is grpc.StatusCode.UNAVAILABLE, message
    assert error_info(error).reason == "REGISTRY_UNAVAILABLE"
    # Actionable: it names the registry and what went wrong.
    assert "127.0.0.1:1" in message
    assert "connection refused" in message
    assert step_line(engine_kind, 1, 2, "FROM 127.0.0.1:1/nope:1") in outcome.text
    assert not image_exists(engine, tag)


# Bad requests --------------------------------------------------------------------------


def _good_context() -> bytes:
    return make_tar({"Dockerfile": dockerfile(f"FROM {BASE_IMAGE}", "RUN true")})


def _truncated_tar() -> bytes:
    whole = make_tar(
        {"Dockerfile": dockerfile(f"FROM {BASE_IMAGE}"), "big.bin": os.urandom(20_000)}
    )
    return whole[:5000]  # cut in the middle of big.bin's data


@pytest.mark.parametrize(
    "context",
    [
        pytest.param(os.urandom(4096), id="random-bytes"),
        pytest.param(_truncated_tar(), id="truncated-tar"),
        pytest.param(
            b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + os.urandom(2000), id="gzip-garbage"
        ),
        pytest.param(
            make_tar({"Dockerfile": dockerfile(f"FROM {BASE_IMAGE}")}, compress=True)[:40],
            id="truncated-gzip",
        ),
    ],
)
def test_corrupt_context_is_invalid_build_context(
    stub: Stub, engine: SandboxEngine, context: bytes
) -> None:
    before = image_ids(engine)
    outcome = run_build(stub, pb.BuildOptions(tags=[f"{unique_repo('corrupt')}:1"]), context)

    error = outcome.failed()
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error).reason == "INVALID_BUILD_CONTEXT"
    assert "tar" in (error.details() or "")
    assert outcome.logs == []  # refused before the Engine saw anything
    assert image_ids(engine) == before


def test_empty_context_is_invalid_build_context(stub: Stub) -> None:
    outcome = run_build_requests(
        stub, [pb.BuildImageRequest(options=pb.BuildOptions(tags=["imagesvc-test/empty:1"]))]
    )
    error = outcome.failed()
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error).reason == "INVALID_BUILD_CONTEXT"


def test_missing_dockerfile_is_invalid_argument(stub: Stub) -> None:
    context = make_tar({"README": "no Dockerfile here\n"})
    outcome = run_build(stub, pb.BuildOptions(), context)
    error = outcome.failed()
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(error)
    assert info.reason == "INVALID_BUILD_OPTIONS"
    assert info.metadata["dockerfile"] == "Dockerfile"
    assert "'Dockerfile'" in (error.details() or "")

    outcome = run_build(stub, pb.BuildOptions(dockerfile="sub/Other.dockerfile"), _good_context())
    error = outcome.failed()
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "sub/Other.dockerfile" in (error.details() or "")


@pytest.mark.parametrize(
    ("options", "field", "reason"),
    [
        (pb.BuildOptions(tags=["UPPER:x"]), "UPPER", "INVALID_REFERENCE"),
        (pb.BuildOptions(tags=["ok/name:1", "bad tag"]), "bad tag", "INVALID_REFERENCE"),
        (pb.BuildOptions(dockerfile="/etc/Dockerfile"), "dockerfile", "INVALID_BUILD_OPTIONS"),
        (pb.BuildOptions(dockerfile="../Dockerfile"), "dockerfile", "INVALID_BUILD_OPTIONS"),
        (pb.BuildOptions(platform="linux/"), "platform", "INVALID_BUILD_OPTIONS"),
        (pb.BuildOptions(platform="not a platform"), "platform", "INVALID_BUILD_OPTIONS"),
        (pb.BuildOptions(target="-bad"), "target", "INVALID_BUILD_OPTIONS"),
        (pb.BuildOptions(build_args={"A=B": "x"}), "build argument", "INVALID_BUILD_OPTIONS"),
    ],
    ids=[
        "uppercase-tag",
        "tag-with-space",
        "absolute-dockerfile",
        "dockerfile-outside",
        "platform-no-arch",
        "platform-garbage",
        "target",
        "build-arg-name",
    ],
)
def test_bad_options_are_invalid_argument(
    stub: Stub, engine: SandboxEngine, options: pb.BuildOptions, field: str, reason: str
) -> None:
    before = image_ids(engine)
    outcome = run_build(stub, options, _good_context())
    error = outcome.failed()
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error).reason == reason
    assert field in (error.details() or "")
    assert outcome.logs == []
    assert image_ids(engine) == before


def test_first_message_must_be_options(stub: Stub) -> None:
    outcome = run_build_requests(stub, [pb.BuildImageRequest(context_chunk=_good_context())])
    error = outcome.failed()
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error).reason == "INVALID_BUILD_OPTIONS"
    assert "first" in (error.details() or "")


def test_no_message_at_all_is_invalid_argument(stub: Stub) -> None:
    outcome = run_build_requests(stub, [])
    error = outcome.failed()
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_options_twice_is_invalid_argument(stub: Stub, engine: SandboxEngine) -> None:
    tag = f"{unique_repo('twice')}:1"
    context = _good_context()
    requests = [
        pb.BuildImageRequest(options=pb.BuildOptions(tags=[tag])),
        pb.BuildImageRequest(context_chunk=context[:512]),
        pb.BuildImageRequest(options=pb.BuildOptions(tags=[tag])),
        pb.BuildImageRequest(context_chunk=context[512:]),
    ]
    outcome = run_build_requests(stub, requests)
    error = outcome.failed()
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error).reason == "INVALID_BUILD_OPTIONS"
    assert "only the first" in (error.details() or "")
    assert not image_exists(engine, tag)


# Size cap --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_cap_server(engine: SandboxEngine) -> Iterator[ThreadedServer]:
    """A second server that accepts build contexts up to 256 KiB."""
    server = ThreadedServer(server_settings(engine.host, build_context_max_bytes=256 * 1024))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def small_cap_stub(small_cap_server: ThreadedServer) -> Iterator[Stub]:
    with grpc.insecure_channel(f"127.0.0.1:{small_cap_server.port}") as channel:
        yield image_service_pb2_grpc.ImageServiceStub(channel)


def _build_messages_read(server: ThreadedServer) -> float:
    """BuildImage request messages the server's handler has read (its own counter)."""
    return scrape(server.http_port).value_or_zero(
        "grpc_server_msg_received_total",
        {
            "grpc_type": "bidi_stream",
            "grpc_service": "imagesvc.v1.ImageService",
            "grpc_method": "BuildImage",
        },
    )


def test_context_over_the_cap_is_refused_early(
    small_cap_server: ThreadedServer,
    small_cap_stub: Stub,
    engine: SandboxEngine,
    busybox_image: BuiltImage,
    cleanup: list[str],
) -> None:
    chunk = os.urandom(64 * 1024)
    total_chunks = 2000  # 125 MiB if all of it were read
    sent = 0

    def requests() -> Iterator[pb.BuildImageRequest]:
        nonlocal sent
        yield pb.BuildImageRequest(options=pb.BuildOptions(tags=[f"{unique_repo('big')}:1"]))
        # A valid tar header first: the context is checked while it arrives, so garbage
        # would be refused as no tar before the cap is reached.
        header = tarfile.TarInfo("blob")
        header.size = total_chunks * len(chunk)
        yield pb.BuildImageRequest(context_chunk=header.tobuf(tarfile.PAX_FORMAT))
        for _ in range(total_chunks):
            sent += 1
            yield pb.BuildImageRequest(context_chunk=chunk)

    read_before = _build_messages_read(small_cap_server)
    outcome = run_build_requests(small_cap_stub, requests(), timeout=60)

    error = outcome.failed()
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    info = error_info(error)
    assert info.reason == "BUILD_CONTEXT_TOO_LARGE"
    assert info.metadata["limit_bytes"] == str(256 * 1024)
    assert str(256 * 1024) in (error.details() or "")
    # The server stopped reading at the cap instead of swallowing the whole stream: its
    # handler read the options, the tar header and the chunks up to the one past the cap
    # (counted by the server itself: what the client got to send also depends on HTTP/2
    # flow-control windows, which grow with the connection's measured bandwidth).
    read = _build_messages_read(small_cap_server) - read_before
    assert 2 < read <= 2 + 256 * 1024 // len(chunk) + 2, f"the server read {read} messages"
    assert sent < total_chunks, "the client sent the whole stream"

    # ... and it keeps serving: a context under the cap builds.
    tag = f"{unique_repo('undercap')}:1"
    cleanup.append(tag)
    context = make_tar(
        {
            "Dockerfile": dockerfile(f"FROM {busybox_image.tag}", "COPY blob /blob"),
            "blob": os.urandom(200 * 1024),
        }
    )
    result = run_build(small_cap_stub, pb.BuildOptions(tags=[tag]), context).succeeded()
    assert result.image_id == inspect(engine, tag)["Id"]
