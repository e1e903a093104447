"""The container image, built from the repository's Dockerfile and run for real on the
sandboxed engine (make test-image).

No public registry is reachable, so the base image is made here (devtools/base_image.py:
debootstrapped Debian bookworm with python3, `docker import`ed) and the wheels come from
a loopback wheelhouse repacked from this virtualenv (wheelhouse.py): the build passes
--build-arg BASE_IMAGE and pip's --no-index/--find-links arguments and never leaves
loopback (--network host for its RUN steps, the engine having --bridge=none).

The container then runs as a deployment would: the engine's socket mounted, the socket's
group as the build's DOCKER_GID, authentication on (a tokens file mounted read-only),
listening on free loopback ports of the host network; the Python client lists, pulls,
builds, tags and pushes through it, Docker's HEALTHCHECK turns healthy (and unhealthy
when the probe fails), `docker stop` ends it cleanly at once, and without authentication
the image's 0.0.0.0 default refuses to start. Under the Helm chart's restrictions (read-only
root with a tmpfs /tmp, no capabilities, no-new-privileges, an arbitrary uid in group 0)
it serves and spools a build context over the in-memory limit; a read-only root without a
writable /tmp is refused at start.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from docker.utils.build import exclude_paths

from devtools.base_image import DEFAULT_TAG as BASE_TAG
from devtools.base_image import make_base_image
from devtools.sandbox import BuiltImage, Engine, Registry, free_port
from imagesvc.config import Settings
from imagesvc.core.credential_files import hash_token
from imagesvc_client import ImageClient, ImagesvcError, Unauthenticated, Unavailable
from tests.integration.builds import dockerfile, make_tar
from tests.integration.deploy.wheelhouse import make_wheelhouse, served
from tests.integration.local_images import exists, inspect, unique_repo
from tests.integration.transfers import registry_has_manifest

pytestmark = [pytest.mark.integration, pytest.mark.image]

REPO = Path(__file__).resolve().parents[3]
USER_ID = "10001"
DEFAULT_DOCKER_GID = 2375  # the Dockerfile's, docker:dind's docker group
PORTS = {"50051/tcp", "8080/tcp"}
# The service's venv and its image config on top of the base (measured: about 35 MB).
MAX_ADDED_BYTES = 80 * 1024 * 1024
MAX_CONTEXT_BYTES = 2 * 1024 * 1024
BUILD_OUTPUT_LINES = 60  # of a failed build, in the failure message
TOKEN = secrets.token_urlsafe(32)
# Docker's (and compose's) default wait between SIGTERM and SIGKILL on stop.
DOCKER_STOP_SECONDS = 10
IMAGE_GRACE_SECONDS = 8  # the Dockerfile's IMAGESVC_SHUTDOWN_GRACE_SECONDS
ARBITRARY_UID = "12345"  # as OpenShift assigns: in no /etc/passwd, group 0
# Build contexts above this are spooled to a file in the temporary directory.
SPOOL_MEMORY_BYTES = Settings().build_context_memory_bytes


@dataclass(frozen=True)
class ServiceImage:
    tag: str
    id: str
    socket_gid: int
    revision: str
    wheelhouse: str


def _docker_json(engine: Engine, *args: str) -> Any:
    return json.loads(engine.docker(*args).stdout)


def _dangling(engine: Engine) -> set[str]:
    listed = engine.docker("image", "ls", "--quiet", "--no-trunc", "--filter", "dangling=true")
    return set(listed.stdout.split())


@pytest.fixture(scope="module")
def base_image(engine: Engine, busybox_image: BuiltImage) -> Iterator[str]:
    """The debootstrapped base (its rootfs is cached in .build/base-image)."""
    make_base_image(engine.host, BASE_TAG)
    yield BASE_TAG
    engine.docker("image", "rm", BASE_TAG, check=False)


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The wheelhouse's URL on 127.0.0.1 (the same for every build of the module, so
    that the builder stage, whose pip arguments are in its cache key, is reused)."""
    wheels = tmp_path_factory.mktemp("wheelhouse")
    make_wheelhouse(wheels)
    with served(wheels) as url:
        yield url


