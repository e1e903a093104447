from __future__ import annotations

import pytest

from imagesvc.core.errors import InvalidArgumentError, Reason
from imagesvc.core.references import (
    DEFAULT_DOMAIN,
    DEFAULT_TAG,
    Reference,
    familiar,
    familiar_match,
    is_image_id,
    parse_reference,
    parse_tag_target,
    reference_pattern,
    validate_image_identifier,
    validate_platform,
)

HEX64 = "0123456789abcdef" * 4
DIGEST = f"sha256:{HEX64}"


@pytest.mark.parametrize(
    ("text", "domain", "path", "tag", "digest"),
    [
        ("busybox", "", "busybox", "", ""),
        ("busybox:1.36", "", "busybox", "1.36", ""),
        ("busybox:1.36.1-musl", "", "busybox", "1.36.1-musl", ""),
        ("library/busybox:latest", "", "library/busybox", "latest", ""),
        ("team/app", "", "team/app", "", ""),
        ("127.0.0.1:5000/team/app:1.0", "127.0.0.1:5000", "team/app", "1.0", ""),
        ("localhost/x", "localhost", "x", "", ""),
        ("localhost:5000/x:dev", "localhost:5000", "x", "dev", ""),
        ("[::1]:5000/a", "[::1]:5000", "a", "", ""),
        ("[::1]:5000/a:v2", "[::1]:5000", "a", "v2", ""),
        ("registry.example.com/org/sub/app", "registry.example.com", "org/sub/app", "", ""),
        ("Registry.Example.com/app", "Registry.Example.com", "app", "", ""),
        ("my-registry:443/app", "my-registry:443", "app", "", ""),
        (f"busybox@{DIGEST}", "", "busybox", "", DIGEST),
        (f"busybox:1.36@{DIGEST}", "", "busybox", "1.36", DIGEST),
        (f"127.0.0.1:5000/x@{DIGEST}", "127.0.0.1:5000", "x", "", DIGEST),
        ("a__b/c-d--e/f.g_h", "", "a__b/c-d--e/f.g_h", "", ""),
        ("busybox:_underscore", "", "busybox", "_underscore", ""),
    ],
)
def test_valid_references_parse_into_their_parts(
    text: str, domain: str, path: str, tag: str, digest: str
) -> None:
    reference = parse_reference(text)
    assert reference == Reference(domain, path, tag, digest)
    # str() gives back exactly what was written.
    assert str(reference) == text


@pytest.mark.parametrize(
    ("text", "normalized", "registry"),
    [
        ("busybox", "docker.io/library/busybox", "docker.io"),
        ("busybox:latest", "docker.io/library/busybox:latest", "docker.io"),
        ("team/app:1", "docker.io/team/app:1", "docker.io"),
        ("docker.io/library/busybox:1.36", "docker.io/library/busybox:1.36", "docker.io"),
        ("docker.io/busybox", "docker.io/library/busybox", "docker.io"),
        ("docker.io/team/app", "docker.io/team/app", "docker.io"),
        ("localhost/x", "localhost/x", "localhost"),
        ("127.0.0.1:5000/x:1", "127.0.0.1:5000/x:1", "127.0.0.1:5000"),
        (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}", "docker.io"),
    ],
)
def test_normalisation_makes_docker_hub_explicit(text: str, normalized: str, registry: str) -> None:
    reference = parse_reference(text)
    assert reference.normalized() == normalized
    assert reference.registry == registry


def test_name_and_full_name() -> None:
    hub = parse_reference("busybox:1.36")
    assert hub.name == "busybox"
    assert hub.full_name == f"{DEFAULT_DOMAIN}/library/busybox"
    local = parse_reference("127.0.0.1:5000/team/app:1.0")
    assert local.name == "127.0.0.1:5000/team/app"
    assert local.full_name == "127.0.0.1:5000/team/app"


def test_domain_detection_follows_distribution_rules() -> None:
    # A first component is a domain only with ".", ":" or "localhost".
    assert parse_reference("team/app").domain == ""
    assert parse_reference("registry.local/app").domain == "registry.local"
    assert parse_reference("Registry.local/app").domain == "Registry.local"
    assert parse_reference("host:5000/app").domain == "host:5000"
    assert parse_reference("Host:5000/app").domain == "Host:5000"
    assert parse_reference("localhost/app").domain == "localhost"


