"""An HTTP client for the REST gateway of the session server, and reading its answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from imagesvc.server import ThreadedServer


@pytest.fixture(scope="module")
def rest(server: ThreadedServer) -> Iterator[httpx.Client]:
    """httpx against the session server's HTTP port (loopback, no proxy from the
    environment)."""
    with httpx.Client(
        base_url=f"http://127.0.0.1:{server.http_port}", timeout=120, trust_env=False
    ) as client:
        yield client


def segment(reference: str) -> str:
    """An image reference as one percent-encoded path segment."""
    return quote(reference, safe="")


def error_reason(status: dict[str, Any]) -> str:
    """The ErrorInfo reason of a google.rpc.Status in its JSON form."""
    [info] = [d for d in status["details"] if d["@type"].endswith("google.rpc.ErrorInfo")]
    assert info["domain"] == "imagesvc"
    return str(info["reason"])


def expect_status(response: httpx.Response, http: int, code: int, reason: str) -> dict[str, Any]:
    """A unary failure: the HTTP status and a google.rpc.Status body."""
    assert response.status_code == http, response.text
    assert response.headers["content-type"] == "application/json"
    status: dict[str, Any] = response.json()
    assert set(status) == {"code", "message", "details"}
    assert status["code"] == code, status
    assert error_reason(status) == reason, status
    return status


def ndjson(response: httpx.Response) -> list[dict[str, Any]]:
    """Every line of a (read) stream response, each one object."""
    assert response.headers["content-type"] == "application/json"
    text = response.text
    assert text.endswith("\n"), text[-200:]
    lines = [json.loads(line) for line in text.split("\n")[:-1]]
    for line in lines:
        assert list(line) in (["result"], ["error"]), line
    return lines


def split_stream(lines: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The results, and the error line if the stream ended with one (only last)."""
    errors = [i for i, line in enumerate(lines) if "error" in line]
    assert errors in ([], [len(lines) - 1]), f"error lines at {errors} of {len(lines)}"
    if errors:
        return [line["result"] for line in lines[:-1]], lines[-1]["error"]
    return [line["result"] for line in lines], None