def _build(engine: Engine, tag: str, build_args: dict[str, str]) -> None:
    """docker build of the repository with these --build-args."""
    args = ["build", "--network", "host", "--tag", tag]  # RUN steps reach the wheelhouse
    for key, value in build_args.items():
        args += ["--build-arg", f"{key}={value}"]
    # The classic builder: there is no buildx plugin on this CLI.
    result = engine.docker(*args, str(REPO), env={"DOCKER_BUILDKIT": "0"}, timeout=600, check=False)
    if result.returncode != 0:
        # The build's own output (a failed RUN step's is on stdout), not just its exit code.
        output = "\n".join((result.stdout + result.stderr).splitlines()[-BUILD_OUTPUT_LINES:])
        pytest.fail(f"docker build exited {result.returncode}; its output ends:\n{output}")


@pytest.fixture(scope="module")
def service_image(engine: Engine, base_image: str, wheelhouse: str) -> Iterator[ServiceImage]:
    """The image built for the sandboxed engine's socket (DOCKER_GID = its group)."""
    tag = f"imagesvc-test/imagesvc:{secrets.token_hex(4)}"
    socket_gid = engine.socket_path.stat().st_gid
    assert socket_gid != DEFAULT_DOCKER_GID
    revision = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    dangling_before = _dangling(engine)
    _build(
        engine,
        tag,
        {
            "BASE_IMAGE": base_image,
            "PIP_NO_INDEX": "1",
            "PIP_FIND_LINKS": wheelhouse,
            "DOCKER_GID": str(socket_gid),
            "REVISION": revision,
        },
    )
    image_id = inspect(engine, tag)["Id"]
    yield ServiceImage(tag, image_id, socket_gid, revision, wheelhouse)
    engine.docker("image", "rm", "--force", tag, check=False)
    # The builder stage is left dangling by the classic builder.
    for leftover in _dangling(engine) - dangling_before:
        engine.docker("image", "rm", leftover, check=False)


