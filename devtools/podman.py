"""Podman's Docker-compatible API as a sandboxed engine, interchangeable with
``devtools.sandbox.Engine``.

Runs Debian 12's ``podman`` 4.3.1 as root::

    podman --root D/root --runroot D/run system service --time=0 unix://D/docker.sock

with configuration files of its own in ``D`` (named by environment variables, so
nothing under /etc/containers is written, and only the registries.conf drop-in
directory, which containers/image always merges, is read from there):

- ``registries.conf`` (``CONTAINERS_REGISTRIES_CONF``): no search registries, short
  names refused, loopback registries insecure (plain HTTP);
- ``storage.conf`` (``CONTAINERS_STORAGE_CONF``): overlay under ``D/root``;
- ``containers.conf`` (``CONTAINERS_CONF``): containers without a network; the default
  network is a CNI network of the ``loopback`` plugin alone, and the only CNI plugin
  Podman can find is ``loopback``, so a build step or container never gets an
  interface but ``lo`` (as dockerd's ``--bridge=none``) and no firewall rule is made;
- ``home/.config/containers/policy.json`` (found through ``HOME``): accept anything;
- ``auth.json`` (``REGISTRY_AUTH_FILE``) and ``tmp/`` (``TMPDIR``) for Podman's own files.

Registry traffic goes through the same dead-end proxy as the sandboxed dockerd's,
so anything but loopback fails at once.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import subprocess
from collections.abc import Sequence
from pathlib import Path

from devtools.sandbox import (
    _LOOPBACK_ONLY,
    SandboxError,
    _env,
    _is_root,
    _processes_mentioning,
    _SandboxedDaemon,
    _which,
)

__all__ = ["PODMAN_PROGRAMS", "PodmanEngine", "podman_missing"]

log = logging.getLogger("devtools.podman")

# What a Podman engine runs: the service, container monitors and OCI runtimes.
PODMAN_PROGRAMS = ("podman", "conmon", "runc", "crun", "catatonit")
_CNI_PLUGINS = Path("/usr/lib/cni")
_SERVICE_NPROC = 32768
# Registries reached over plain HTTP. containers/image matches "127.0.0.1" against
# "127.0.0.1:PORT" (a prefix up to ':'); its source warns this may change, so
# addresses with ports can be named exactly as well (`insecure_registries`).
_LOOPBACK_REGISTRY_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def _toml_string(value: str) -> str:
    # A JSON string is a valid TOML basic string.
    return json.dumps(value)


def _rlimit(kind: int, cap: int | None) -> str:
    """``soft:hard`` of this process's limit, at most ``cap``; -1 for unlimited."""
    values = []
    for value in resource.getrlimit(kind):
        if cap is not None and (value == resource.RLIM_INFINITY or value > cap):
            value = cap
        values.append("-1" if value == resource.RLIM_INFINITY else str(value))
    return ":".join(values)


