"""A sandboxed Docker engine and real registries for tests and local runs.

Everything here talks only to loopback: the engine runs with
``--bridge=none --iptables=false --ip-masq=false`` (containers and build steps get
only their own loopback), listens on a unix socket in its own base directory and
keeps its data root, exec root and pidfile to itself, so a system daemon is never
touched. The registries are ``docker-registry`` (distribution 2.8) on
``127.0.0.1:<free port>``; the engine treats 127.0.0.0/8 as insecure, so plain
HTTP push and pull work.

Stdlib only, so ``python3 -m devtools.sandbox ensure-packages`` works before any
virtualenv exists.

Command line::

    python -m devtools.sandbox up --dir DIR      # start (detached) an engine in DIR
    python -m devtools.sandbox down --dir DIR    # stop it
    python -m devtools.sandbox status --dir DIR
    python -m devtools.sandbox ensure-packages   # apt-get install what is missing
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import hashlib
import http.client
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from devtools.closing import StartedOnEnter
from devtools.engine_26 import ENGINE_26_DIR, is_fetched

__all__ = [
    "APT_INSTALL_COMMAND",
    "BUSYBOX",
    "DEBIAN_PACKAGES",
    "DOCKER_20_10",
    "DOCKER_26",
    "DOCKER_26_CONTAINERD",
    "DOCKER_KINDS",
    "DOCKER_SYSTEM",
    "ENGINE_PACKAGES",
    "BuiltImage",
    "DockerCommandError",
    "DockerKind",
    "Engine",
    "Registry",
    "Sandbox",
    "SandboxEngine",
    "SandboxError",
    "build_busybox_image",
    "ensure_packages",
    "free_port",
    "main",
    "missing_tools",
    "reap_stale_sandboxes",
    "system_dockerd_version",
]

log = logging.getLogger("devtools.sandbox")

# debootstrap makes the container image test's base image (devtools/base_image.py).


def _debian_codename() -> str:
    """VERSION_CODENAME of /etc/os-release (``bookworm``, ``trixie``), "" if unknown."""
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return ""
    match = re.search(r"^VERSION_CODENAME=\"?([a-z]*)", text, re.MULTILINE)
    return match.group(1) if match else ""


# Podman 4.3, the engine matrix's `podman` kind, is Debian 12's: the differences the
# matrix declares for it (tests/integration/engine_differences.py) are that version's,
# and Debian 13's Podman 5 drops the CNI networking the sandbox gives it.
_PODMAN_PACKAGES = (
    ("podman", "containernetworking-plugins") if _debian_codename() == "bookworm" else ()
)
DEBIAN_PACKAGES = (
    "docker.io",
    "docker-registry",
    "busybox-static",
    "apache2-utils",
    "debootstrap",
    # The fleet tests' DNS server (tests/integration/test_fleet.py).
    "dnsmasq-base",
    # `ip`: the fleet test's node in a network namespace of its own (test_fleet_netns.py).
    "iproute2",
    *_PODMAN_PACKAGES,
)
# Running the service on the sandboxed engine needs only the engine (scripts/run).
ENGINE_PACKAGES = ("docker.io",)
# What each package gives that the sandbox uses (busybox-static: BUSYBOX, checked apart).
_PACKAGE_TOOLS: dict[str, tuple[str, ...]] = {
    "docker.io": ("dockerd", "docker"),
    "docker-registry": ("docker-registry",),
    "busybox-static": (),
    "apache2-utils": ("htpasswd",),
    "debootstrap": ("debootstrap",),
    "dnsmasq-base": ("dnsmasq",),
    "iproute2": ("ip",),
    "podman": ("podman",),
    "containernetworking-plugins": (),  # checked by devtools.podman.podman_missing
}
APT_INSTALL_COMMAND = (
    "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
    + " ".join(DEBIAN_PACKAGES)
)
BUSYBOX = Path("/bin/busybox")

# Variables that would send the engine's or the CLI's traffic anywhere but loopback,
# or point the CLI at another daemon.
_SCRUBBED_ENV = frozenset(
    {
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
        "ftp_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "FTP_PROXY",
        "DOCKER_HOST",
        "DOCKER_CONTEXT",
        "DOCKER_TLS_VERIFY",
        "DOCKER_CERT_PATH",
        "DOCKER_CONFIG",
    }
)
_SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")
# unix socket paths are limited to 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 100
_SANDBOX_PREFIX = "isv-sbx-"


class SandboxError(RuntimeError):
    """The sandbox could not be set up, reached or torn down."""


class DockerCommandError(subprocess.CalledProcessError):
    """A docker CLI command failed; ``str()`` includes its stderr."""

    def __str__(self) -> str:
        err = self.stderr.strip() if isinstance(self.stderr, str) else ""
        return f"{super().__str__()}\n{err}" if err else super().__str__()


# --------------------------------------------------------------------------- helpers


# dockerd sends registry traffic through this proxy, a loopback port where nothing
# listens, so a reference to a non-local registry (docker.io, ...) fails at once
# instead of going out. Go never proxies loopback addresses, so the test registries on
# 127.0.0.1 are reached directly.
_DEAD_END_PROXY = "http://127.0.0.1:9"
_LOOPBACK_ONLY = {
    "HTTP_PROXY": _DEAD_END_PROXY,
    "HTTPS_PROXY": _DEAD_END_PROXY,
    "NO_PROXY": "localhost,127.0.0.0/8,::1",
}


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment without proxies or docker targets, sbin dirs on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    path = env.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(os.pathsep)
    env["PATH"] = os.pathsep.join(path + [d for d in _SBIN_DIRS if d not in path])
    if extra:
        env.update(extra)
    return env


def _which(name: str) -> str | None:
    return shutil.which(name, path=_env()["PATH"])


def _is_root() -> bool:
    return os.geteuid() == 0


def _is_static_elf(path: Path) -> bool:
    """True for an ELF executable without a program interpreter (statically linked)."""
    try:
        with path.open("rb") as f:
            ident = f.read(16)
            if len(ident) < 16 or ident[:4] != b"\x7fELF":
                return False
            is64 = ident[4] == 2
            endian = "<" if ident[5] == 1 else ">"
            if is64:
                header = f.read(48)
                phoff, phentsize, phnum = (
                    struct.unpack(endian + "Q", header[16:24])[0],
                    *struct.unpack(endian + "HH", header[38:42]),
                )
            else:
                header = f.read(36)
                phoff, phentsize, phnum = (
                    struct.unpack(endian + "I", header[12:16])[0],
                    *struct.unpack(endian + "HH", header[26:30]),
                )
            f.seek(phoff)
            for _ in range(phnum):
                entry = f.read(phentsize)
                if len(entry) < 4:
                    return False
                if struct.unpack(endian + "I", entry[:4])[0] == 3:  # PT_INTERP
                    return False
            return True
    except (OSError, struct.error):
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0) but is gone for our purposes.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else None


def _processes_mentioning(fragment: str, programs: Sequence[str]) -> list[int]:
    """Pids of processes whose program name starts with one of ``programs`` and
    whose command line mentions the path ``fragment`` (or something below it)."""
    pattern = re.compile(re.escape(fragment.rstrip("/")) + "(/|$)")
    found = []
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        argv = _cmdline(int(entry.name))
        if not argv or not _pid_alive(int(entry.name)):
            continue
        prog = os.path.basename(argv[0])
        if prog.startswith(tuple(programs)) and any(pattern.search(a) for a in argv):
            found.append(int(entry.name))
    return found


def _read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def _terminate(pids: Iterable[int], timeout: float) -> list[int]:
    """SIGTERM, wait up to ``timeout``, then SIGKILL. Returns pids that were killed."""
    pids = [p for p in pids if _pid_alive(p)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_pid_alive(p) for p in pids):
        time.sleep(0.05)
    killed = [p for p in pids if _pid_alive(p)]
    for pid in killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_pid_alive(p) for p in killed):
        time.sleep(0.05)
    return killed


def _unescape_mount(path: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def _mounts_under(*roots: Path) -> list[str]:
    """Mount points at or below any of ``roots``, deepest first."""
    prefixes = [str(r) for r in roots]
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        mountpoint = _unescape_mount(fields[1])
        if any(mountpoint == p or mountpoint.startswith(p + "/") for p in prefixes):
            found.append(mountpoint)
    return sorted(set(found), key=lambda m: (m.count("/"), m), reverse=True)


def _unmount_under(*roots: Path) -> None:
    for mountpoint in _mounts_under(*roots):
        log.warning("unmounting leftover %s", mountpoint)
        if subprocess.run(["umount", "-R", mountpoint], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-R", "-l", mountpoint], capture_output=True)
    left = _mounts_under(*roots)
    if left:
        raise SandboxError(f"mounts left under {', '.join(map(str, roots))}: {left}")


def _safe_rmtree(path: Path) -> None:
    """Remove ``path`` unless something is still mounted below it."""
    if not path.exists():
        return
    left = _mounts_under(path)
    if left:
        raise SandboxError(f"not removing {path}: still mounted below it: {left}")
    shutil.rmtree(path, ignore_errors=True)


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    """A TCP port free on 127.0.0.1 just now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


