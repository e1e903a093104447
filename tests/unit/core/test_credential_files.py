"""The tokens file and the client-certificate roles file: forms, validation, lookups,
and messages that never quote a token or a hash."""

from __future__ import annotations

import hashlib
import json

import pytest

from imagesvc.core.credential_files import (
    CertificateNames,
    hash_token,
    parse_clients,
    parse_tokens,
)
from imagesvc.core.reloading import FileProblem

TOKEN = "tOk3n-for-the-unit-tests_0123456789"
OTHER = "another-token-for-the-unit-tests_01"


def _tokens(*entries: object) -> bytes:
    return json.dumps({"tokens": list(entries)}).encode()


def test_hash_token_is_hex_sha256_of_the_utf8_bytes() -> None:
    assert hash_token(TOKEN) == hashlib.sha256(TOKEN.encode()).hexdigest()


def test_hashed_and_plain_entries_are_found_by_the_token() -> None:
    table = parse_tokens(
        _tokens(
            {"identity": "ci", "roles": ["builder", "viewer"], "sha256": hash_token(TOKEN)},
            {"identity": "dash", "roles": ["VIEWER"], "token": OTHER, "comment": "grafana"},
        )
    )
    ci, dash = table.find(TOKEN), table.find(OTHER)
    assert ci is not None
    assert dash is not None
    assert (ci.identity, ci.roles) == ("ci", frozenset({"builder", "viewer"}))
    assert (dash.identity, dash.roles) == ("dash", frozenset({"viewer"}))
    # The plain form is not kept, only its hash.
    assert OTHER not in repr(table)
    assert table.find("unknown-token-0123456789") is None


def test_an_uppercase_hash_is_accepted() -> None:
    table = parse_tokens(
        _tokens({"identity": "ci", "roles": ["admin"], "sha256": hash_token(TOKEN).upper()})
    )
    assert table.find(TOKEN) is not None


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b'{"tokens": [', "not valid JSON (line 1, column 13"),
        (b"[]", 'a JSON object with a "tokens" list'),
        (b'{"tokens": {}}', 'a JSON object with a "tokens" list'),
        (_tokens("x"), "tokens[0]: expected an object"),
        (_tokens({"roles": ["viewer"], "token": TOKEN}), "tokens[0]: identity must be"),
        (_tokens({"identity": " ci", "roles": ["viewer"], "token": TOKEN}), "identity must"),
        (_tokens({"identity": "ci", "roles": [], "token": TOKEN}), "roles must be a non-empty"),
        (_tokens({"identity": "ci", "roles": ["root"], "token": TOKEN}), "unknown role 'root'"),
        (_tokens({"identity": "ci", "roles": ["viewer"]}), "exactly one of sha256 and token"),
        (
            _tokens(
                {"identity": "ci", "roles": ["viewer"], "token": TOKEN, "sha256": hash_token(TOKEN)}
            ),
            "exactly one of sha256 and token",
        ),
        (_tokens({"identity": "ci", "roles": ["viewer"], "sha256": "abc"}), "64 hex digits"),
        (_tokens({"identity": "ci", "roles": ["viewer"], "token": "short"}), "16-4096"),
        (_tokens({"identity": "ci", "roles": ["viewer"], "token": TOKEN + " x"}), "16-4096"),
        (
            _tokens({"identity": "ci", "roles": ["viewer"], "token": TOKEN, "password": "p"}),
            "unknown keys 'password'",
        ),
        (
            _tokens(
                {"identity": "a", "roles": ["viewer"], "token": TOKEN},
                {"identity": "b", "roles": ["admin"], "sha256": hash_token(TOKEN)},
            ),
            "the same token appears twice",
        ),
    ],
)
def test_a_bad_tokens_file_is_refused_without_quoting_secrets(
    document: bytes, problem: str
) -> None:
    with pytest.raises(FileProblem) as refused:
        parse_tokens(document)
    message = str(refused.value)
    assert problem in message
    assert TOKEN not in message
    assert hash_token(TOKEN) not in message.lower()


def test_json_errors_name_the_place_not_the_content() -> None:
    with pytest.raises(FileProblem) as refused:
        parse_tokens(b'{"tokens": [{"token": "' + TOKEN.encode() + b'" "x"}]}')
    assert TOKEN not in str(refused.value)
    assert "line 1" in str(refused.value)


def _clients(*entries: dict[str, object]) -> bytes:
    return json.dumps({"clients": list(entries)}).encode()


def test_client_certificates_are_matched_by_any_of_their_names_first_entry_first() -> None:
    table = parse_clients(
        _clients(
            {"identity": "deployer", "roles": ["puller"], "match": ["URI:spiffe://x/deployer"]},
            {"identity": "ci", "roles": ["builder"], "match": ["CN=ci", "DNS:ci.internal"]},
            {"identity": "ci-too", "roles": ["admin"], "match": ["CN=ci"]},
        )
    )
    by_cn = table.find(CertificateNames(common_names=("ci",)))
    by_dns = table.find(CertificateNames(common_names=("other",), dns=("ci.internal",)))
    by_uri = table.find(CertificateNames(uris=("spiffe://x/deployer",)))
    assert by_cn is not None
    assert by_cn.identity == "ci"
    assert by_dns is not None
    assert by_dns.identity == "ci"
    assert by_uri is not None
    assert by_uri.identity == "deployer"
    # A DNS name equal to a mapped CN is a different name.
    assert table.find(CertificateNames(dns=("ci",))) is None


def test_certificate_names_have_typed_labels() -> None:
    names = CertificateNames(("a",), ("b.example",), ("spiffe://c",), ("d@example.org",))
    assert names.labels() == ("CN=a", "DNS:b.example", "URI:spiffe://c", "email:d@example.org")


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"identity": "ci", "roles": ["viewer"]}, "match must be a non-empty list"),
        ({"identity": "ci", "roles": ["viewer"], "match": ["ci"]}, 'starting with "CN="'),
        ({"identity": "ci", "roles": ["viewer"], "match": "CN=ci"}, "match must be"),
        ({"identity": "ci", "roles": ["boss"], "match": ["CN=ci"]}, "unknown role 'boss'"),
    ],
)
def test_a_bad_client_entry_is_refused(entry: dict[str, object], problem: str) -> None:
    with pytest.raises(FileProblem, match="clients\\[0\\]") as refused:
        parse_clients(_clients(entry))
    assert problem in str(refused.value)
