"""The TypeScript client's watchImages (clients/typescript/test/watch.test.ts) against
the real server on a fake Engine, whose image index this test drives: `npm run
test:watch` watches with the initial images, sees the changes made once it watches,
resumes from the live marker's token, and decodes WATCH_EXPIRED. Node.js and npm are
required: without them this test fails."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

from tests.unit.transport.test_watch_images import Served, entry

PACKAGE = Path(__file__).resolve().parents[3] / "clients" / "typescript"


def test_typescript_client_watches_and_resumes() -> None:
    npm = shutil.which("npm")
    assert shutil.which("node") is not None, "Node.js 18+ is needed for the TypeScript client"
    assert npm is not None, "npm is needed for the TypeScript client"
    if not (PACKAGE / "node_modules" / ".package-lock.json").is_file():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=PACKAGE,
            check=True,
            timeout=600,
        )
    other = Served()
    foreign_token = other.log.current_token()
    other.threaded.stop()
    served = Served()

    def drive() -> None:
        served.wait_for_watchers(1)
        served.put(entry(2, tags=["app:2"]))
        served.delete(1)

    try:
        served.put(entry(1, tags=["app:1"]))
        driver = threading.Thread(target=drive)
        driver.start()
        ran = subprocess.run(
            [npm, "run", "test:watch"],
            cwd=PACKAGE,
            env={
                **os.environ,
                "IMAGESVC_WATCH_ADDRESS": served.address,
                "IMAGESVC_FOREIGN_TOKEN": foreign_token,
                "NO_COLOR": "1",
            },
            capture_output=True,
            text=True,
            timeout=300,
        )
        driver.join(10)
        # Every call the client made ended (a `break` out of the loop too).
        served.wait_for_watchers(0)
    finally:
        served.threaded.stop()
    output = ran.stdout + ran.stderr
    assert ran.returncode == 0, output
    passed = re.search(r"^. pass (\d+)$", output, re.MULTILINE)
    failed = re.search(r"^. fail (\d+)$", output, re.MULTILINE)
    assert passed is not None, output
    assert failed is not None, output
    assert int(passed[1]) == 1
    assert int(failed[1]) == 0