@pytest.fixture(scope="module")
def default_group_image(
    engine: Engine, base_image: str, wheelhouse: str, service_image: ServiceImage
) -> Iterator[str]:
    """The image with the Dockerfile's default DOCKER_GID (docker:dind's group), which
    does not match this engine's socket: the run-time --group-add case."""
    tag = f"imagesvc-test/imagesvc-default-gid:{secrets.token_hex(4)}"
    _build(
        engine,
        tag,
        {"BASE_IMAGE": base_image, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": wheelhouse},
    )
    yield tag
    engine.docker("image", "rm", "--force", tag, check=False)


@dataclass
class Container:
    engine: Engine
    name: str
    grpc_address: str

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = _docker_json(self.engine, "container", "inspect", self.name)[0][
            "State"
        ]
        return state

    def logs(self) -> str:
        result = self.engine.docker("logs", self.name, check=False)
        return result.stdout + result.stderr

    def log_lines(self) -> list[dict[str, Any]]:
        """The server's JSON log lines (stdout)."""
        result = self.engine.docker("logs", self.name)
        return [json.loads(line) for line in result.stdout.splitlines()]

    def wait_for_health(self, status: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            health = state.get("Health") or {}
            if health.get("Status") == status:
                return state
            assert state["Running"], f"container exited: {state}\n{self.logs()}"
            assert time.monotonic() < deadline, f"not {status}: {health}\n{self.logs()}"
            time.sleep(0.2)

    def wait_for_exit(self, timeout: float = 30) -> dict[str, Any]:
        """The state once the container has exited; fails at once if the server came up
        (turned healthy) instead."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            if not state["Running"]:
                return state
            health = (state.get("Health") or {}).get("Status")
            assert health != "healthy", f"the server started:\n{self.logs()}"
            assert time.monotonic() < deadline, f"still running: {state}\n{self.logs()}"
            time.sleep(0.2)


@pytest.fixture
def tokens_dir(tmp_path: Path) -> Path:
    """A tokens file as a Secret would hold it, readable by the image's user (hashed
    entries are safe to expose)."""
    directory = tmp_path / "secrets"
    directory.mkdir()
    directory.chmod(0o755)
    tokens = {"tokens": [{"identity": "deployer", "roles": ["admin"], "sha256": hash_token(TOKEN)}]}
    path = directory / "tokens.json"
    path.write_text(json.dumps(tokens))
    path.chmod(0o644)
    return directory


@pytest.fixture
def start_service(
    engine: Engine, service_image: ServiceImage, tokens_dir: Path
) -> Iterator[Callable[..., Container]]:
    """Runs the image as a deployment would; removes the containers afterwards."""
    names: list[str] = []

    def start(
        *,
        image: str = service_image.tag,
        env: dict[str, str] | None = None,
        start_period: str = "",
        run_args: tuple[str, ...] = (),
    ) -> Container:
        name = f"imagesvc-test-{secrets.token_hex(4)}"
        grpc_address = f"127.0.0.1:{free_port()}"
        variables = {
            # Addresses as variables, not flags: the HEALTHCHECK reads the same ones.
            "IMAGESVC_GRPC_ADDRESS": grpc_address,
            "IMAGESVC_HTTP_ADDRESS": f"127.0.0.1:{free_port()}",
            **(env or {}),
        }
        args = ["run", "--detach", "--name", name, "--network", "host"]
        args += ["--volume", f"{engine.socket_path}:/var/run/docker.sock"]
        args += ["--volume", f"{tokens_dir}:/etc/imagesvc:ro"]
        args += ["--health-interval", "1s", "--health-retries", "3"]
        if start_period:  # failures in it do not count (the image says 10 s)
            args += ["--health-start-period", start_period]
        for key, value in variables.items():
            args += ["--env", f"{key}={value}"]
        names.append(name)
        # Everything after the image is a serve flag (ENTRYPOINT imagesvc serve).
        engine.docker(*args, *run_args, image, "--tokens-file", "/etc/imagesvc/tokens.json")
        return Container(engine, name, grpc_address)

    yield start
    for name in names:
        engine.docker("rm", "--force", "--volumes", name, check=False)


# The build context ------------------------------------------------------------------


def test_the_build_context_is_only_what_the_image_needs() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # docker-py applies .dockerignore as the docker CLI does.
    files = {p for p in exclude_paths(str(REPO), patterns) if (REPO / p).is_file()}
    size = sum((REPO / p).stat().st_size for p in files)
    assert {"pyproject.toml", "README.md", "service/src/imagesvc/cli.py"} <= files
    assert "service/src/imagesvc/v1/image_service_pb2.py" in files
    tops = {p.split("/")[0] for p in files}
    assert tops <= {"pyproject.toml", "README.md", "service", "Dockerfile", ".dockerignore"}, tops
    assert not [p for p in files if "__pycache__" in p or ".egg-info" in p]
    assert size < MAX_CONTEXT_BYTES, size


# The image ----------------------------------------------------------------------------


def _run_in_image(
    engine: Engine, image: str, *command: str, user: str | None = None
) -> subprocess.CompletedProcess[str]:
    options = ["--rm", "--network", "none", "--entrypoint", command[0]]
    if user is not None:
        options += ["--user", user]
    return engine.docker("run", *options, image, *command[1:], check=False)


def test_image_configuration(engine: Engine, service_image: ServiceImage, base_image: str) -> None:
    image = inspect(engine, service_image.tag)
    config = image["Config"]
    assert config["User"] == USER_ID  # numeric, so runAsNonRoot can check it
    assert set(config["ExposedPorts"]) == PORTS
    assert config["Entrypoint"] == ["imagesvc", "serve"]
    assert config["Cmd"] is None
    assert config["Healthcheck"]["Test"] == ["CMD", "imagesvc", "healthcheck"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PYTHONDONTWRITEBYTECODE"] == env["PYTHONUNBUFFERED"] == "1"
    assert env["IMAGESVC_GRPC_ADDRESS"] == "0.0.0.0:50051"
    assert env["IMAGESVC_HTTP_ADDRESS"] == "0.0.0.0:8080"
    # The drain ends before `docker stop` kills (see the test of a stop during a call).
    assert float(env["IMAGESVC_SHUTDOWN_GRACE_SECONDS"]) == IMAGE_GRACE_SECONDS
    assert config["WorkingDir"] == "/opt/imagesvc"
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "imagesvc"
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert labels["org.opencontainers.image.revision"] == service_image.revision
    assert labels["org.opencontainers.image.base.name"] == base_image
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    added = image["Size"] - inspect(engine, base_image)["Size"]
    assert 0 < added < MAX_ADDED_BYTES, added


def test_image_user_is_in_the_socket_group(engine: Engine, service_image: ServiceImage) -> None:
    ids = _run_in_image(engine, service_image.tag, "id")
    assert ids.returncode == 0, ids.stderr
    assert ids.stdout.split() == [
        f"uid={USER_ID}(imagesvc)",
        f"gid={USER_ID}(imagesvc)",
        f"groups={USER_ID}(imagesvc),{service_image.socket_gid}(docker-socket)",
    ]


def test_image_has_no_build_tools_sources_or_build_arguments(
    engine: Engine, service_image: ServiceImage, base_image: str
) -> None:
    tools = "gcc cc c++ g++ make ld as cpp pip pip3 git"
    found = _run_in_image(
        engine,
        service_image.tag,
        "sh",
        "-c",
        f"for t in {tools}; do command -v $t; done; ls -d /src /root/.cache 2>/dev/null; true",
    )
    assert found.stdout == "", found.stdout
    # pip, setuptools, wheels: the final stage adds none to what the base has (Debian's
    # python3-venv keeps ensurepip's wheels in /usr/share/python-wheels).
    packaging = "find / -xdev \\( -name '*.whl' -o -name pip -o -name setuptools \\) -print"
    in_image = _run_in_image(engine, service_image.tag, "sh", "-c", packaging, user="0")
    in_base = _run_in_image(engine, base_image, "sh", "-c", packaging, user="0")
    assert in_image.returncode == in_base.returncode == 0, in_image.stderr
    assert sorted(in_image.stdout.split()) == sorted(in_base.stdout.split())
    venv_pip = _run_in_image(engine, service_image.tag, "python3", "-c", "import pip")
    assert venv_pip.returncode == 1
    assert "No module named 'pip'" in venv_pip.stderr
    # The builder stage's arguments (an index URL may hold credentials) are not in the
    # final image's history; nor is anything else of the build.
    history = engine.docker(
        "history", "--no-trunc", "--format", "{{.CreatedBy}}", service_image.tag
    )
    assert "PIP_" not in history.stdout
    assert service_image.wheelhouse not in history.stdout
    # The server starts in it: `docker run IMAGE --help` is serve's help.
    helped = engine.docker("run", "--rm", "--network", "none", service_image.tag, "--help")
    assert helped.stdout.startswith("usage: imagesvc serve")


def test_the_socket_group_can_be_added_at_run_time(
    engine: Engine, default_group_image: str, start_service: Callable[..., Container]
) -> None:
    ids = _run_in_image(engine, default_group_image, "id", "-G")
    assert ids.stdout.split() == [USER_ID, str(DEFAULT_DOCKER_GID)]
    socket_gid = str(engine.socket_path.stat().st_gid)
    # Readiness (the HEALTHCHECK's service) follows the daemon's ping through the socket.
    added = start_service(image=default_group_image, run_args=("--group-add", socket_gid))
    added.wait_for_health("healthy")
    without = start_service(image=default_group_image, start_period="1ms")
    state = without.wait_for_health("unhealthy")
    assert "imagesvc healthcheck: NOT_SERVING" in state["Health"]["Log"][-1]["Output"]


# The running service --------------------------------------------------------------------


def test_the_container_serves_the_engine_through_the_python_client(
    engine: Engine,
    open_registry: Registry,
    busybox_image: BuiltImage,
    start_service: Callable[..., Container],
) -> None:
    container = start_service()
    state = container.wait_for_health("healthy")
    assert state["Health"]["Log"][-1]["ExitCode"] == 0
    assert "imagesvc healthcheck: SERVING" in state["Health"]["Log"][-1]["Output"]

    # Authentication is on, as in a real deployment.
    with (
        ImageClient(container.grpc_address, timeout=30) as anonymous,
        pytest.raises(Unauthenticated),
    ):
        list(anonymous.list())

    repository = unique_repo("deploy")
    remote = f"{open_registry.address}/{repository}"
    with ImageClient(container.grpc_address, token=TOKEN, timeout=30) as client:
        # list: the engine's images, through the mounted socket.
        listed = list(client.list(references=[busybox_image.tag]))
        assert [image.id for image in listed] == [busybox_image.id]

        # tag + push to the loopback registry, then pull it back.
        client.tag(busybox_image.tag, f"{remote}:pulled")
        pushed = client.push(f"{remote}:pulled").wait()
        assert pushed.digest.startswith("sha256:")
        assert registry_has_manifest(open_registry, repository, "pulled")
        client.remove(f"{remote}:pulled")
        pulled = client.pull(f"{remote}:pulled").wait()
        assert pulled.image_id == busybox_image.id

        # build a small context, then tag and push the result.
        context = make_tar(
            {"Dockerfile": dockerfile(f"FROM {busybox_image.tag}", "RUN echo built > /built")}
        )
        built = client.build(context, tags=[f"{remote}:built"]).wait()
        assert built.image_id.startswith("sha256:")
        client.tag(f"{remote}:built", f"{remote}:shipped")
        client.push(f"{remote}:shipped").wait()
        assert registry_has_manifest(open_registry, repository, "shipped")
        for tag in ("pulled", "built", "shipped"):
            client.remove(f"{remote}:{tag}")

    logs = container.logs()
    access = [line for line in container.log_lines() if line["logger"] == "imagesvc.access"]
    methods = [line.get("grpc_method") for line in access]
    assert methods.count("/imagesvc.v1.ImageService/PushImage") == 2, methods
    assert {line.get("identity") for line in access if line.get("grpc_code") == "OK"} == {
        "deployer"
    }
    assert TOKEN not in logs
    assert TOKEN not in json.dumps(container.state()["Health"])


def test_docker_stop_ends_the_server_cleanly_and_at_once(
    engine: Engine, start_service: Callable[..., Container]
) -> None:
    container = start_service()
    container.wait_for_health("healthy")
    started = time.monotonic()
    # Docker's default: SIGTERM, then SIGKILL after 10 s.
    engine.docker("stop", container.name)
    took = time.monotonic() - started
    state = container.state()
    assert state["ExitCode"] == 0, container.logs()
    assert not state["OOMKilled"]
    assert took < 5, took
    messages = [line["message"] for line in container.log_lines()]
    assert "shutting down" in messages
    assert messages[-1] == "stopped", messages


def test_docker_stop_during_a_long_call_drains_and_exits_before_dockers_kill(
    engine: Engine, busybox_image: BuiltImage, start_service: Callable[..., Container]
) -> None:
    container = start_service()
    container.wait_for_health("healthy")
    step = f"sleep {60 + secrets.randbelow(1000) / 1000:.3f}"  # this test's own RUN step
    context = make_tar({"Dockerfile": dockerfile(f"FROM {busybox_image.tag}", f"RUN {step}")})
    failures: list[ImagesvcError] = []

    def build() -> None:
        with ImageClient(container.grpc_address, token=TOKEN, timeout=120) as client:
            try:
                client.build(context, no_cache=True).wait()
            except ImagesvcError as exc:
                failures.append(exc)

    builder = threading.Thread(target=build, name="long-build")
    builder.start()
    deadline = time.monotonic() + 60
    while step not in engine.docker("ps", "--no-trunc", "--format", "{{.Command}}").stdout:
        assert builder.is_alive(), (failures, container.logs())
        assert time.monotonic() < deadline, container.logs()
        time.sleep(0.1)

    started = time.monotonic()
    engine.docker("stop", container.name)  # Docker's default: SIGKILL after 10 s
    took = time.monotonic() - started
    builder.join(timeout=30)
    state = container.state()
    # 137 would be Docker's SIGKILL in the middle of the drain.
    assert state["ExitCode"] == 0, (took, container.logs())
    assert IMAGE_GRACE_SECONDS - 1 < took < DOCKER_STOP_SECONDS, took
    messages = [line["message"] for line in container.log_lines()]
    assert messages[-1] == "stopped", messages
    # The call ended with a status, not a connection torn by the kill.
    assert len(failures) == 1, failures
    assert isinstance(failures[0], Unavailable), failures


def test_a_failing_probe_makes_the_container_unhealthy(
    start_service: Callable[..., Container],
) -> None:
    # The server runs fine; the probe asks for a health service it does not have.
    container = start_service(
        env={"IMAGESVC_HEALTHCHECK_SERVICE": "no-such-service"}, start_period="1ms"
    )
    state = container.wait_for_health("unhealthy")
    last = state["Health"]["Log"][-1]
    assert last["ExitCode"] == 1
    assert "NOT_FOUND" in last["Output"]


# Kubernetes' restrictions (the Helm chart's securityContext) ---------------------------


def _proc_status(container: Container) -> dict[str, str]:
    """/proc/1/status of the server (PID 1), read from inside the container."""
    status = container.engine.docker("exec", container.name, "cat", "/proc/1/status").stdout
    return dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)


def test_the_server_runs_and_spools_large_builds_under_the_charts_restrictions(
    engine: Engine,
    service_image: ServiceImage,
    busybox_image: BuiltImage,
    start_service: Callable[..., Container],
) -> None:
    # What the chart's securityContext amounts to: a read-only root with an emptyDir at
    # /tmp, no capabilities, no privilege escalation, the runtime's seccomp profile, and
    # (OpenShift) an arbitrary uid in group 0, given the socket's group as a
    # supplementary group (the image's /etc/group names only its own user).
    container = start_service(
        run_args=(
            "--read-only",
            "--tmpfs",
            "/tmp",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--user",
            f"{ARBITRARY_UID}:0",
            "--group-add",
            str(service_image.socket_gid),
        )
    )
    container.wait_for_health("healthy")
    status = _proc_status(container)
    assert status["Uid"].split() == [ARBITRARY_UID] * 4
    assert status["Gid"].split() == ["0"] * 4
    assert str(service_image.socket_gid) in status["Groups"].split()
    assert status["NoNewPrivs"] == "1"
    assert int(status["CapEff"], 16) == int(status["CapBnd"], 16) == 0
    assert status["Seccomp"] == "2"  # the engine's default profile: a filter

    # Over the in-memory limit, the context goes to a file in /tmp (the tmpfs); random
    # bytes, so no compression could bring it under.
    payload = secrets.token_bytes(SPOOL_MEMORY_BYTES + 2 * 1024 * 1024)
    context = make_tar(
        {
            "Dockerfile": dockerfile(f"FROM {busybox_image.tag}", "COPY payload /payload"),
            "payload": payload,
        }
    )
    assert len(context) > SPOOL_MEMORY_BYTES
    tag = f"{unique_repo('deploy-restricted')}:built"
    try:
        with ImageClient(container.grpc_address, token=TOKEN, timeout=60) as client:
            listed = list(client.list(references=[busybox_image.tag]))
            assert [image.id for image in listed] == [busybox_image.id]
            built = client.build(context, tags=[tag]).wait()
            assert inspect(engine, tag)["Id"] == built.image_id
            copied = engine.docker(
                "run", "--rm", "--network", "none", "--entrypoint", "wc", tag, "-c", "/payload"
            )
            assert copied.stdout.split()[0] == str(len(payload))
            client.remove(tag)
        assert not exists(engine, tag)
    finally:
        engine.docker("image", "rm", "--force", tag, check=False)
    assert container.state()["Running"], container.logs()


def test_a_read_only_root_without_a_writable_tmp_is_refused_at_start(
    service_image: ServiceImage, start_service: Callable[..., Container]
) -> None:
    # Authentication on and loopback addresses: the listen policy lets it through, so
    # the spool directory check is what stops it, before any large build could fail
    # (with the socket's group, a server that did start would turn healthy at once).
    container = start_service(
        run_args=(
            "--read-only",
            "--user",
            f"{ARBITRARY_UID}:0",
            "--group-add",
            str(service_image.socket_gid),
        )
    )
    state = container.wait_for_exit()
    logs = container.logs()
    assert state["ExitCode"] == 2, logs
    assert (
        "imagesvc: build contexts are spooled to the temporary directory (TMPDIR, /tmp),"
        " which is not writable"
    ) in logs
    assert "docker run --tmpfs /tmp; Kubernetes: an emptyDir" in logs


def test_without_authentication_the_default_address_is_refused(
    engine: Engine, service_image: ServiceImage
) -> None:
    # The image listens on 0.0.0.0 by default; without tokens or a client CA that is
    # refused before anything is bound (--network none: nothing could reach it anyway).
    refused = engine.docker(
        "run",
        "--rm",
        "--network",
        "none",
        "--volume",
        f"{engine.socket_path}:/var/run/docker.sock",
        service_image.tag,
        check=False,
        timeout=60,
    )
    assert refused.returncode == 2
    assert refused.stderr.startswith(
        "imagesvc: refusing to listen on 0.0.0.0:50051 (gRPC) and 0.0.0.0:8080 (HTTP)"
        " without authentication"
    ), refused.stderr
    assert "--insecure-allow-unauthenticated" in refused.stderr
