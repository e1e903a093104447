"""imagesvc-cli: `docker image` verbs against an imagesvc server.

    imagesvc-cli ls                      imagesvc-cli pull 127.0.0.1:5000/team/app:1.0
    imagesvc-cli inspect team/app:1.0    imagesvc-cli build -t team/app:1.1 .
    imagesvc-cli --server host:50051 --output json ls

The server comes from --server or IMAGESVC_SERVER (default 127.0.0.1:50051), the bearer
token from --token-file or IMAGESVC_TOKEN. Any failure exits non-zero with the server's
message on stderr (a JSON document there with --output json).
"""

from __future__ import annotations

from imagesvc_client.cli.main import main, run

__all__ = ["main", "run"]
