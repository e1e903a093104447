"""`python -m imagesvc_client.cli`: the same as the imagesvc-cli command."""

import sys

from imagesvc_client.cli.main import main

sys.exit(main())
