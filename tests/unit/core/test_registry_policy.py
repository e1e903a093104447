from __future__ import annotations

import pytest

from imagesvc.core.errors import InvalidArgumentError, PermissionDeniedError, Reason
from imagesvc.core.references import parse_reference
from imagesvc.core.registry_policy import (
    Allowlist,
    RegistryPolicy,
    canonical_repository,
    parse_pattern,
    parse_patterns,
    registry_of_server_address,
)
from tests.unit.core.refusals import refusal


@pytest.mark.parametrize(
    ("reference", "repository"),
    [
        ("busybox", "docker.io/library/busybox"),
        ("busybox:1.36", "docker.io/library/busybox"),
        ("library/busybox", "docker.io/library/busybox"),
        ("docker.io/busybox", "docker.io/library/busybox"),
        ("index.docker.io/busybox", "docker.io/library/busybox"),
        ("index.docker.io/team/app:1", "docker.io/team/app"),
        ("team/app@sha256:" + "a" * 64, "docker.io/team/app"),
        ("127.0.0.1:5000/team/app:1.0", "127.0.0.1:5000/team/app"),
        ("Registry.Example.COM/app", "registry.example.com/app"),
        # Hub's library/ only for its exact spellings, as the Engine does.
        ("Docker.io/busybox", "docker.io/busybox"),
        ("Index.Docker.IO/team/app", "index.docker.io/team/app"),
        ("localhost/app", "localhost/app"),
        ("[::1]:5000/a/b/c", "[::1]:5000/a/b/c"),
    ],
)
def test_canonical_repository_is_what_the_engine_resolves(reference: str, repository: str) -> None:
    assert canonical_repository(parse_reference(reference)) == repository


@pytest.mark.parametrize(
    ("pattern", "allowed", "denied"),
    [
        ("busybox", ["busybox", "docker.io/library/busybox:1"], ["team/busybox", "busybox2"]),
        ("docker.io/library/*", ["alpine", "busybox:1"], ["team/app", "ghcr.io/library/x"]),
        ("docker.io/alpine", ["alpine:3"], ["team/alpine"]),
        ("team/*", ["team/app", "docker.io/team/x"], ["team/a/b", "other/app"]),
        ("docker.io/**", ["alpine", "team/a/b"], ["quay.io/alpine"]),
        (
            "127.0.0.1:5000/team/*",
            ["127.0.0.1:5000/team/app:1"],
            ["127.0.0.1:5000/team/a/b", "127.0.0.1:5001/team/app", "127.0.0.1:5000/other/a"],
        ),
        ("127.0.0.1:*/**", ["127.0.0.1:5000/a", "127.0.0.1:1/a/b/c"], ["127.0.0.2:5000/a", "a"]),
        ("127.0.0.1:5000/**", ["127.0.0.1:5000/x/y"], ["127.0.0.1:50000/x", "localhost:5000/x"]),
        (
            "ghcr.io/acme/*-base",
            ["ghcr.io/acme/go-base"],
            ["ghcr.io/acme/go-base/x", "acme/a-base"],
        ),
        ("**", ["anything", "127.0.0.1:1/x", "ghcr.io/a/b/c"], []),
        ("index.docker.io/library/alpine", ["alpine"], ["index.docker.io/team/alpine"]),
        ("Docker.IO/Library/Alpine", ["alpine"], []),
    ],
)
def test_patterns_match_normalised_repositories(
    pattern: str, allowed: list[str], denied: list[str]
) -> None:
    allowlist = Allowlist.from_text(pattern)
    for reference in allowed:
        assert allowlist.allows(parse_reference(reference)), reference
    for reference in denied:
        assert not allowlist.allows(parse_reference(reference)), reference


def test_a_star_never_crosses_a_slash_and_dots_are_literal() -> None:
    allowlist = Allowlist.from_text("127.0.0.1:5000/team/*")
    assert not allowlist.allows(parse_reference("127.0.0.1:5000/team/a/evil"))
    dotted = Allowlist.from_text("registry.example.com/app")
    assert not dotted.allows(parse_reference("registryxexample.com/app"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("127.0.0.1:5000", "127.0.0.1:5000/**"),
        ("ghcr.io", "ghcr.io/**"),
        ("alpine:3", "not tags"),
        ("team/app:1", "not tags"),
        ("alpine@sha256:abc", "digests"),
        ("UPPER CASE", "lower-case"),
        ("a//b", "empty path component"),
        ("ghcr.io/a/", "empty path component"),
        ("$(evil)", "lower-case"),
    ],
)
def test_malformed_patterns_say_what_to_write(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="registry pattern") as caught:
        parse_pattern(text)
    assert message in str(caught.value)


