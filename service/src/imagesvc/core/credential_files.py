"""The two files that say who may call: bearer tokens (stored as SHA-256 hashes) and
client-certificate names, each mapped to an identity and its roles.

Tokens file (JSON; fits a Kubernetes Secret)::

    {"tokens": [
      {"identity": "ci-builder", "roles": ["builder"], "sha256": "<64 hex digits>"},
      {"identity": "dashboard", "roles": ["viewer"], "token": "<the token itself>"}
    ]}

`sha256` is the hex SHA-256 of the token's bytes (`printf %s "$TOKEN" | sha256sum`). A
plain `token` is accepted for Secrets generated together with the clients' copy; it is
hashed on load and the plain text is not kept. Several entries may share an identity
(rotation: old and new token side by side).

Client certificates file (JSON)::

    {"clients": [
      {"identity": "deployer", "roles": ["puller"],
       "match": ["CN=deployer", "URI:spiffe://example.org/ns/ci/sa/deployer"]}
    ]}

A verified certificate's names are its subject common names ("CN=...") and its subject
alternative names ("DNS:...", "URI:...", "email:..."); the first entry with a matching
name decides. Messages about these files never quote a token or a hash.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from imagesvc.core.access import Role
from imagesvc.core.reloading import FileProblem

# RFC 6750 b64token: what `secrets.token_urlsafe()` and most token generators produce.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
MIN_TOKEN_LENGTH = 16
MAX_TOKEN_LENGTH = 4096
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_IDENTITY_NAME = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,126}[\x21-\x7e])?")
_NAME_PREFIXES = ("CN=", "DNS:", "URI:", "email:")


def hash_token(token: str) -> str:
    """The stored form of a token: hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenEntry:
    identity: str
    roles: frozenset[str]
    sha256: str


@dataclass(frozen=True, slots=True)
class TokenTable:
    entries: tuple[TokenEntry, ...]
    # Entries the file gave as the token itself: the file then holds usable credentials.
    plain_tokens: int = 0

    def find(self, token: str) -> TokenEntry | None:
        """The entry whose hash matches. Every entry is compared with
        hmac.compare_digest, with no early exit, so the time taken does not depend on
        which entry (if any) matched or on how much of a hash agreed."""
        presented = hash_token(token)
        found: TokenEntry | None = None
        for entry in self.entries:
            if hmac.compare_digest(presented, entry.sha256):
                found = entry
        return found


@dataclass(frozen=True, slots=True)
class CertificateNames:
    """The names of a verified client certificate, in the forms a mapping matches."""

    common_names: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()

    def labels(self) -> tuple[str, ...]:
        return (
            *(f"CN={name}" for name in self.common_names),
            *(f"DNS:{name}" for name in self.dns),
            *(f"URI:{name}" for name in self.uris),
            *(f"email:{name}" for name in self.emails),
        )


@dataclass(frozen=True, slots=True)
class ClientEntry:
    identity: str
    roles: frozenset[str]
    match: frozenset[str]


@dataclass(frozen=True, slots=True)
class ClientTable:
    entries: tuple[ClientEntry, ...]

    def find(self, names: CertificateNames) -> ClientEntry | None:
        labels = set(names.labels())
        return next((entry for entry in self.entries if entry.match & labels), None)


def _document(data: bytes, key: str) -> list[Any]:
    try:
        document = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise FileProblem("not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        # exc.msg names the syntax problem only ("Expecting ',' delimiter"), no content.
        raise FileProblem(
            f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if not isinstance(document, dict) or not isinstance(document.get(key), list):
        raise FileProblem(f'expected a JSON object with a "{key}" list')
    entries: list[Any] = document[key]
    return entries


def _fields(entry: Any, where: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise FileProblem(f"{where}: expected an object")
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise FileProblem(f"{where}: unknown keys {', '.join(map(repr, unknown))}")
    fields: dict[str, Any] = entry
    return fields


def _identity(entry: dict[str, Any], where: str) -> str:
    name = entry.get("identity")
    if not isinstance(name, str) or not _IDENTITY_NAME.fullmatch(name):
        raise FileProblem(
            f"{where}: identity must be 1-128 printable ASCII characters, no outer spaces"
        )
    return name


def _roles(entry: dict[str, Any], where: str) -> frozenset[str]:
    roles = entry.get("roles")
    if not isinstance(roles, list) or not roles or not all(isinstance(r, str) for r in roles):
        raise FileProblem(f"{where}: roles must be a non-empty list of role names")
    try:
        return frozenset(Role.parse(role).label for role in roles)
    except ValueError as exc:
        raise FileProblem(f"{where}: {exc}") from None


def parse_tokens(data: bytes) -> TokenTable:
    entries: list[TokenEntry] = []
    for index, raw in enumerate(_document(data, "tokens")):
        where = f"tokens[{index}]"
        entry = _fields(raw, where, {"identity", "roles", "sha256", "token", "comment"})
        identity, roles = _identity(entry, where), _roles(entry, where)
        if ("sha256" in entry) == ("token" in entry):
            raise FileProblem(f"{where}: set exactly one of sha256 and token")
        if "token" in entry:
            token = entry["token"]
            if not isinstance(token, str) or not valid_token(token):
                raise FileProblem(
                    f"{where}: token must be {MIN_TOKEN_LENGTH}-{MAX_TOKEN_LENGTH} characters"
                    " of A-Z a-z 0-9 - . _ ~ + / (then optional =)"
                )
            digest = hash_token(token)
        else:
            digest = entry["sha256"]
            if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest.lower()):
                raise FileProblem(f"{where}: sha256 must be 64 hex digits")
            digest = digest.lower()
        entries.append(TokenEntry(identity, roles, digest))
    _unique((entry.sha256 for entry in entries), "the same token appears twice")
    plain = sum(1 for raw in _document(data, "tokens") if "token" in raw)
    return TokenTable(tuple(entries), plain)


def parse_clients(data: bytes) -> ClientTable:
    entries: list[ClientEntry] = []
    for index, raw in enumerate(_document(data, "clients")):
        where = f"clients[{index}]"
        entry = _fields(raw, where, {"identity", "roles", "match", "comment"})
        identity, roles = _identity(entry, where), _roles(entry, where)
        match = entry.get("match")
        if (
            not isinstance(match, list)
            or not match
            or not all(isinstance(name, str) and name.startswith(_NAME_PREFIXES) for name in match)
        ):
            raise FileProblem(
                f"{where}: match must be a non-empty list of certificate names, each"
                ' starting with "CN=", "DNS:", "URI:" or "email:"'
            )
        entries.append(ClientEntry(identity, roles, frozenset(match)))
    return ClientTable(tuple(entries))


def _unique(values: Iterable[str], problem: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise FileProblem(problem)
        seen.add(value)


def valid_token(token: str) -> bool:
    return (
        MIN_TOKEN_LENGTH <= len(token) <= MAX_TOKEN_LENGTH
        and TOKEN_PATTERN.fullmatch(token) is not None
    )
