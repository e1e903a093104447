from __future__ import annotations

import contextvars

import pytest

from imagesvc.core.errors import (
    ImageServiceError,
    InvalidArgumentError,
    Reason,
    UnauthenticatedError,
    UnavailableError,
)
from imagesvc.core.models import RegistryAuth
from imagesvc.core.redaction import (
    REDACTED,
    collecting_call_secrets,
    redact,
    redacting_errors,
    without_userinfo,
)


def test_redact_replaces_every_occurrence() -> None:
    text = "login hunter2 failed; hunter2 rejected"
    assert redact(text, ["hunter2"]) == f"login {REDACTED} failed; {REDACTED} rejected"


def test_redact_prefers_the_longest_overlapping_secret() -> None:
    # With the short one first, part of the long secret would leak.
    text = "token abc123456 and pw abc"
    assert redact(text, ["abc", "abc123456"]) == f"token {REDACTED} and pw {REDACTED}"
    assert "123456" not in redact(text, ["abc", "abc123456"])


def test_redact_ignores_empty_secrets_and_leaves_clean_text() -> None:
    assert redact("nothing secret here", ["", "absent"]) == "nothing secret here"
    assert redact("abc", []) == "abc"


def _fail_with_secret(cause: Exception) -> None:
    try:
        raise cause
    except OSError as exc:
        raise UnauthenticatedError(
            "unauthorized: user alice password s3cret rejected",
            reason=Reason.REGISTRY_UNAUTHENTICATED,
            metadata={"registry": "127.0.0.1:5001"},
        ) from exc


def test_redacting_errors_scrubs_message_and_keeps_kind_reason_metadata() -> None:
    cause = OSError("socket closed")
    with pytest.raises(UnauthenticatedError) as caught, redacting_errors(["s3cret", ""]):
        _fail_with_secret(cause)
    error = caught.value
    assert "s3cret" not in error.message
    assert "s3cret" not in str(error)
    assert error.message == f"unauthorized: user alice password {REDACTED} rejected"
    assert error.reason is Reason.REGISTRY_UNAUTHENTICATED
    assert error.metadata == {"registry": "127.0.0.1:5001"}
    assert error.__cause__ is cause


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        (UnavailableError, Reason.REGISTRY_UNAVAILABLE),
        (InvalidArgumentError, Reason.INVALID_BUILD_OPTIONS),
        (ImageServiceError, Reason.ENGINE_ERROR),
    ],
)
def test_every_kind_survives_redaction(kind: type[ImageServiceError], reason: Reason) -> None:
    with pytest.raises(kind) as caught, redacting_errors(["tok"]):
        raise kind("failed with tok", reason=reason)
    assert type(caught.value) is kind
    assert caught.value.reason is reason
    assert caught.value.message == f"failed with {REDACTED}"


def test_clean_errors_are_re_raised_unchanged() -> None:
    original = UnauthenticatedError("unauthorized: authentication required")
    with pytest.raises(UnauthenticatedError) as caught, redacting_errors(["s3cret"]):
        raise original
    assert caught.value is original


def test_other_exceptions_pass_through() -> None:
    with pytest.raises(KeyError), redacting_errors(["s3cret"]):
        raise KeyError("x")


def test_registry_auth_keeps_secrets_out_of_repr_and_lists_them() -> None:
    auth = RegistryAuth(
        username="alice",
        password="pw1",
        server_address="127.0.0.1:5001",
        identity_token="idt",
        registry_token="",
    )
    assert "pw1" not in repr(auth)
    assert "idt" not in repr(auth)
    assert "alice" in repr(auth)
    assert auth.secrets() == ("pw1", "idt")
    assert auth.engine_document() == {
        "username": "alice",
        "password": "pw1",
        "serveraddress": "127.0.0.1:5001",
        "identitytoken": "idt",
    }
    assert not auth.is_empty
    assert RegistryAuth(server_address="127.0.0.1:5001").is_empty
    assert RegistryAuth(registry_token="t").secrets() == ("t",)


DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("ci:hunter2@127.0.0.1:5000/app", f"{REDACTED}@127.0.0.1:5000/app"),
        ("https://ci:hunter2@registry.example", f"https://{REDACTED}@registry.example"),
        ("ci:p@ss@registry.example/app:1", f"{REDACTED}@registry.example/app:1"),
        ("tagging as 'ci:hunter2@host/x'", f"tagging as '{REDACTED}@host/x'"),
        (f"busybox@{DIGEST}", f"busybox@{DIGEST}"),
        (f"busybox:1.36@{DIGEST}", f"busybox:1.36@{DIGEST}"),
        (f"127.0.0.1:5000/team/app:1@{DIGEST}", f"127.0.0.1:5000/team/app:1@{DIGEST}"),
        ("127.0.0.1:5000/team/app:1", "127.0.0.1:5000/team/app:1"),
    ],
)
def test_without_userinfo_hides_user_information_and_keeps_digests(text: str, shown: str) -> None:
    assert without_userinfo(text) == shown


def test_collecting_call_secrets_ends_quietly_in_another_context() -> None:
    # A server stream cancelled while grpc waits to send is finalised by the event
    # loop in a context of its own: ending the block there must not raise.
    block = collecting_call_secrets()
    block.__enter__()
    contextvars.Context().run(block.__exit__, None, None, None)