# A urllib opener that never uses a proxy: the registries are on loopback.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --------------------------------------------------------------------------- packages


def missing_tools(packages: Sequence[str] = DEBIAN_PACKAGES) -> list[str]:
    """What ``packages`` give the sandbox and is not on this machine."""
    missing = [t for p in packages for t in _PACKAGE_TOOLS[p] if not _which(t)]
    if "busybox-static" in packages and not _is_static_elf(BUSYBOX):
        missing.append(f"{BUSYBOX} (static, from busybox-static)")
    return missing


def ensure_packages(packages: Sequence[str] = DEBIAN_PACKAGES) -> None:
    """Install ``packages`` (by default all the sandbox uses: docker.io, docker-registry,
    busybox-static, apache2-utils, debootstrap) if any tool they provide is missing
    (needs root; otherwise says what to run)."""
    missing = missing_tools(packages)
    if not missing:
        return
    install = "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y " + " ".join(
        packages
    )
    if not _is_root():
        raise SandboxError(
            f"missing: {', '.join(missing)}.\n"
            "The sandboxed Docker engine needs Debian packages; install them as root with:\n"
            f"  sudo sh -c '{install}'"
        )
    if not _which("apt-get"):
        raise SandboxError(f"missing: {', '.join(missing)}, and apt-get is not available")
    log.warning("missing %s: installing %s", ", ".join(missing), " ".join(packages))
    # Package scripts must not start a system docker daemon or registry.
    policy = Path("/usr/sbin/policy-rc.d")
    own_policy = not policy.exists()
    if own_policy:
        policy.write_text("#!/bin/sh\n# temporary, devtools.sandbox: start no services\nexit 101\n")
        policy.chmod(0o755)
    try:
        env = _env({"DEBIAN_FRONTEND": "noninteractive"})
        for cmd in (
            ["apt-get", "update"],
            ["apt-get", "install", "-y", *packages],
        ):
            # Output to fd 2: stdout may be the DOCKER_HOST=... a caller captures.
            result = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=2)
            if result.returncode != 0:
                raise SandboxError(f"{' '.join(cmd)} failed with exit code {result.returncode}")
    finally:
        if own_policy:
            policy.unlink(missing_ok=True)
    still = missing_tools(packages)
    if still:
        raise SandboxError(f"still missing after apt-get install: {', '.join(still)}")