def podman_missing() -> str | None:
    """Why the sandboxed Podman engine cannot run here, or None when it can."""
    if not _is_root():
        return "the sandboxed Podman engine needs root"
    podman = _which("podman")
    if podman is None:
        return "podman not found (apt-get install podman)"
    try:
        # "podman version 4.3.1"
        version = subprocess.run(
            [podman, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.split()[-1]
    except (OSError, subprocess.SubprocessError, IndexError):
        return f"{podman} --version failed"
    if not version.startswith("4."):
        return f"podman {version} is not Podman 4 (Debian 12's), whose differences are declared"
    if not (_CNI_PLUGINS / "loopback").exists():
        plugin = _CNI_PLUGINS / "loopback"
        return f"{plugin} not found (apt-get install containernetworking-plugins)"
    return None


class PodmanEngine(_SandboxedDaemon):
    """``podman system service`` on ``base_dir/docker.sock``, everything in ``base_dir``.

    The same interface as ``devtools.sandbox.Engine``: ``host``, ``base_dir``, ``pid``,
    ``is_running()``, ``ping()``, ``start(timeout)``, ``stop(timeout)``,
    ``stopped()``, ``leftover_processes()`` and ``docker(*args)`` (the docker CLI
    against this engine). ``stop()`` then ``start()`` keeps the images.
    """

    kind = "podman"
    program = "podman"
    _log = log
    _leftover_name = "podman"

    def __init__(
        self,
        base_dir: str | os.PathLike[str],
        *,
        insecure_registries: Sequence[str] = (),
    ) -> None:
        super().__init__(base_dir)
        self.root = self.base_dir / "root"
        self.run_root = self.base_dir / "run"
        # Named as ``Engine.data_root`` and ``Engine.exec_root`` for callers of both.
        self.data_root = self.root
        self.exec_root = self.run_root
        self.tmp_dir = self.base_dir / "tmp"
        self.home = self.base_dir / "home"
        self.registries_conf = self.base_dir / "registries.conf"
        self.storage_conf = self.base_dir / "storage.conf"
        self.containers_conf = self.base_dir / "containers.conf"
        self.policy_json = self.home / ".config" / "containers" / "policy.json"
        self.auth_file = self.base_dir / "auth.json"
        self.cni_config_dir = self.base_dir / "cni" / "net.d"
        self.cni_plugin_dir = self.base_dir / "cni" / "bin"
        self.insecure_registries = tuple(insecure_registries)

    def __repr__(self) -> str:
        return f"PodmanEngine({str(self.base_dir)!r})"

    def _is_daemon(self, argv: list[str]) -> bool:
        return (
            os.path.basename(argv[0]) == "podman"
            and "service" in argv
            and f"unix://{self.socket_path}" in argv
        )

    # ------------------------------------------------------------------ configuration

    def env(self) -> dict[str, str]:
        """The environment Podman runs with (the service and its CLI for clean-up)."""
        return _env(
            {
                **_LOOPBACK_ONLY,
                "HOME": str(self.home),
                "TMPDIR": str(self.tmp_dir),
                "XDG_RUNTIME_DIR": str(self.run_root / "xdg"),
                "CONTAINERS_CONF": str(self.containers_conf),
                "CONTAINERS_REGISTRIES_CONF": str(self.registries_conf),
                "CONTAINERS_STORAGE_CONF": str(self.storage_conf),
                "REGISTRY_AUTH_FILE": str(self.auth_file),
            }
        )

    def _podman_args(self) -> list[str]:
        return ["--root", str(self.root), "--runroot", str(self.run_root)]

    def _write_config(self) -> None:
        registries = [*_LOOPBACK_REGISTRY_HOSTS, *self.insecure_registries]
        lines = [
            "# devtools.podman: no search registries, no short names, loopback over HTTP.",
            "unqualified-search-registries = []",
            'short-name-mode = "disabled"',
        ]
        for location in dict.fromkeys(registries):
            lines += ["", "[[registry]]", f"location = {_toml_string(location)}", "insecure = true"]
        self.registries_conf.write_text("\n".join(lines) + "\n")
        self.storage_conf.write_text(
            "[storage]\n"
            'driver = "overlay"\n'
            f"graphroot = {_toml_string(str(self.root))}\n"
            f"runroot = {_toml_string(str(self.run_root))}\n"
        )
        # Podman gives every container 1048576 open files and 4194304 processes, more
        # than runc may set here (EPERM at container start): containers get this
        # process's open-file limit, and at most the 32768 processes the service itself
        # was measured to run with.
        ulimits = ", ".join(
            f'"{name}={_rlimit(kind, cap)}"'
            for name, kind, cap in (
                ("nofile", resource.RLIMIT_NOFILE, None),
                ("nproc", resource.RLIMIT_NPROC, _SERVICE_NPROC),
            )
        )
        self.containers_conf.write_text(
            "[containers]\n"
            'netns = "none"\n'
            f"default_ulimits = [{ulimits}]\n"
            # No proxy variables into containers and build steps.
            "http_proxy = false\n"
            'log_driver = "k8s-file"\n'
            "\n[network]\n"
            'network_backend = "cni"\n'
            'default_network = "podman"\n'
            f"network_config_dir = {_toml_string(str(self.cni_config_dir))}\n"
            f"cni_plugin_dirs = [{_toml_string(str(self.cni_plugin_dir))}]\n"
            "\n[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f"events_logfile_path = {_toml_string(str(self.base_dir / 'events.log'))}\n"
            f"tmp_dir = {_toml_string(str(self.run_root / 'libpod-tmp'))}\n"
            f"static_dir = {_toml_string(str(self.root / 'libpod'))}\n"
            f"volume_path = {_toml_string(str(self.root / 'volumes'))}\n"
            'image_default_transport = "docker://"\n'
        )
        if not self.auth_file.exists():
            # Podman's CLI (the clean-up's `podman rm`) refuses a named file that is absent.
            self.auth_file.write_text("{}\n")
            self.auth_file.chmod(0o600)
        self.policy_json.parent.mkdir(parents=True, exist_ok=True)
        self.policy_json.write_text(
            json.dumps({"default": [{"type": "insecureAcceptAnything"}]}, indent=2) + "\n"
        )
        # The default network: loopback only (a network Podman cannot list in detail,
        # but uses). Only the loopback plugin exists for it to run.
        self.cni_config_dir.mkdir(parents=True, exist_ok=True)
        (self.cni_config_dir / "podman.conflist").write_text(
            json.dumps(
                {"cniVersion": "0.4.0", "name": "podman", "plugins": [{"type": "loopback"}]},
                indent=2,
            )
            + "\n"
        )
        self.cni_plugin_dir.mkdir(parents=True, exist_ok=True)
        plugin = self.cni_plugin_dir / "loopback"
        if not plugin.exists():
            plugin.symlink_to(_CNI_PLUGINS / "loopback")

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 60.0) -> None:
        """Spawn the service (in its own session) and wait until it answers ``/_ping``."""
        if self.is_running():
            raise SandboxError(f"{self!r} is already running (pid {self.pid})")
        missing = podman_missing()
        if missing is not None:
            raise SandboxError(f"cannot start Podman: {missing}")
        podman = _which("podman")
        assert podman is not None
        self._cleanup_leftovers()
        for d in (self.base_dir, self.root, self.run_root, self.tmp_dir, self.home):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o700)
        self.docker_config.mkdir(exist_ok=True)
        self._write_config()
        cmd = [
            podman,
            *self._podman_args(),
            "system",
            "service",
            "--time=0",
            self.host,
        ]
        proc = self._spawn(cmd, self.env(), cwd=self.base_dir)
        self.pidfile.write_text(f"{proc.pid}\n")
        self._wait_until_ready(proc, timeout)

    def _end_containers(self) -> None:
        """Remove the containers: Podman leaves them running when its service ends
        (each has its own conmon)."""
        ids = self.docker("ps", "--all", "--quiet", check=False, timeout=30).stdout.split()
        if ids:
            self.docker("rm", "--force", *ids, check=False, timeout=60)

    def leftover_processes(self) -> list[int]:
        """podman, conmon or runtime processes still tied to this engine's base dir."""
        return _processes_mentioning(str(self.base_dir), PODMAN_PROGRAMS)

    def _remove_orphaned_containers(self) -> None:
        if not self.containers_conf.exists():
            return
        # Containers a killed service left behind: Podman's own CLI removes them
        # from the same storage, without the service.
        subprocess.run(
            [
                "podman",
                *self._podman_args(),
                "rm",
                "--all",
                "--force",
                "--time=0",
            ],
            env=self.env(),
            cwd=self.base_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
            check=False,
        )

    def _clear_runtime_state(self) -> None:
        """Nothing: the run root stays in ``base_dir`` (the overlay driver's mounts under
        it are gone by now)."""