@pytest.mark.parametrize("text", ["UPPER/case", "Host/app", "UPPER/case:1", "team/UPPER"])
def test_upper_case_is_never_a_domain_by_itself(text: str) -> None:
    # Engine 26 takes "UPPER/case" for image "case" on host "UPPER", Engine 20.10 refuses
    # it: the service refuses it on every engine, before asking any.
    with pytest.raises(InvalidArgumentError) as caught:
        parse_reference(text)
    assert caught.value.reason == Reason.INVALID_REFERENCE
    assert "lower-case" in str(caught.value)
    # Without a "/" there is no domain: "localhost" alone is a repository.
    assert parse_reference("localhost") == Reference("", "localhost")
    assert parse_reference("localhost:5000") == Reference("", "localhost", "5000")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("busy box", "white space"),
        (" busybox", "white space"),
        ("busybox\n", "white space"),
        ("busybox:1.36\t", "white space"),
        ("Busybox", "repository names"),
        ("team/App", "repository names"),
        ("busybox:", "tag"),
        ("busybox:-dash", "tag"),
        ("busybox:.dot", "tag"),
        ("busybox:a/b", "registry host"),
        ("busybox:" + "t" * 129, "tag"),
        ("busybox:ü", "tag"),
        ("busybox:tag!", "tag"),
        ("busybox@sha256:xyz", "digest"),
        ("busybox@sha256:abc", "digest"),
        ("busybox@sha256", "digest"),
        ("busybox@", "digest"),
        (f"busybox@{HEX64}", "digest"),
        (f"busybox@sha256:{HEX64}@sha256:{HEX64}", "digest"),
        ("a:b:c", "repository names"),
        ("a:b:c:d", "repository names"),
        (":latest", "no repository"),
        ("@" + DIGEST, "no repository"),
        ("/busybox", "repository names"),
        ("busybox/", "repository names"),
        ("team//app", "repository names"),
        ("team/-app", "repository names"),
        ("team/app-", "repository names"),
        ("team/a...b", "repository names"),
        ("bad_host.com/app", "registry host"),
        ("-bad.com/app", "registry host"),
        ("host:port/app", "registry host"),
        ("[zz::1]:5000/a", "registry host"),
        ("x" * 256, "longer than 255"),
        ("registry.example.com/" + "a" * 240, "longer than 255"),
    ],
)
def test_invalid_references_are_rejected_with_their_reason(text: str, why: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        parse_reference(text)
    error = caught.value
    assert error.reason is Reason.INVALID_REFERENCE
    assert why in error.message
    assert error.metadata["reference"] == text[:256]


def test_longest_valid_name_is_accepted() -> None:
    assert parse_reference("a" * 255).path == "a" * 255
    assert parse_reference("b" * 255 + ":" + "t" * 128).tag == "t" * 128


def test_with_default_tag_adds_latest_only_without_tag_or_digest() -> None:
    assert parse_reference("busybox").with_default_tag() == Reference("", "busybox", DEFAULT_TAG)
    assert str(parse_reference("127.0.0.1:5000/x").with_default_tag()) == "127.0.0.1:5000/x:latest"
    tagged = parse_reference("busybox:1.36")
    assert tagged.with_default_tag() is tagged
    digested = parse_reference(f"busybox@{DIGEST}")
    assert digested.with_default_tag() == digested
    assert digested.with_default_tag().tag == ""


@pytest.mark.parametrize(
    "text", ["busybox", "team/app", "localhost:5000/x", "[::1]:5000/a", "busybox:1", "x:latest"]
)
def test_with_default_tag_never_means_all_tags(text: str) -> None:
    reference = parse_reference(text).with_default_tag()
    assert reference.tag or reference.digest
    assert str(reference).rsplit("/", 1)[-1].count(":") == 1


def test_parse_tag_target_defaults_latest_and_refuses_digests() -> None:
    assert str(parse_tag_target("team/app")) == "team/app:latest"
    assert str(parse_tag_target("127.0.0.1:5000/app:v1")) == "127.0.0.1:5000/app:v1"
    with pytest.raises(InvalidArgumentError) as caught:
        parse_tag_target(f"team/app@{DIGEST}")
    assert caught.value.reason is Reason.INVALID_REFERENCE
    assert "digest" in caught.value.message
    with pytest.raises(InvalidArgumentError):
        parse_tag_target("Team/App")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (HEX64, True),
        (DIGEST, True),
        ("0123abcd", True),
        ("sha256:0123", True),
        ("busybox", False),
        ("sha256:", False),
        ("0123ABCD", False),
        (HEX64 + "0", False),
    ],
)
def test_is_image_id(text: str, expected: bool) -> None:
    assert is_image_id(text) is expected


