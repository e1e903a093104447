"""`python -m imagesvc_client.cli`: the same as the imagesvc-cli command."""

from imagesvc_client.cli.main import run

run()
