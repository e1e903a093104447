"""A newcomer's machine: a fresh Debian 12 or 13 root running the README's commands.

``debootstrap --variant=minbase`` makes the root (python3, python3-venv, git, curl, make,
ca-certificates and nothing else; cached as a tarball, unpacked anew for every run), a
clean ``git clone`` of the given commit goes to ``/root/imagesvc`` in it, and the command
runs there as root, entered with ``unshare --mount --pid --fork`` and ``pivot_root``:
/proc of its own, the host's /sys and /dev, and /tmp on a loop-mounted ext4 image (the
sandboxed engine's overlay2 wants a real file system). Not a plain chroot: under one,
runc's exec fails for images with a WORKDIR (/work/shared/reference/ENGINE.md).

The root shares the host's network: it reaches what this machine reaches (Debian's
archive, PyPI, npm), and its engines run loopback-only as everywhere else. Every process
started inside dies with the run (its PID namespace ends), and the run's directory is
removed afterwards unless ``--keep``.

Command line (as root)::

    python3 -m devtools.fresh_machine --suite bookworm run    # scripts/run until healthy
    python3 -m devtools.fresh_machine --suite trixie test     # scripts/test
    python3 -m devtools.fresh_machine --suite trixie --ref my-branch exec -- make test-fast

Stdlib only (run it with any python3 >= 3.11).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["SUITES", "cached_root", "main"]

SUITES = ("bookworm", "trixie")
PACKAGES = ("python3", "python3-venv", "git", "curl", "make", "ca-certificates")
MIRROR = "http://deb.debian.org/debian"
DEFAULT_CACHE = Path("/var/tmp/imagesvc-fresh")
REPO = Path(__file__).resolve().parent.parent
TMP_IMAGE_BYTES = 24 * 1024**3  # sparse: only what the engine writes takes space
CHECKOUT = "/root/imagesvc"
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# `run`: how long scripts/run may take to serve (it installs the venv and the engine).
RUN_READY_SECONDS = 900
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# This machine's own settings for package clients behind its TLS-inspecting proxy: passed
# in (they name the system bundle, which then holds the machine's CAs too).
_PASSED_ENV = ("NODE_EXTRA_CA_CERTS", "PIP_CERT")

# Inside the new mount and PID namespaces (host binaries until pivot_root): mount the
# root's /proc, /sys, /dev and /tmp, make it the root, drop the old one, run $@.
_ENTER = r"""
set -eu
root=$1; tmp_image=$2; shift 2
mount --make-rprivate /
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
mount -o loop "$tmp_image" "$root/tmp"
chmod 1777 "$root/tmp"
cd "$root"
mkdir -p .old-root
pivot_root . .old-root
exec /usr/sbin/chroot . /bin/sh -c \
  'umount -l /.old-root && rmdir /.old-root && cd "$0" && exec "$@"' "$@"
"""

# `run` inside the root: scripts/run in the background until its gRPC health answers.
_RUN_UNTIL_HEALTHY = r"""
scripts/run >/tmp/run.log 2>&1 &
pid=$!
started=$(date +%s)
while :; do
  if ! kill -0 "$pid" 2>/dev/null; then
    cat /tmp/run.log; echo "fresh: scripts/run exited before serving" >&2; exit 1
  fi
  if [ -x .venv/bin/imagesvc ] && .venv/bin/imagesvc healthcheck >/dev/null 2>&1; then
    break
  fi
  if [ $(( $(date +%s) - started )) -gt "$READY_SECONDS" ]; then
    cat /tmp/run.log; echo "fresh: not serving after ${READY_SECONDS}s" >&2; exit 1
  fi
  sleep 1