def test_validate_image_identifier_accepts_ids_and_references() -> None:
    for text in (DIGEST, "0123abcd", "busybox:1.36", f"busybox@{DIGEST}", "localhost/x"):
        assert validate_image_identifier(text) == text
    with pytest.raises(InvalidArgumentError) as caught:
        validate_image_identifier("Not An Image")
    assert caught.value.reason is Reason.INVALID_REFERENCE


@pytest.mark.parametrize(
    "text",
    ["", "linux", "linux/amd64", "linux/arm64/v8", "windows/amd64", "amd64", "arm64", "x86_64"],
)
def test_valid_platforms(text: str) -> None:
    assert validate_platform(text) == text


@pytest.mark.parametrize(
    "text", ["Linux/amd64", "linux/", "/amd64", "linux/arm/v7/x", "linux amd64"]
)
def test_invalid_platforms(text: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        validate_platform(text)
    assert caught.value.reason is Reason.INVALID_ARGUMENT
    assert "os/arch" in caught.value.message


@pytest.mark.parametrize("text", ["nonsense", "linuxx", "amd"])
def test_one_component_must_be_a_known_os_or_architecture(text: str) -> None:
    # Docker's rule on every engine: Podman would pull with any of these.
    with pytest.raises(InvalidArgumentError) as caught:
        validate_platform(text)
    assert caught.value.reason is Reason.INVALID_ARGUMENT
    assert "neither an operating system nor an architecture" in caught.value.message


def test_an_invalid_reference_with_a_password_is_not_echoed() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        parse_reference("ci:hunter2@127.0.0.1:5000/team/app:1")
    assert "hunter2" not in caught.value.message
    assert "hunter2" not in str(caught.value.metadata)
    assert "[REDACTED]@127.0.0.1:5000/team/app:1" in caught.value.message


# Familiar names and reference filters (Podman reports fully-qualified names) ----------


@pytest.mark.parametrize(
    ("reported", "shown"),
    [
        ("docker.io/acc/tiny:1", "acc/tiny:1"),
        ("docker.io/library/busybox:1.36", "busybox:1.36"),
        ("docker.io/library/busybox@sha256:" + "a" * 64, "busybox@sha256:" + "a" * 64),
        # library/ is Docker Hub's only for one-component names.
        ("docker.io/library/team/app:1", "library/team/app:1"),
        ("acc/tiny:1", "acc/tiny:1"),
        ("busybox:1.36", "busybox:1.36"),
        ("127.0.0.1:5000/acc/tiny:1", "127.0.0.1:5000/acc/tiny:1"),
        # localhost/ is a registry: without it the name would mean Docker Hub.
        ("localhost/x:1", "localhost/x:1"),
        ("docker.io.example.com/x:1", "docker.io.example.com/x:1"),
    ],
)
def test_familiar_is_dockers_familiar_string(reported: str, shown: str) -> None:
    assert familiar(reported) == shown


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("acc/tiny", "acc/tiny:1", True),
        ("acc/tiny:1", "acc/tiny:1", True),
        ("acc/tiny:2", "acc/tiny:1", False),
        ("acc/*", "acc/tiny:1", True),
        ("*", "acc/tiny:1", False),  # * never crosses a /
        ("*", "busybox:1", True),
        ("tiny", "acc/tiny:1", False),  # Podman's own filter says yes; Docker's says no
        ("acc/tin?", "acc/tiny:1", True),
        ("acc/t[a-j]ny", "acc/tiny:1", True),
        ("acc/t[^i]ny", "acc/tiny:1", False),
        ("acc/tiny", "acc/tiny@sha256:" + "b" * 64, True),
        ("127.0.0.1:5000/acc/*", "127.0.0.1:5000/acc/tiny:1", True),
        ("docker.io/acc/tiny", "acc/tiny:1", False),  # Docker matches familiar names only
        ("a\\*c", "a*c:1", True),
    ],
)
def test_familiar_match_is_dockers_reference_filter(pattern: str, name: str, matches: bool) -> None:
    assert familiar_match(reference_pattern(pattern), name) is matches


@pytest.mark.parametrize("pattern", ["acc/[", "acc/[]", "acc/[z-a]", "acc\\", "[^"])
def test_malformed_reference_filter_is_invalid(pattern: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        reference_pattern(pattern)
    assert caught.value.metadata == {"field": "references"}
