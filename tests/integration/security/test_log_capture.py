"""The leak check of this package catches a secret wherever a record carries it."""

from __future__ import annotations

import logging

import pytest

from tests.integration.log_capture import capture_logs


@pytest.mark.parametrize("where", ["message", "argument", "extra field"])
def test_a_logged_secret_is_caught(where: str) -> None:
    secret = "s3cr3t-value-for-the-leak-check"
    log = logging.getLogger("imagesvc.leak-check")
    with capture_logs() as captured:
        if where == "message":
            log.debug(f"token {secret}")
        elif where == "argument":
            log.debug("token %s", secret)
        else:
            log.debug("token", extra={"token": secret})
    with pytest.raises(AssertionError, match="a secret appears in a log line"):
        captured.assert_free_of([secret])
    captured.assert_free_of(["something-never-logged"])