done
cat /tmp/run.log
echo "fresh: scripts/run serves (gRPC health SERVING) $(( $(date +%s) - started ))s after start"
.venv/bin/imagesvc-cli --server "$IMAGESVC_GRPC_ADDRESS" ls
kill -TERM "$pid"; wait "$pid" || true
"""


def say(message: str) -> None:
    print(f"fresh: {message}", file=sys.stderr, flush=True)


def cached_root(suite: str, cache: Path) -> Path:
    """The debootstrapped root of ``suite`` as a tarball, made once (about a minute)."""
    recipe = f"{suite}-minbase-{'-'.join(sorted(PACKAGES))}"
    tarball = cache / f"{recipe}.tar"
    if tarball.exists():
        return tarball
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix="debootstrap-") as work:
        root = Path(work) / "root"
        say(f"debootstrap {suite} into {root} (once; cached as {tarball})")
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                suite,
                str(root),
                MIRROR,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        partial = tarball.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(root), "-cf", str(partial), "."], check=True)
        partial.rename(tarball)
    return tarball


def clone(ref: str, target: Path) -> str:
    """A clean clone of ``ref`` of this repository at ``target``; returns the commit."""
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run(["git", "init", "--quiet", str(target)], check=True)
    subprocess.run(["git", "-C", str(target), "fetch", "--quiet", str(REPO), commit], check=True)
    subprocess.run(
        ["git", "-C", str(target), "checkout", "--quiet", "--detach", commit], check=True
    )
    return commit


def _certificates(bundle: Path) -> set[str]:
    text = bundle.read_text() if bundle.is_file() else ""
    end = "-----END CERTIFICATE-----"
    return {block.strip() + "\n" + end + "\n" for block in text.split(end)[:-1]}


def trust_machine_cas(root: Path) -> int:
    """This machine's extra certificate authorities (its proxy's: every HTTPS download
    goes through it) as local CAs of the root, as a company's machine would have them.
    Returns how many."""
    extra = sorted(_certificates(CA_BUNDLE) - _certificates(root / CA_BUNDLE.relative_to("/")))
    local = root / "usr/local/share/ca-certificates"
    local.mkdir(parents=True, exist_ok=True)
    for number, pem in enumerate(extra):
        (local / f"machine-{number}.crt").write_text(pem.lstrip())
    if extra:
        subprocess.run(
            ["chroot", str(root), "update-ca-certificates"], check=True, stdout=subprocess.DEVNULL
        )
    return len(extra)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_in_root(root: Path, tmp_image: Path, command: list[str], env: dict[str, str]) -> int:
    inner_env = {"PATH": ROOT_PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb", **env}
    inner = ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in inner_env.items()), *command]
    cmd = [
        "unshare",
        "--mount",
        "--pid",
        "--fork",
        "--kill-child",
        "/bin/sh",
        "-c",
        _ENTER,
        "enter",
        str(root),
        str(tmp_image),
        CHECKOUT,
        *inner,
    ]
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, check=False).returncode


def fresh_run(args: argparse.Namespace) -> int:
    tarball = cached_root(args.suite, args.cache)
    runs = args.cache / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(dir=runs, prefix=f"{args.suite}-"))
    root = run_dir / "root"
    tmp_image = run_dir / "tmp.ext4"
    try:
        root.mkdir()
        subprocess.run(["tar", "-C", str(root), "-xf", str(tarball)], check=True)
        shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
        say(f"{trust_machine_cas(root)} certificate authorities of this machine added")
        commit = clone(args.ref, root / CHECKOUT.lstrip("/"))
        with tmp_image.open("wb") as f:
            f.truncate(TMP_IMAGE_BYTES)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(tmp_image)], check=True)
        env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
        if args.action == "run":
            env |= {
                "IMAGESVC_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
                "IMAGESVC_HTTP_ADDRESS": f"127.0.0.1:{free_port()}",
                "READY_SECONDS": str(RUN_READY_SECONDS),
            }
            command = ["/bin/sh", "-c", _RUN_UNTIL_HEALTHY]
        elif args.action == "test":
            command = ["scripts/test", *args.command]
        else:
            if not args.command:
                raise SystemExit("fresh: exec needs a command")
            command = args.command
        shown = "scripts/run until healthy" if args.action == "run" else shlex.join(command)
        say(f"{args.suite} root {root}, commit {commit[:12]}: {shown}")
        started = time.monotonic()
        rc = run_in_root(root, tmp_image, command, env)
        say(f"{args.suite}: {args.action} exited {rc} after {time.monotonic() - started:.0f}s")
        return rc
    finally:
        if args.keep:
            say(f"kept {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m devtools.fresh_machine", description=__doc__)
    parser.add_argument("--suite", choices=SUITES, required=True)
    parser.add_argument("--ref", default="HEAD", help="commit or branch to clone (default HEAD)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="roots and runs")
    parser.add_argument("--keep", action="store_true", help="keep the run's root afterwards")
    parser.add_argument(
        "action",
        choices=("run", "test", "exec"),
        help="run: scripts/run until healthy; test: scripts/test [ARGS]; exec: ARGS",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="pytest args or a command")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("needs root (debootstrap, mount namespaces, loop devices)")
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    return fresh_run(args)


if __name__ == "__main__":
    sys.exit(main())
