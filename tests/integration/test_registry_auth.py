"""Registry credentials: PushImage, PullImage and CheckRegistryAuth against htpasswd
registries, and the secrets never showing up in errors, metadata, logs or the shared
docker-py client."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator

import grpc
import pytest
from google.rpc import status_pb2

from devtools.engine_kinds import EngineKind
from devtools.sandbox import BuiltImage, Registry, SandboxEngine, build_busybox_image
from imagesvc.core.models import RegistryAuth
from imagesvc.engine.docker_adapter import DockerAdapter
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_pb2, image_service_pb2_grpc
from imagesvc.v1 import image_service_pb2 as pb
from tests.integration.log_capture import capture_logs
from tests.integration.rpc_errors import error_info
from tests.integration.transfers import (
    basic_auth,
    local_id,
    local_image,
    pushed_manifest_type,
    read_pull,
    read_push,
    registry_has_manifest,
    registry_manifest,
    remove_local,
    unique,
)

# The API contract: runs once per engine kind (tests/integration/conftest.py).
pytestmark = pytest.mark.contract

Stub = image_service_pb2_grpc.ImageServiceStub


def _auth(registry: Registry, password: str | None = None) -> image_pb2.RegistryAuth:
    assert registry.username is not None
    assert registry.password is not None
    return image_pb2.RegistryAuth(
        username=registry.username,
        password=registry.password if password is None else password,
        server_address=registry.address,
    )


@pytest.fixture
def auth_image(
    engine: SandboxEngine, auth_registry: Registry, busybox_image: BuiltImage
) -> Iterator[tuple[str, str, str]]:
    """(reference, repository, image id) of a throwaway image named for the auth registry."""
    repository = unique("team/auth-")
    reference = f"{auth_registry.address}/{repository}:1"
    image_id = build_busybox_image(engine, reference, extra_lines=[f"RUN echo {unique('')} > /id"])
    yield reference, repository, image_id
    remove_local(engine, reference)


# Push and pull ----------------------------------------------------------------------


def test_push_and_pull_with_the_right_password(
    stub: Stub,
    engine: SandboxEngine,
    engine_kind: EngineKind,
    auth_registry: Registry,
    auth_image: tuple[str, str, str],
) -> None:
    reference, repository, image_id = auth_image
    auth = _auth(auth_registry)
    progress, pushed = read_push(
        stub.PushImage(pb.PushImageRequest(reference=reference, auth=auth), timeout=60)
    )
    assert progress[-1].layers_done == progress[-1].layers_total > 0
    served = registry_manifest(auth_registry, repository, "1", pushed_manifest_type(engine_kind))
    assert pushed.digest == served.digest

    remove_local(engine, reference)
    _, pulled = read_pull(
        stub.PullImage(pb.PullImageRequest(reference=reference, auth=auth), timeout=60)
    )
    assert pulled.image_id == image_id == local_id(engine, reference)
    assert pulled.digest == pushed.digest


def test_auth_with_an_empty_server_address_uses_the_reference_registry(
    stub: Stub,
    engine: SandboxEngine,
    engine_kind: EngineKind,
    auth_registry: Registry,
    auth_image: tuple[str, str, str],
) -> None:
    reference, repository, _ = auth_image
    auth = _auth(auth_registry)
    auth.server_address = ""
    _, pushed = read_push(
        stub.PushImage(pb.PushImageRequest(reference=reference, auth=auth), timeout=60)
    )
    served = registry_manifest(auth_registry, repository, "1", pushed_manifest_type(engine_kind))
    assert pushed.digest == served.digest


@pytest.mark.parametrize("credentials", ["wrong password", "wrong user", "none"])
def test_push_without_valid_credentials_is_unauthenticated(
    stub: Stub, auth_registry: Registry, auth_image: tuple[str, str, str], credentials: str
) -> None:
    reference, repository, _ = auth_image
    request = pb.PushImageRequest(reference=reference)
    if credentials == "wrong password":
        request.auth.CopyFrom(_auth(auth_registry, password=secrets.token_urlsafe(12)))
    elif credentials == "wrong user":
        request.auth.CopyFrom(_auth(auth_registry))
        request.auth.username = unique("nobody-")
    with pytest.raises(grpc.RpcError) as caught:
        read_push(stub.PushImage(request, timeout=60))
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert error_info(caught.value).reason == "REGISTRY_UNAUTHENTICATED"
    assert not registry_has_manifest(auth_registry, repository, "1")


@pytest.mark.parametrize("credentials", ["wrong password", "none"])
def test_pull_without_valid_credentials_is_unauthenticated(
    stub: Stub,
    engine: SandboxEngine,
    auth_registry: Registry,
    auth_image: tuple[str, str, str],
    credentials: str,
) -> None:
    reference, _, _ = auth_image
    read_push(
        stub.PushImage(
            pb.PushImageRequest(reference=reference, auth=_auth(auth_registry)), timeout=60
        )
    )
    remove_local(engine, reference)
    request = pb.PullImageRequest(reference=reference)
    if credentials == "wrong password":
        request.auth.CopyFrom(_auth(auth_registry, password=secrets.token_urlsafe(12)))
    with pytest.raises(grpc.RpcError) as caught:
        read_pull(stub.PullImage(request, timeout=60))
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert error_info(caught.value).reason == "REGISTRY_UNAUTHENTICATED"
    assert local_image(engine, reference) is None


# CheckRegistryAuth ------------------------------------------------------------------


def test_check_registry_auth_with_the_right_password(stub: Stub, auth_registry: Registry) -> None:
    reply = stub.CheckRegistryAuth(
        pb.CheckRegistryAuthRequest(auth=_auth(auth_registry)), timeout=30
    )
    assert reply.status == "Login Succeeded"
    # htpasswd registries hand out no refresh token.
    assert reply.identity_token == ""


@pytest.mark.parametrize("credentials", ["wrong password", "wrong user"])
def test_check_registry_auth_with_wrong_credentials_is_unauthenticated(
    stub: Stub, auth_registry: Registry, credentials: str
) -> None:
    auth = _auth(auth_registry)
    if credentials == "wrong password":
        auth.password = secrets.token_urlsafe(12)
    else:
        auth.username = unique("nobody-")
    with pytest.raises(grpc.RpcError) as caught:
        stub.CheckRegistryAuth(pb.CheckRegistryAuthRequest(auth=auth), timeout=30)
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert error_info(caught.value).reason == "REGISTRY_UNAUTHENTICATED"


@pytest.mark.parametrize("kind", ["no auth", "server address only"])
def test_check_registry_auth_without_credentials_is_invalid(
    stub: Stub, auth_registry: Registry, kind: str
) -> None:
    request = pb.CheckRegistryAuthRequest()
    if kind == "server address only":
        request.auth.server_address = auth_registry.address
    with pytest.raises(grpc.RpcError) as caught:
        stub.CheckRegistryAuth(request, timeout=30)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "INVALID_ARGUMENT"


def test_check_registry_auth_of_a_closed_port_is_unavailable(stub: Stub) -> None:
    auth = image_pb2.RegistryAuth(
        username="someone", password=secrets.token_urlsafe(12), server_address="127.0.0.1:1"
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub.CheckRegistryAuth(pb.CheckRegistryAuthRequest(auth=auth), timeout=60)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert error_info(caught.value).reason == "REGISTRY_UNAVAILABLE"


# Secrets ----------------------------------------------------------------------------

SECRET_USER = "imagesvc-secret"


@pytest.fixture(scope="module")
def secret_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """An htpasswd registry of this module, with a long, distinctive password."""
    registry = Registry(
        tmp_path_factory.mktemp("secret-registry"),
        username=SECRET_USER,
        password=f"Pw{secrets.token_hex(12)}Leak{secrets.token_hex(12)}",
    )
    registry.start()
    yield registry
    registry.stop()
    assert not registry.is_running()


def _forbidden(username: str, password: str, server_address: str) -> list[bytes]:
    """The password and the encodings a leak would likely take (auth headers)."""
    engine_document = RegistryAuth(
        username=username, password=password, server_address=server_address
    ).engine_document()
    encoded = json.dumps(engine_document).encode()
    return [
        password.encode(),
        base64.urlsafe_b64encode(encoded),
        base64.b64encode(encoded),
        basic_auth(username, password).removeprefix("Basic ").encode(),
    ]


def _assert_absent(secrets_: list[bytes], where: str, data: bytes | str) -> None:
    blob = data.encode(errors="replace") if isinstance(data, str) else data
    for secret in secrets_:
        assert secret not in blob, f"a secret leaked into {where}"


def _call_texts(call: grpc.Call) -> list[tuple[str, bytes | str]]:
    """Everything a client sees of a call besides the response messages."""
    texts: list[tuple[str, bytes | str]] = []
    for name, metadata in (
        ("initial metadata", call.initial_metadata()),
        ("trailing metadata", call.trailing_metadata()),
    ):
        for key, value in metadata or ():
            texts.append((f"{name} {key}", value))
            if key == "grpc-status-details-bin":
                assert isinstance(value, bytes)
                status = status_pb2.Status.FromString(value)
                texts.append(("rich status", str(status)))
    texts.append(("details", call.details() or ""))
    if isinstance(call, grpc.RpcError) and call.code() is not grpc.StatusCode.OK:
        texts.append(("error", str(call)))
        texts.append(("debug error string", call.debug_error_string()))
        texts.append(("error info", str(error_info(call))))
    return texts


def _adapter(server: ThreadedServer) -> DockerAdapter:
    adapter = server.server._docker.wrapped
    assert isinstance(adapter, DockerAdapter)
    return adapter


def test_secrets_never_leak(
    stub: Stub,
    engine: SandboxEngine,
    server: ThreadedServer,
    secret_registry: Registry,
    busybox_image: BuiltImage,
) -> None:
    assert secret_registry.password is not None
    right = secret_registry.password
    wrong = f"Wr{secrets.token_hex(12)}Ong{secrets.token_hex(12)}"
    reference = f"{secret_registry.address}/{unique('team/secret-')}:1"
    forbidden = _forbidden(SECRET_USER, right, secret_registry.address)
    forbidden += _forbidden(SECRET_USER, wrong, secret_registry.address)
    forbidden += _forbidden(SECRET_USER, wrong, "")
    build_busybox_image(engine, reference, extra_lines=[f"RUN echo {unique('')} > /id"])
    try:
        with capture_logs() as logs:
            # 1. An authenticated push that works.
            call = stub.PushImage(
                pb.PushImageRequest(reference=reference, auth=_auth(secret_registry)), timeout=60
            )
            _, pushed = read_push(call)
            assert pushed.digest.startswith("sha256:")
            for where, text in _call_texts(call):
                _assert_absent(forbidden, f"the push's {where}", text)

            # 2. A push with the wrong password.
            with pytest.raises(grpc.RpcError) as push_error:
                read_push(
                    stub.PushImage(
                        pb.PushImageRequest(
                            reference=reference, auth=_auth(secret_registry, password=wrong)
                        ),
                        timeout=60,
                    )
                )
            assert push_error.value.code() is grpc.StatusCode.UNAUTHENTICATED

            # 3. A pull with the wrong password.
            with pytest.raises(grpc.RpcError) as pull_error:
                read_pull(
                    stub.PullImage(
                        pb.PullImageRequest(
                            reference=reference, auth=_auth(secret_registry, password=wrong)
                        ),
                        timeout=60,
                    )
                )
            assert pull_error.value.code() is grpc.StatusCode.UNAUTHENTICATED

            # 4. CheckRegistryAuth that fails, and one that works.
            with pytest.raises(grpc.RpcError) as check_error:
                stub.CheckRegistryAuth(
                    pb.CheckRegistryAuthRequest(auth=_auth(secret_registry, password=wrong)),
                    timeout=30,
                )
            assert check_error.value.code() is grpc.StatusCode.UNAUTHENTICATED
            reply, check_call = stub.CheckRegistryAuth.with_call(
                pb.CheckRegistryAuthRequest(auth=_auth(secret_registry)), timeout=30
            )
            assert reply.status == "Login Succeeded"
            _assert_absent(forbidden, "the CheckRegistryAuth reply", reply.SerializeToString())
            for where, text in _call_texts(check_call):
                _assert_absent(forbidden, f"the CheckRegistryAuth {where}", text)

            # 5. InspectRegistryImage and CheckImageUpdates with the wrong password, and
            # an inspect that works.
            with pytest.raises(grpc.RpcError) as inspect_error:
                stub.InspectRegistryImage(
                    pb.InspectRegistryImageRequest(
                        reference=reference, auth=_auth(secret_registry, password=wrong)
                    ),
                    timeout=30,
                )
            assert inspect_error.value.code() is grpc.StatusCode.UNAUTHENTICATED
            found = stub.InspectRegistryImage(
                pb.InspectRegistryImageRequest(reference=reference, auth=_auth(secret_registry)),
                timeout=30,
            )
            assert found.digest == pushed.digest
            checked = stub.CheckImageUpdates(
                pb.CheckImageUpdatesRequest(
                    references=[reference],
                    registry_auths=[_auth(secret_registry, password=wrong)],
                ),
                timeout=30,
            )
            _assert_absent(forbidden, "the CheckImageUpdates reply", checked.SerializeToString())

        for name, error in (
            ("push", push_error.value),
            ("pull", pull_error.value),
            ("CheckRegistryAuth", check_error.value),
            ("InspectRegistryImage", inspect_error.value),
        ):
            assert isinstance(error, grpc.Call)
            for where, text in _call_texts(error):
                _assert_absent(forbidden, f"the failed {name}'s {where}", text)

        # The capture really saw the server and docker-py's transport at DEBUG.
        assert {"imagesvc.access", "urllib3.connectionpool"} <= logs.loggers, logs.loggers
        joined = "\n".join(logs.lines)
        assert "/push" in joined
        assert "/auth" in joined
        assert "/distribution/" in joined
        assert "UNAUTHENTICATED" in joined
        for line in logs.lines:
            _assert_absent(forbidden, "the server's logs", line)

        # The shared docker-py client never took the credentials.
        client = _adapter(server)._client
        assert client.auth is None
        for header in ("X-Registry-Auth", "X-Registry-Config", "Authorization"):
            assert header not in client.headers
        auths = client._auth_configs.auths
        assert secret_registry.address not in auths
        assert f"http://{secret_registry.address}" not in auths
        _assert_absent(
            forbidden, "the client's auth configs", json.dumps(client._auth_configs, default=str)
        )
        _assert_absent(forbidden, "the client's state", repr(vars(client)))
    finally:
        remove_local(engine, reference)
