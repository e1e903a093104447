"""Web pages cannot use a user's browser to call the service. A page of any site may
make the browser POST a form or a text/plain body to http://127.0.0.1:8080 without a
CORS preflight (cross-site request forgery), and a site whose name it re-binds to
127.0.0.1 reads the answers too (DNS rebinding). On a developer's machine running the
service without authentication, either would hand the Docker daemon to the page."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from devtools.sandbox import BuiltImage, Engine
from imagesvc.server import ThreadedServer
from tests.integration.local_images import cli_list_ids
from tests.integration.security.conftest import Tokens


def _post_tag(server: ThreadedServer, target: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"http://127.0.0.1:{server.http_port}/v1/images:tag",
        content=json.dumps({"source": "imagesvc-test/busybox:1.0", "target": target}),
        headers={"content-type": "text/plain", **headers},
        timeout=30,
        trust_env=False,
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "http://evil.example"},
        {"origin": "null"},
        {"sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors"},
        {"sec-fetch-site": "same-site"},
    ],
)
def test_a_cross_site_write_from_a_browser_is_refused(
    server: ThreadedServer, engine: Engine, busybox_image: BuiltImage, headers: dict[str, str]
) -> None:
    target = f"imagesvc-test/browser-{uuid.uuid4().hex[:8]}:1"
    images_before = cli_list_ids(engine, all=True)
    response = _post_tag(server, target, headers)
    assert response.status_code == 401, response.text
    status = response.json()
    [info] = [d for d in status["details"] if d["@type"].endswith("ErrorInfo")]
    assert info["reason"] == "CALLER_UNAUTHENTICATED"
    assert "browser" in status["message"]
    assert engine.docker("image", "inspect", target, check=False).returncode != 0
    assert cli_list_ids(engine, all=True) == images_before


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8080", "10.0.0.1:8080", "[::ffff:127.0.0.1]:8080"]
)
def test_without_authentication_only_loopback_host_names_are_served(
    server: ThreadedServer, host: str
) -> None:
    """A re-bound name sends its own Host header; loopback ones are all a local caller
    needs, and a Host that is none of them is refused."""
    response = httpx.get(
        f"http://127.0.0.1:{server.http_port}/v1/images",
        params={"pageSize": 1},
        headers={"host": host},
        timeout=30,
        trust_env=False,
    )
    assert response.status_code == 401, response.text
    assert "Host" in response.json()["message"]


@pytest.mark.parametrize(
    "host", ["127.0.0.1:{port}", "localhost:{port}", "localhost", "[::1]:{port}", "127.0.0.2"]
)
def test_local_callers_and_a_browser_opening_the_url_are_served(
    server: ThreadedServer, host: str
) -> None:
    # Typing the URL into a browser is fine: Sec-Fetch-Site none, no Origin.
    response = httpx.get(
        f"http://127.0.0.1:{server.http_port}/v1/images",
        params={"pageSize": 1},
        headers={"host": host.format(port=server.http_port), "sec-fetch-site": "none"},
        timeout=30,
        trust_env=False,
    )
    assert response.status_code == 200, response.text


def test_with_authentication_any_host_is_served_but_browsers_are_still_refused(
    token_server: ThreadedServer, tokens: Tokens
) -> None:
    """Behind a proxy the Host is the service's public name; a browser with a client
    certificate (mutual TLS) would still be a forgery's vehicle."""
    auth = {"authorization": f"Bearer {tokens.by_role['viewer']}"}
    url = f"http://127.0.0.1:{token_server.http_port}/v1/images"
    ok = httpx.get(url, headers={**auth, "host": "imagesvc.example.org"}, timeout=30)
    assert ok.status_code == 200, ok.text
    refused = httpx.get(url, headers={**auth, "origin": "https://evil.example"}, timeout=30)
    assert refused.status_code == 401, refused.text
