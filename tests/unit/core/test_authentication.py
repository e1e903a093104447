"""The Authenticator: from an authorization value and a verified certificate's names to
an identity, no identity, or a credential problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagesvc.core.authentication import ANONYMOUS, Authenticator
from imagesvc.core.credential_files import (
    CertificateNames,
    ClientTable,
    TokenEntry,
    TokenTable,
    hash_token,
    parse_clients,
    parse_tokens,
)
from imagesvc.core.identity import Identity, credential_problem, current_identity
from imagesvc.core.reloading import ReloadingFile

TOKEN = "unit-test-token_0123456789abcdef"


def _tokens(tmp_path: Path) -> ReloadingFile[TokenTable]:
    path = tmp_path / "tokens.json"
    entry = {"identity": "ci", "roles": ["builder"], "sha256": hash_token(TOKEN)}
    path.write_text(json.dumps({"tokens": [entry]}))
    return ReloadingFile(path, parse_tokens, what="tokens file")


def _clients(tmp_path: Path) -> ReloadingFile[ClientTable]:
    path = tmp_path / "clients.json"
    entry = {"identity": "deployer", "roles": ["puller"], "match": ["CN=deployer"]}
    path.write_text(json.dumps({"clients": [entry]}))
    return ReloadingFile(path, parse_clients, what="client certificate roles file")


@pytest.fixture
def authenticator(tmp_path: Path) -> Authenticator:
    return Authenticator(_tokens(tmp_path), _clients(tmp_path), client_certificates=True)


DEPLOYER = CertificateNames(common_names=("deployer",))
STRANGER = CertificateNames(common_names=("stranger",), dns=("stranger.example",))


def test_a_valid_token_names_its_identity(authenticator: Authenticator) -> None:
    outcome = authenticator.authenticate(f"Bearer {TOKEN}", None)
    assert outcome.identity == Identity("ci", frozenset({"builder"}), "token")
    assert outcome.problem is None


def test_nothing_presented_is_no_identity_and_no_problem(authenticator: Authenticator) -> None:
    outcome = authenticator.authenticate(None, None)
    assert (outcome.identity, outcome.problem) == (None, None)


@pytest.mark.parametrize(
    "value",
    ["", "Bearer", "Bearer ", "Basic abc", f"Bearer {TOKEN} x", f"Token {TOKEN}", "Bearer é"],
)
def test_a_malformed_value_is_a_problem(authenticator: Authenticator, value: str) -> None:
    outcome = authenticator.authenticate(value, DEPLOYER)
    assert outcome.identity is None
    assert outcome.problem is not None
    assert "Bearer <token>" in outcome.problem


def test_an_unknown_token_is_a_problem_even_beside_a_valid_certificate(
    authenticator: Authenticator,
) -> None:
    outcome = authenticator.authenticate("Bearer unknown-token-0123456789", DEPLOYER)
    assert outcome.identity is None
    assert outcome.problem == "the bearer token is not valid (unknown or revoked)"


def test_the_scheme_is_case_insensitive_and_spaces_are_tolerated(
    authenticator: Authenticator,
) -> None:
    outcome = authenticator.authenticate(f"bEaReR   {TOKEN} ", None)
    assert outcome.identity is not None
    assert outcome.identity.name == "ci"


def test_certificates_map_to_their_identity_or_to_no_roles(
    authenticator: Authenticator,
) -> None:
    mapped = authenticator.authenticate(None, DEPLOYER).identity
    assert mapped == Identity("deployer", frozenset({"puller"}), "mtls")
    unmapped = authenticator.authenticate(None, STRANGER).identity
    assert unmapped == Identity("CN=stranger", frozenset(), "mtls")


def test_tokens_without_a_tokens_file_are_a_problem(tmp_path: Path) -> None:
    mtls_only = Authenticator(None, _clients(tmp_path), client_certificates=True)
    outcome = mtls_only.authenticate(f"Bearer {TOKEN}", DEPLOYER)
    assert outcome.problem is not None
    assert "no tokens file" in outcome.problem


def test_certificates_count_only_when_mutual_tls_is_on(tmp_path: Path) -> None:
    tokens_only = Authenticator(_tokens(tmp_path))
    assert tokens_only.authenticate(None, DEPLOYER).identity is None


def test_without_authentication_everyone_is_anonymous_with_every_role() -> None:
    off = Authenticator()
    assert not off.enabled
    assert off.authenticate("Bearer whatever-0123456789", None).identity is ANONYMOUS
    assert ANONYMOUS.roles == frozenset({"viewer", "puller", "builder", "pusher", "fleet", "admin"})


def test_establish_sets_the_context_variables(authenticator: Authenticator) -> None:
    authenticator.establish("Bearer nope-0123456789abcdef", None)
    assert current_identity.get() is None
    assert credential_problem.get() is not None
    authenticator.establish(f"Bearer {TOKEN}", None)
    identity = current_identity.get()
    assert identity is not None
    assert identity.name == "ci"
    assert credential_problem.get() is None


@given(value=st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_any_authorization_value_is_an_outcome_never_an_error_or_an_echo(value: str) -> None:
    tokens = TokenTable(
        (TokenEntry("ci", frozenset({"admin"}), hash_token(TOKEN)),),
    )
    authenticator = Authenticator(_StaticFile(tokens))  # type: ignore[arg-type]
    outcome = authenticator.authenticate(value, None)
    if outcome.identity is not None:
        assert value.split()[-1] == TOKEN
    else:
        # One of two fixed messages: nothing of the value is ever echoed.
        assert outcome.problem in {
            "the authorization header must be 'Bearer <token>' (RFC 6750 token characters)",
            "the bearer token is not valid (unknown or revoked)",
        }


class _StaticFile:
    def __init__(self, value: TokenTable) -> None:
        self.value = value

    def current(self) -> TokenTable:
        return self.value