def test_patterns_are_separated_by_commas_or_space() -> None:
    patterns = parse_patterns(" 127.0.0.1:5000/** ,docker.io/library/*\n team/app ")
    assert [p.text for p in patterns] == ["127.0.0.1:5000/**", "docker.io/library/*", "team/app"]
    assert parse_patterns("") == ()
    assert parse_patterns(" , ") == ()


def test_an_empty_allowlist_allows_everything() -> None:
    allowlist = Allowlist.from_text("")
    assert allowlist.allows_everything
    assert allowlist.describe() == "any"
    assert allowlist.allows(parse_reference("ghcr.io/anything/at/all:1"))


def test_check_pull_and_check_target_use_their_own_allowlist() -> None:
    policy = RegistryPolicy.from_text("127.0.0.1:5000/**", "127.0.0.1:5001/team/*")
    assert refusal(policy.check_pull, parse_reference("127.0.0.1:5000/x/y:1")) is None
    target = parse_reference("127.0.0.1:5001/team/app:2")
    assert refusal(policy.check_target, target, what="pushing") is None
    with pytest.raises(PermissionDeniedError) as pulled:
        policy.check_pull(parse_reference("127.0.0.1:5001/team/app"), what="pulling it")
    with pytest.raises(PermissionDeniedError) as pushed:
        policy.check_target(parse_reference("busybox:1"), what="tagging as 'busybox:1'")
    error = pulled.value
    assert error.reason is Reason.REGISTRY_NOT_ALLOWED
    assert error.metadata == {"repository": "127.0.0.1:5001/team/app", "allowlist": "pull"}
    assert error.message.startswith("pulling it: 127.0.0.1:5001/team/app is not allowed")
    assert "--pull-allowlist" in error.message
    assert pushed.value.metadata == {"repository": "docker.io/library/busybox", "allowlist": "push"}
    assert "--push-allowlist" in pushed.value.message


@pytest.mark.parametrize(
    ("address", "registry"),
    [
        ("", "docker.io"),
        ("docker.io", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("https://index.docker.io/v1/", "docker.io"),
        ("registry-1.docker.io", "registry-1.docker.io"),
        ("127.0.0.1:5000", "127.0.0.1:5000"),
        ("http://127.0.0.1:5000/v2/", "127.0.0.1:5000"),
        ("Registry.Example.ORG", "registry.example.org"),
        ("myregistry", "myregistry"),
        ("[::1]:5000", "[::1]:5000"),
    ],
)
def test_the_registry_of_a_server_address_is_the_host_the_engine_contacts(
    address: str, registry: str
) -> None:
    assert registry_of_server_address(address) == registry


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1:5000@evil.example",  # Go takes the host after the last '@'
        "https://ci:hunter2@127.0.0.1:5000",
        "evil.example?@127.0.0.1:5000",
        "evil.example#@127.0.0.1:5000",
        "127.0.0.1:5000/v2/?x",
        "evil.example%2f@x",
        "ftp://127.0.0.1:5000",
        "HTTPS://127.0.0.1:5000",  # the daemon only knows lower-case schemes
        "https://",
        " 127.0.0.1:5000",
        "127.0.0.1:5000\\@evil.example",
    ],
)
def test_server_addresses_read_otherwise_by_the_engine_are_invalid(address: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        registry_of_server_address(address)
    assert caught.value.metadata == {"field": "server_address"}
    assert "hunter2" not in caught.value.message


def test_check_registry_allows_registries_some_pattern_names() -> None:
    policy = RegistryPolicy.from_text("127.0.0.1:*/base/**, alpine", "ghcr.io/acme/*")
    for registry in ("127.0.0.1:5000", "127.0.0.1:6000", "docker.io", "ghcr.io"):
        assert refusal(policy.check_registry, registry) is None
    for registry in ("127.0.0.2:5000", "registry-1.docker.io", "ghcr.io.evil.example", "x"):
        with pytest.raises(PermissionDeniedError) as caught:
            policy.check_registry(registry)
        assert caught.value.reason is Reason.REGISTRY_NOT_ALLOWED
        assert caught.value.metadata == {"registry": registry, "allowlist": "pull, push"}


def test_check_registry_allows_any_registry_when_an_allowlist_is_empty() -> None:
    for pull, push in (("", "127.0.0.1:5000/**"), ("127.0.0.1:5000/**", ""), ("**", "")):
        policy = RegistryPolicy.from_text(pull, push)
        assert refusal(policy.check_registry, "evil.example") is None
    # Both allowlists name registries: the others are refused.
    policy = RegistryPolicy.from_text("127.0.0.1:5000/**", "127.0.0.1:5001/**")
    assert refusal(policy.check_registry, "evil.example") is not None