# --------------------------------------------------------------------------- engine


def api_get(socket_path: Path, path: str, timeout: float = 10.0) -> object:
    """``GET path`` of the Docker API on a unix socket, as JSON (fails unless 200 OK)."""
    conn = _UnixHTTPConnection(str(socket_path), timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as e:
        raise SandboxError(f"GET {path} on unix://{socket_path} failed: {e}") from e
    finally:
        conn.close()
    if response.status != 200:
        raise SandboxError(
            f"GET {path} on unix://{socket_path} answered {response.status}: {body!r}"
        )
    document: object = json.loads(body)
    return document


class SandboxEngine(Protocol):
    """What tests and the sandbox need of an engine serving Docker's API on a unix
    socket under ``base_dir``: a sandboxed dockerd (``Engine``) or Podman
    (``devtools.podman.PodmanEngine``)."""

    @property
    def base_dir(self) -> Path: ...
    @property
    def exec_root(self) -> Path: ...
    @property
    def host(self) -> str: ...
    @property
    def pid(self) -> int | None: ...
    def is_running(self) -> bool: ...
    def ping(self, timeout: float = 2.0) -> bool: ...
    def start(self, timeout: float = 60.0) -> None: ...
    def stop(self, timeout: float = 30.0, *, kill_containers: bool = True) -> None: ...
    def stopped(self) -> contextlib.AbstractContextManager[None]: ...
    def leftover_processes(self) -> list[int]: ...
    def api_get(self, path: str, timeout: float = 10.0) -> object: ...
    def docker(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = 300,
    ) -> subprocess.CompletedProcess[str]: ...


@dataclass(frozen=True)
class DockerKind:
    """Which dockerd an Engine runs: where its binaries are and how its image store is set.

    ``bin_dirs`` go first on PATH for dockerd (which finds containerd and its shims
    there too) and for the docker CLI; empty means the system's Debian 12 engine.
    """

    name: str
    version_prefix: str  # of the Engine version /version must report
    bin_dirs: tuple[Path, ...] = ()
    containerd_store: bool = False

    def daemon_config(self) -> dict[str, object]:
        # An explicit config even when empty: never /etc/docker/daemon.json.
        if self.containerd_store:
            return {"features": {"containerd-snapshotter": True}}
        return {}

    def missing(self) -> str | None:
        """Why this engine cannot run here, or None when it can."""
        if self.bin_dirs:
            if not is_fetched():
                return f"{ENGINE_26_DIR} is missing: run `python3 -m devtools.engine_26 fetch`"
            return None
        version = system_dockerd_version()
        if version is None:
            return f"dockerd not found (apt-get install docker.io, or: {APT_INSTALL_COMMAND})"
        if not version.startswith(self.version_prefix):
            return f"the system's dockerd is Engine {version}, not {self.version_prefix}x"
        return None


def system_dockerd_version() -> str | None:
    """The version of the dockerd on PATH (``dockerd --version``), None without one."""
    dockerd = _which("dockerd")
    if dockerd is None:
        return None
    try:
        out = subprocess.run(
            [dockerd, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    # "Docker version 20.10.24+dfsg1, build 297e128"
    match = re.search(r"version ([0-9][^\s,]*)", out)
    return match.group(1) if match else None


_ENGINE_26_BIN = (ENGINE_26_DIR / "usr" / "bin", ENGINE_26_DIR / "usr" / "sbin")
# The system's dockerd, whatever its version (Engine 20.10 on Debian 12, 26 on Debian 13):
# what `sandbox up` (scripts/run) and every test outside the engine matrix run.
DOCKER_SYSTEM = DockerKind("docker", "")
# Debian 12's docker.io: the system's dockerd, when that is Engine 20.10.
DOCKER_20_10 = DockerKind("docker-20.10", "20.10.")
# Debian 13's docker.io and containerd from tools/engine-26 (devtools/engine_26.py), on this
# machine's runc; the classic image store (graph drivers, overlay2).
DOCKER_26 = DockerKind("docker-26", "26.", bin_dirs=_ENGINE_26_BIN)
# The same engine with the containerd image store, the default of new Engine 29 installs.
DOCKER_26_CONTAINERD = DockerKind(
    "docker-26-containerd", "26.", bin_dirs=_ENGINE_26_BIN, containerd_store=True
)
DOCKER_KINDS = (DOCKER_20_10, DOCKER_26, DOCKER_26_CONTAINERD)


class _SandboxedDaemon(abc.ABC):
    """What a sandboxed engine daemon (``Engine``'s dockerd, ``PodmanEngine``'s Podman
    service) does alike: a Docker API on ``base_dir/docker.sock``, its pidfile and log in
    ``base_dir``, ``ping``, ``api_get``, the docker CLI against it, and the order of
    ``stop``. Subclasses say what differs: ``program`` (the daemon's name in file names
    and messages), ``_is_daemon`` (whose pid the pidfile holds), ``_end_containers``,
    ``leftover_processes``, ``_remove_orphaned_containers`` and ``_clear_runtime_state``.
    """

    program: str
    data_root: Path
    exec_root: Path
    # The logger of the module that defines the subclass.
    _log = log
    # Whose processes the leftover messages speak of.
    _leftover_name = "engine"

    def __init__(self, base_dir: str | os.PathLike[str]) -> None:
        self.base_dir = Path(base_dir).absolute()
        self.socket_path = self.base_dir / "docker.sock"
        self.pidfile = self.base_dir / f"{self.program}.pid"
        self.log_path = self.base_dir / f"{self.program}.log"
        self.docker_config = self.base_dir / "docker-config"
        self._proc: subprocess.Popen[bytes] | None = None
        if len(str(self.socket_path).encode()) > _MAX_SOCKET_PATH:
            raise SandboxError(
                f"{self.socket_path} is too long for a unix socket; use a shorter base dir"
            )

    def _env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of the docker CLI (and the daemon, unless it says otherwise)."""
        return _env(extra)

    @property
    def host(self) -> str:
        """The DOCKER_HOST value for this engine: ``unix:///.../docker.sock``."""
        return f"unix://{self.socket_path}"

    @property
    def pid(self) -> int | None:
        """The pid of this engine's daemon when it is running."""
        pid = _read_pid(self.pidfile)
        if pid is not None and _pid_alive(pid):
            argv = _cmdline(pid)
            if argv and self._is_daemon(argv):
                return pid
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        return None

    @abc.abstractmethod
    def _is_daemon(self, argv: list[str]) -> bool:
        """Whether the command line ``argv`` is this engine's daemon."""

    def is_running(self) -> bool:
        return self.pid is not None

    def ping(self, timeout: float = 2.0) -> bool:
        """True when ``GET /_ping`` on the socket answers 200 OK."""
        conn = _UnixHTTPConnection(str(self.socket_path), timeout)
        try:
            conn.request("GET", "/_ping")
            response = conn.getresponse()
            return response.status == 200 and response.read().strip() == b"OK"
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def api_get(self, path: str, timeout: float = 10.0) -> object:
        """``GET path`` of the Docker API on the socket, as JSON (fails unless 200 OK)."""
        return api_get(self.socket_path, path, timeout)

    # ------------------------------------------------------------------ lifecycle

    def _spawn(
        self, cmd: Sequence[str], env: Mapping[str, str], cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``cmd`` in its own session (so it outlives this process if left
        running), its output appended to the log."""
        with self.log_path.open("ab") as logf:
            logf.write(f"=== {time.strftime('%F %T')} {' '.join(cmd)}\n".encode())
            logf.flush()
            self._proc = subprocess.Popen(
                cmd,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        return self._proc

    def _wait_until_ready(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        """Wait until the spawned daemon answers ``/_ping``; clean up and raise if it
        exits first or does not answer within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                self._proc = None
                self._cleanup_leftovers()
                raise SandboxError(
                    f"{self.program} exited with code {proc.returncode} while starting; "
                    f"{self.log_path}:\n{_log_tail(self.log_path)}"
                )
            if self.ping(timeout=1.0):
                self._log.info("%s up at %s (pid %s)", self.program, self.host, proc.pid)
                return
            if time.monotonic() > deadline:
                tail = _log_tail(self.log_path)
                with contextlib.suppress(SandboxError):
                    self.stop()
                raise SandboxError(
                    f"{self.program} did not answer /_ping within {timeout:.0f}s; "
                    f"{self.log_path}:\n{tail}"
                )
            time.sleep(0.05)

    @abc.abstractmethod
    def start(self, timeout: float = 60.0) -> None:
        """Spawn the daemon and wait until it answers ``/_ping``."""

    def stop(self, timeout: float = 30.0, *, kill_containers: bool = True) -> None:
        """With ``kill_containers`` (the default) end the containers first
        (``_end_containers``), then SIGTERM the daemon (SIGKILL after ``timeout``) and
        make sure none of its processes or mounts are left."""
        pid = self.pid
        if pid is not None and kill_containers and self.ping():
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._end_containers()
        if pid is not None and _terminate([pid], timeout):
            self._log.warning(
                "%s (pid %d) ignored SIGTERM for %.0fs: killed", self.program, pid, timeout
            )
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
            self._proc = None
        if self.pid is not None:
            raise SandboxError(f"{self.program} (pid {self.pid}) survived SIGKILL")
        self._cleanup_leftovers()

    @abc.abstractmethod
    def _end_containers(self) -> None:
        """End the containers through the running daemon before stopping it."""

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """Stop the engine for the ``with`` body and start it again afterwards."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    @abc.abstractmethod
    def leftover_processes(self) -> list[int]:
        """Processes of this engine (daemon, container monitors, runtimes) still running."""

    def _cleanup_leftovers(self) -> None:
        """Unless the daemon runs: kill what it left (containers, their monitors,
        runtimes), unmount what is mounted under its roots, remove its socket and pidfile."""
        if self.pid is not None:
            return
        if self.leftover_processes():
            self._remove_orphaned_containers()
        leftovers = self.leftover_processes()
        if leftovers:
            self._log.warning("killing leftover %s processes %s", self._leftover_name, leftovers)
            _terminate(leftovers, timeout=5)
            left = self.leftover_processes()
            if left:
                raise SandboxError(f"{self._leftover_name} processes survived SIGKILL: {left}")
        _unmount_under(self.data_root, self.exec_root)
        self._clear_runtime_state()
        self.socket_path.unlink(missing_ok=True)
        self.pidfile.unlink(missing_ok=True)

    @abc.abstractmethod
    def _remove_orphaned_containers(self) -> None:
        """Remove containers a daemon that died left running, without the daemon."""

    @abc.abstractmethod
    def _clear_runtime_state(self) -> None:
        """Remove what must not outlive the daemon (after unmounting)."""

    # ------------------------------------------------------------------ CLI

    def docker(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = 300,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``docker -H <host> ARGS`` against this engine, output as text.

        The CLI gets the engine's own config dir (``DOCKER_CONFIG``) unless ``env``
        sets another; proxies and other DOCKER_* targets are dropped.
        """
        cmd = ["docker", "-H", self.host, *args]
        base = {"DOCKER_CONFIG": str(self.docker_config), "DOCKER_CLI_HINTS": "false"}
        result = subprocess.run(
            cmd,
            input=input,
            capture_output=True,
            text=True,
            env=self._env({**base, **(env or {})}),
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise DockerCommandError(result.returncode, cmd, result.stdout, result.stderr)
        return result


class Engine(_SandboxedDaemon):
    """An isolated dockerd: own data root, exec root, pidfile, config and unix socket.

    ``base_dir`` holds the data root (``data/``), the socket (``docker.sock``), the
    pidfile (``dockerd.pid``) and the log (``dockerd.log``). The exec root lives in a
    short path derived from ``base_dir`` (``/tmp/isv-<hash>``) because containerd's
    socket lives under it. ``stop()`` then ``start()`` reuses the same data root.
    ``kind`` says which dockerd runs (the system's, whatever its version, by default);
    ``start()`` checks that the engine reports that version and image store.
    """

    program = "dockerd"

    def __init__(
        self,
        base_dir: str | os.PathLike[str],
        *,
        kind: DockerKind = DOCKER_SYSTEM,
        shutdown_timeout: int = 5,
    ) -> None:
        super().__init__(base_dir)
        self.kind = kind
        self.data_root = self.base_dir / "data"
        digest = hashlib.sha256(str(self.base_dir).encode()).hexdigest()[:12]
        self.exec_root = Path(f"/tmp/isv-{digest}")
        self.config_file = self.base_dir / "daemon.json"
        self.shutdown_timeout = shutdown_timeout

    def __repr__(self) -> str:
        return f"Engine({str(self.base_dir)!r}, kind={self.kind.name})"

    def _env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of this engine's dockerd and CLI: its bin dirs first on PATH."""
        env = _env(extra)
        if self.kind.bin_dirs:
            env["PATH"] = os.pathsep.join([*map(str, self.kind.bin_dirs), env["PATH"]])
        return env

    def _is_daemon(self, argv: list[str]) -> bool:
        return os.path.basename(argv[0]) == "dockerd" and any(
            str(self.socket_path) in a for a in argv
        )

    def start(self, timeout: float = 60.0) -> None:
        """Spawn dockerd (in its own session, so it outlives this process if left
        running) and wait until it answers ``/_ping``."""
        if self.is_running():
            raise SandboxError(f"{self!r} is already running (pid {self.pid})")
        if not _is_root():
            raise SandboxError(
                "the sandboxed Docker engine needs root; run as root, or point "
                "DOCKER_HOST at a running Docker daemon"
            )
        missing = self.kind.missing()
        if missing is not None:
            raise SandboxError(f"cannot start {self.kind.name}: {missing}")
        dockerd = shutil.which("dockerd", path=self._env()["PATH"])
        if dockerd is None:
            raise SandboxError(
                f"dockerd not found; run `python3 -m devtools.sandbox ensure-packages` "
                f"as root (or: {APT_INSTALL_COMMAND})"
            )
        # Whatever a crashed run left behind (containerd, shims, mounts) goes first.
        self._cleanup_leftovers()
        for d in (self.base_dir, self.data_root, self.exec_root):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o700)
        self.docker_config.mkdir(exist_ok=True)
        self.config_file.write_text(json.dumps(self.kind.daemon_config()) + "\n")
        cmd = [
            dockerd,
            f"--config-file={self.config_file}",
            f"--data-root={self.data_root}",
            f"--exec-root={self.exec_root}",
            f"--pidfile={self.pidfile}",
            f"--host={self.host}",
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
            "--ip6tables=false",
            "--userland-proxy=false",
            f"--shutdown-timeout={self.shutdown_timeout}",
        ]
        self._wait_until_ready(self._spawn(cmd, self._env(_LOOPBACK_ONLY)), timeout)
        self._check_kind()

    def _api_document(self, path: str) -> dict[str, object]:
        document = self.api_get(path)
        if not isinstance(document, dict):
            raise SandboxError(f"GET {path} on {self.host} answered {document!r}")
        return document

    def _check_kind(self) -> None:
        """Stops the engine and raises unless it is the version and store its kind says:
        a wrong PATH would otherwise test another engine under this kind's name."""
        version = str(self._api_document("/version").get("Version", ""))
        driver_status = self._api_document("/info").get("DriverStatus") or []
        on_containerd = ["driver-type", "io.containerd.snapshotter.v1"] in driver_status  # type: ignore[operator]
        if version.startswith(self.kind.version_prefix) and on_containerd == (
            self.kind.containerd_store
        ):
            return
        with contextlib.suppress(SandboxError):
            self.stop()
        raise SandboxError(
            f"{self.kind.name} wanted (Engine {self.kind.version_prefix}x, containerd store "
            f"{self.kind.containerd_store}), but {self.host} runs Engine {version} with "
            f"containerd store {on_containerd}"
        )

    def _end_containers(self) -> None:
        """Kill the running containers: dockerd would otherwise give each its stop
        timeout (10 s by default, and a busybox ``sleep`` as PID 1 ignores SIGTERM)
        before shutting down."""
        running = self.docker("ps", "--quiet", check=False, timeout=30).stdout.split()
        if running:
            self.docker("kill", *running, check=False, timeout=30)

    def leftover_processes(self) -> list[int]:
        """containerd, shims or dockerd processes still tied to this engine."""
        return _processes_mentioning(
            str(self.exec_root), ("dockerd", "containerd", "runc", "docker-init")
        )

    def _clear_runtime_state(self) -> None:
        # The exec root is runtime state only. A stale containerd.pid in it makes the next
        # dockerd wait for a containerd that is gone (or a zombie not yet reaped).
        _safe_rmtree(self.exec_root)

    def _remove_orphaned_containers(self) -> None:
        """Kill containers whose containerd went away with them still running."""
        runc = _which("runc")
        runc_root = self.exec_root / "runtime-runc" / "moby"
        if runc is None or not runc_root.is_dir():
            return
        listed = subprocess.run(
            [runc, "--root", str(runc_root), "list", "--format", "json"],
            capture_output=True,
            text=True,
        )
        try:
            containers = json.loads(listed.stdout or "null") or []
        except json.JSONDecodeError:
            return
        for container in containers:
            cid = str(container.get("id", ""))
            if cid:
                subprocess.run(
                    [runc, "--root", str(runc_root), "kill", "--all", cid, "KILL"],
                    capture_output=True,
                )
                subprocess.run(
                    [runc, "--root", str(runc_root), "delete", "--force", cid],
                    capture_output=True,
                )


# --------------------------------------------------------------------------- registry


class Registry:
    """``docker-registry serve`` (distribution 2.8) on 127.0.0.1 with its own storage,
    optionally behind htpasswd (bcrypt) basic auth."""

    def __init__(
        self,
        base_dir: str | os.PathLike[str],
        *,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        self.base_dir = Path(base_dir).absolute()
        self.storage_dir = self.base_dir / "storage"
        self.config_path = self.base_dir / "config.yml"
        self.htpasswd_path = self.base_dir / "htpasswd"
        self.log_path = self.base_dir / "registry.log"
        self.pidfile = self.base_dir / "registry.pid"
        self.username = username
        self.password = password
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"Registry({str(self.base_dir)!r}, address={self.port and self.address!r})"

    @property
    def auth(self) -> bool:
        return self.username is not None

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``: the registry part of an image reference."""
        if self.port is None:
            raise SandboxError(f"{self!r} has not been started")
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def v2_status(self, timeout: float = 2.0) -> int | None:
        """The HTTP status of ``GET /v2/`` (200, or 401 behind auth); None if down."""
        if self.port is None:
            return None
        try:
            with _DIRECT.open(f"{self.url}/v2/", timeout=timeout) as response:
                status: int = response.status
                return status
        except urllib.error.HTTPError as e:
            e.close()
            return e.code
        except (OSError, http.client.HTTPException):
            return None

    def is_running(self) -> bool:
        return self._running_pid() is not None

    def _running_pid(self) -> int | None:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        pid = _read_pid(self.pidfile)
        if pid is not None and _pid_alive(pid):
            argv = _cmdline(pid)
            if argv and "docker-registry" in argv[0] and str(self.config_path) in argv:
                return pid
        return None

    def start(self, timeout: float = 20.0) -> None:
        if self.is_running():
            raise SandboxError(f"{self!r} is already running")
        registry = _which("docker-registry")
        if registry is None:
            raise SandboxError(
                "docker-registry not found; run `python3 -m devtools.sandbox "
                f"ensure-packages` as root (or: {APT_INSTALL_COMMAND})"
            )
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        if self.username is not None and self.password is not None:
            htpasswd = subprocess.run(
                ["htpasswd", "-Bbn", self.username, self.password],
                capture_output=True,
                text=True,
                check=False,
            )
            if htpasswd.returncode != 0:
                raise SandboxError(f"htpasswd failed: {htpasswd.stderr.strip()}")
            self.htpasswd_path.write_text(htpasswd.stdout.strip() + "\n")
        # The port is free when picked; if another process takes it before the registry
        # binds it, try another.
        for attempt in range(3):
            self.port = free_port()
            self.config_path.write_text(json.dumps(self._config(), indent=2) + "\n")
            with self.log_path.open("ab") as logf:
                logf.write(f"=== {time.strftime('%F %T')} port {self.port}\n".encode())
                logf.flush()
                self._proc = subprocess.Popen(
                    [registry, "serve", str(self.config_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    env=_env(),
                    start_new_session=True,
                )
            self.pidfile.write_text(f"{self._proc.pid}\n")
            if self._wait_ready(timeout):
                log.info("registry up at %s (auth=%s)", self.address, self.auth)
                return
            tail = _log_tail(self.log_path)
            self.stop()
            if "address already in use" not in tail or attempt == 2:
                raise SandboxError(f"registry did not come up; {self.log_path}:\n{tail}")
        raise AssertionError("unreachable")

    def _config(self) -> dict[str, object]:
        # JSON is YAML: no quoting surprises.
        config: dict[str, object] = {
            "version": "0.1",
            "log": {"level": "info", "fields": {"service": "registry"}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage_dir)},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {
                "addr": f"127.0.0.1:{self.port}",
                "secret": secrets.token_hex(16),
                "headers": {"X-Content-Type-Options": ["nosniff"]},
            },
        }
        if self.auth:
            config["auth"] = {
                "htpasswd": {"realm": "imagesvc-test", "path": str(self.htpasswd_path)}
            }
        return config

    def _wait_ready(self, timeout: float) -> bool:
        want = 401 if self.auth else 200
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            if self.v2_status(timeout=1.0) == want:
                return True
            time.sleep(0.05)
        return False

    def stop(self, timeout: float = 10.0) -> None:
        pid = self._running_pid()
        if pid is not None:
            _terminate([pid], timeout)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
            self._proc = None
        self.pidfile.unlink(missing_ok=True)


# --------------------------------------------------------------------------- images


@dataclass(frozen=True)
class BuiltImage:
    """An image built in the sandboxed engine."""

    tag: str
    id: str


def build_busybox_image(
    engine: SandboxEngine,
    tag: str,
    *,
    extra_lines: Sequence[str] = (),
    labels: Mapping[str, str] | None = None,
) -> str:
    """Build a tiny ``FROM scratch`` image with Debian's static busybox as its shell
    and tag it ``tag``. Returns the image id (``sha256:...``)."""
    if not _is_static_elf(BUSYBOX):
        raise SandboxError(
            f"{BUSYBOX} is missing or not static; install busybox-static "
            "(python3 -m devtools.sandbox ensure-packages)"
        )
    dockerfile = [
        "FROM scratch",
        "COPY busybox /bin/busybox",
        'RUN ["/bin/busybox", "--install", "-s", "/bin"]',
        *extra_lines,
    ]
    args = ["build", "--quiet", "--network", "none", "--tag", tag]
    for key, value in (labels or {}).items():
        args += ["--label", f"{key}={value}"]
    with tempfile.TemporaryDirectory(prefix="isv-build-") as context:
        shutil.copy2(BUSYBOX, Path(context, "busybox"))
        Path(context, "Dockerfile").write_text("\n".join(dockerfile) + "\n")
        # The classic builder: BuildKit needs the buildx plugin on the CLI side.
        built = engine.docker(*args, context, env={"DOCKER_BUILDKIT": "0"})
    lines = built.stdout.split()
    image_id = lines[-1] if lines else ""
    # Podman's quiet build prints the bare hex id.
    if re.fullmatch(r"[0-9a-f]{64}", image_id):
        image_id = f"sha256:{image_id}"
    inspected = engine.docker("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()
    if not image_id.startswith("sha256:") or inspected != image_id:
        raise SandboxError(
            f"build of {tag} printed {built.stdout!r}, but inspect says {inspected!r}"
        )
    return image_id


# --------------------------------------------------------------------------- sandbox


class Sandbox(StartedOnEnter):
    """One Engine (the system's dockerd), an open Registry and an htpasswd Registry
    (user ``imagesvc-test``, random password) in one base dir; further engines of other
    kinds on demand (``engine_of``), sharing the registries.

    ``with Sandbox() as sb:`` starts everything and tears it all down at the end.
    Without ``base_dir`` a fresh ``/tmp/isv-sbx-*`` dir is made and removed on close.
    """

    AUTH_USERNAME = "imagesvc-test"

    def __init__(self, base_dir: str | os.PathLike[str] | None = None) -> None:
        self._owns_dir = base_dir is None
        if base_dir is None:
            base_dir = tempfile.mkdtemp(prefix=_SANDBOX_PREFIX, dir="/tmp")
        self.base_dir = Path(base_dir).absolute()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.engine = Engine(self.base_dir / "engine")
        self.open_registry = Registry(self.base_dir / "registry-open")
        self.auth_registry = Registry(
            self.base_dir / "registry-auth",
            username=self.AUTH_USERNAME,
            password=secrets.token_urlsafe(18),
        )
        self._owner_file = self.base_dir / "owner"
        self._more_engines: dict[str, SandboxEngine] = {}

    def __repr__(self) -> str:
        return f"Sandbox({str(self.base_dir)!r})"

    def engine_of(self, name: str, make: Callable[[Path], SandboxEngine]) -> SandboxEngine:
        """The running engine called ``name``, made by ``make(its base dir)`` and started
        on first use; it lives until ``close()``, like the default engine."""
        if name not in self._more_engines:
            engine = make(self.base_dir / f"engine-{name}")
            engine.start()
            self._more_engines[name] = engine
        return self._more_engines[name]

    def start(self) -> Sandbox:
        ensure_packages()
        reap_stale_sandboxes()
        self._owner_file.write_text(f"{os.getpid()} {_start_time(os.getpid())}\n")
        try:
            self.open_registry.start()
            self.auth_registry.start()
            self.engine.start()
        except BaseException:
            with contextlib.suppress(Exception):
                self.close()
            raise
        return self

    def close(self) -> None:
        """Stop the engine and both registries; remove the base dir if it was ours.
        Raises if anything is left running or mounted."""
        errors: list[BaseException] = []
        engines: list[SandboxEngine] = [*self._more_engines.values(), self.engine]
        parts: list[SandboxEngine | Registry] = [*engines, self.open_registry, self.auth_registry]
        for part in parts:
            try:
                part.stop()
            except Exception as e:  # noqa: BLE001 - stop the rest, then report
                errors.append(e)
        left = _processes_mentioning(
            str(self.base_dir), ("dockerd", "containerd", "docker-registry", "runc")
        ) + [pid for engine in engines for pid in engine.leftover_processes()]
        if left:
            errors.append(SandboxError(f"processes left running after close: {sorted(left)}"))
        mounts = _mounts_under(self.base_dir, *(engine.exec_root for engine in engines))
        if mounts:
            errors.append(SandboxError(f"mounts left after close: {mounts}"))
        if not errors:
            self._owner_file.unlink(missing_ok=True)
            if self._owns_dir:
                _safe_rmtree(self.base_dir)
        if errors:
            raise SandboxError("; ".join(str(e) for e in errors)) from errors[0]


def reap_stale_sandboxes(tmp: str | os.PathLike[str] = "/tmp") -> list[Path]:
    """Tear down ``/tmp/isv-sbx-*`` sandboxes whose owning process is gone (a test run
    that was killed). Returns the dirs removed."""
    reaped = []
    for owner in Path(tmp).glob(f"{_SANDBOX_PREFIX}*/owner"):
        try:
            pid_text, _, started = owner.read_text().strip().partition(" ")
            pid = int(pid_text)
        except (OSError, ValueError):
            continue
        if _pid_alive(pid) and _start_time(pid) == started:
            continue
        base = owner.parent
        log.warning("reaping stale sandbox %s (owner pid %d is gone)", base, pid)
        try:
            # Stopping needs only the pidfile and exec root, whatever the engine's kind.
            for engine_dir in sorted(base.glob("engine*")):
                Engine(engine_dir).stop()
            Registry(base / "registry-open").stop()
            Registry(base / "registry-auth").stop()
            _safe_rmtree(base)
        except SandboxError as e:
            log.warning("could not reap %s: %s", base, e)
            continue
        reaped.append(base)
    return reaped


# --------------------------------------------------------------------------- CLI


def _cmd_up(args: argparse.Namespace) -> int:
    ensure_packages(ENGINE_PACKAGES)
    engine = Engine(args.dir)
    if engine.is_running() and not engine.ping():
        # Started but not answering yet (another `up` racing us), or wedged: wait a bit.
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline and engine.is_running() and not engine.ping():
            time.sleep(0.1)
    if engine.ping():
        print(f"sandbox: dockerd already running in {engine.base_dir}", file=sys.stderr)
    else:
        if engine.is_running():
            raise SandboxError(
                f"dockerd (pid {engine.pid}) in {engine.base_dir} does not answer; "
                f"see {engine.log_path}, or run `python -m devtools.sandbox down --dir "
                f"{args.dir}`"
            )
        engine.start(timeout=args.timeout)
        print(
            f"sandbox: started dockerd (pid {engine.pid}) in {engine.base_dir}; "
            f"stop it with `python -m devtools.sandbox down --dir {args.dir}`",
            file=sys.stderr,
        )
    print(f"DOCKER_HOST={engine.host}")
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    engine = Engine(args.dir)
    was = engine.pid
    engine.stop()
    print(
        f"sandbox: stopped dockerd (pid {was})" if was else "sandbox: no dockerd was running",
        file=sys.stderr,
    )
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    engine = Engine(args.dir)
    if engine.ping():
        print(f"DOCKER_HOST={engine.host}")
        return 0
    print(f"sandbox: no engine answering in {engine.base_dir}", file=sys.stderr)
    return 1


def _cmd_ensure_packages(args: argparse.Namespace) -> int:
    ensure_packages(ENGINE_PACKAGES if args.engine_only else DEBIAN_PACKAGES)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.sandbox",
        description="A sandboxed Docker engine (loopback only) for imagesvc development.",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a detached engine in DIR; print DOCKER_HOST=...")
    up.add_argument("--dir", required=True, help="base dir (data root, socket, pidfile, log)")
    up.add_argument("--timeout", type=float, default=60.0)
    up.set_defaults(func=_cmd_up)
    down = sub.add_parser("down", help="stop the engine in DIR")
    down.add_argument("--dir", required=True)
    down.set_defaults(func=_cmd_down)
    status = sub.add_parser("status", help="print DOCKER_HOST=... if the engine answers")
    status.add_argument("--dir", required=True)
    status.set_defaults(func=_cmd_status)
    ensure = sub.add_parser("ensure-packages", help="apt-get install what the sandbox needs")
    ensure.add_argument(
        "--engine-only", action="store_true", help="only the engine (docker.io), to run the service"
    )
    ensure.set_defaults(func=_cmd_ensure_packages)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="sandbox: %(message)s",
        stream=sys.stderr,
    )
    try:
        code: int = args.func(args)
    except SandboxError as e:
        print(f"sandbox: error: {e}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
