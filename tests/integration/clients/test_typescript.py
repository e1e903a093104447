"""The TypeScript client (clients/typescript) against the live server: `npm test` there
lists images, pulls an image from the open registry while reading its progress, and
inspects it; aborts a slow pull (which then stops on the daemon); decodes the reasons of
failed calls; pulls on the fleet (PullImageOnNodes, a fleet of one); and reaches a server
with TLS, mutual TLS and tokens. Node.js and npm are required: without them this test
fails."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from devtools.sandbox import Engine
from tests.integration.clients.conftest import (
    SecureServer,
    ServedImage,
    SlowImage,
    assert_pull_stopped,
)
from tests.integration.transfers import local_id

PACKAGE = Path(__file__).resolve().parents[3] / "clients" / "typescript"


def _installed() -> bool:
    """node_modules matches package-lock.json (npm writes its own copy of the lock there)."""
    marker = PACKAGE / "node_modules" / ".package-lock.json"
    return (
        marker.is_file()
        and marker.stat().st_mtime >= (PACKAGE / "package-lock.json").stat().st_mtime
    )


def test_typescript_client_lists_pulls_and_inspects(
    address: str,
    engine: Engine,
    served_image: ServedImage,
    secure: SecureServer,
    slow_image: SlowImage,
) -> None:
    npm = shutil.which("npm")
    assert shutil.which("node") is not None, "Node.js 18+ is needed for the TypeScript client"
    assert npm is not None, "npm is needed for the TypeScript client"
    if not _installed():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=PACKAGE,
            check=True,
            timeout=600,
        )
    environment = {
        **os.environ,
        "IMAGESVC_ADDRESS": address,
        "IMAGESVC_TEST_REFERENCE": served_image.reference,
        "IMAGESVC_TEST_DIGEST": served_image.digest,
        "IMAGESVC_TEST_SLOW_REFERENCE": slow_image.reference,
        "IMAGESVC_TLS_ADDRESS": secure.address,
        "IMAGESVC_TLS_CA": str(secure.ca),
        "IMAGESVC_TLS_CERT": str(secure.client.cert),
        "IMAGESVC_TLS_KEY": str(secure.client.key),
        "IMAGESVC_TLS_TOKEN": secure.admin_token,
        "IMAGESVC_TLS_VIEWER_TOKEN": secure.viewer_token,
        "NO_COLOR": "1",
    }
    ran = subprocess.run(
        [npm, "test"], cwd=PACKAGE, env=environment, capture_output=True, text=True, timeout=600
    )
    output = ran.stdout + ran.stderr
    assert ran.returncode == 0, output
    passed = re.search(r"^. pass (\d+)$", output, re.MULTILINE)
    failed = re.search(r"^. fail (\d+)$", output, re.MULTILINE)
    assert passed is not None, output
    assert failed is not None, output
    assert int(passed[1]) >= 3
    assert int(failed[1]) == 0
    assert "pulls on every node of the fleet" in output
    # The pull really happened on the Engine; the aborted one stopped there.
    assert local_id(engine, served_image.reference) == served_image.image_id
    assert_pull_stopped(engine, slow_image)
