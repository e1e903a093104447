"""Connection settings, registry credentials and the splitting of stream responses,
for the clients (their requests are built in _base.py) and the CLI."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import grpc

from imagesvc_client.v1 import image_pb2
from imagesvc_client.v1 import image_service_pb2 as pb

DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_TIMEOUT = 60.0
DEFAULT_CHUNK_SIZE = 1024 * 1024
# Image archives are large: fewer, larger messages (the server takes up to 8 MiB).
DEFAULT_ARCHIVE_CHUNK_SIZE = 1024 * 1024
# Build contexts, pulls and pushes move bytes: a message may be as large as a chunk.
_CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
    ("grpc.max_send_message_length", 8 * 1024 * 1024),
    # An export streams at hundreds of MiB/s: a fixed 8 MiB receive window lets the
    # server send on without waiting for window updates; the BDP probe would keep
    # resizing a smaller one (about a fifth of the server's CPU per export: bench.save).
    ("grpc.http2.lookahead_bytes", 8 * 1024 * 1024),
    ("grpc.http2.bdp_probe", 0),
)

PemSource = bytes | str | os.PathLike[str]


@dataclass(frozen=True)
class RegistryAuth:
    """Credentials for one registry, sent with the request that needs them and never
    stored by the service. ``repr`` hides the secrets."""

    username: str = ""
    password: str = field(default="", repr=False)
    server_address: str = ""
    identity_token: str = field(default="", repr=False)
    registry_token: str = field(default="", repr=False)

    def to_proto(self) -> image_pb2.RegistryAuth:
        return image_pb2.RegistryAuth(
            username=self.username,
            password=self.password,
            server_address=self.server_address,
            identity_token=self.identity_token,
            registry_token=self.registry_token,
        )


AuthLike = RegistryAuth | image_pb2.RegistryAuth


def auth_proto(auth: AuthLike | None) -> image_pb2.RegistryAuth | None:
    if auth is None or isinstance(auth, image_pb2.RegistryAuth):
        return auth
    return auth.to_proto()


def _pem(source: PemSource | None) -> bytes | None:
    """PEM bytes as given, or read from a path."""
    if source is None or isinstance(source, bytes):
        return source
    with open(source, "rb") as file:
        return file.read()


@dataclass(frozen=True)
class Connection:
    """Where and how to connect; built by the clients from their arguments."""

    address: str
    tls: bool
    root_certificates: bytes | None
    client_certificate: bytes | None
    client_key: bytes | None
    server_name: str | None
    token: str | None

    @classmethod
    def make(
        cls,
        address: str,
        *,
        tls: bool,
        root_certificates: PemSource | None,
        client_certificate: PemSource | None,
        client_key: PemSource | None,
        server_name: str | None,
        token: str | None,
    ) -> Connection:
        if (client_certificate is None) != (client_key is None):
            raise ValueError("client_certificate and client_key go together")
        # An empty token is no token (an empty IMAGESVC_TOKEN, as the CLI reads it).
        token = token or None
        if token is not None and any(c in token for c in "\r\n"):
            raise ValueError("the token must be one line")
        uses_tls = tls or root_certificates is not None or client_certificate is not None
        return cls(
            address=address,
            tls=uses_tls,
            root_certificates=_pem(root_certificates),
            client_certificate=_pem(client_certificate),
            client_key=_pem(client_key),
            server_name=server_name,
            token=token,
        )

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.client_key,
            certificate_chain=self.client_certificate,
        )

    def options(self) -> list[tuple[str, object]]:
        options: list[tuple[str, object]] = list(_CHANNEL_OPTIONS)
        if self.server_name:
            options.append(("grpc.ssl_target_name_override", self.server_name))
        return options

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Sent with every call: the bearer token, when there is one."""
        if self.token is None:
            return ()
        return (("authorization", f"Bearer {self.token}"),)

    def __repr__(self) -> str:
        # Never show the token or the private key.
        return f"Connection(address={self.address!r}, tls={self.tls})"


# Splitting stream messages into (event, result) -------------------------------------


def split_pull(
    response: pb.PullImageResponse,
) -> tuple[image_pb2.TransferProgress | None, pb.PullImageResult | None]:
    kind = response.WhichOneof("kind")
    if kind == "result":
        return None, response.result
    return (response.progress, None) if kind == "progress" else (None, None)


def split_push(
    response: pb.PushImageResponse,
) -> tuple[image_pb2.TransferProgress | None, pb.PushImageResult | None]:
    kind = response.WhichOneof("kind")
    if kind == "result":
        return None, response.result
    return (response.progress, None) if kind == "progress" else (None, None)


def split_build(
    response: pb.BuildImageResponse,
) -> tuple[str | None, pb.BuildImageResult | None]:
    kind = response.WhichOneof("kind")
    if kind == "result":
        return None, response.result
    return (response.log, None) if kind == "log" else (None, None)


def split_import(
    response: pb.ImportImagesResponse,
) -> tuple[str | None, pb.ImportImagesResult | None]:
    kind = response.WhichOneof("kind")
    if kind == "result":
        return None, response.result
    return (response.log, None) if kind == "log" else (None, None)
