"""`imagesvc healthcheck`: one grpc.health.v1 Check of the server this environment
configures, for the container image's HEALTHCHECK (exit 0 healthy, 1 not, one line
saying why).

It reads the same flags and IMAGESVC_* variables as `imagesvc serve`: the gRPC address
(a wildcard host such as 0.0.0.0 or [::] is probed on loopback), and whether the server
speaks TLS (IMAGESVC_TLS_CERT_FILE) or demands client certificates
(IMAGESVC_TLS_CLIENT_CA_FILE). What only a client needs comes from its own flags or
IMAGESVC_HEALTHCHECK_* variables: the CA that signed the server's certificate, the name
on it (the probe connects to an IP address), and a client certificate for mutual TLS.
Health needs no bearer token, so the tokens file is never read.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagesvc.config import Settings

if TYPE_CHECKING:
    import grpc

# The default is readiness (""), which follows the Docker daemon: Docker's health status
# is what compose's `depends_on: condition: service_healthy` waits for, and a service
# whose daemon is down cannot do its work, so it is not healthy to its dependants.
# Kubernetes ignores HEALTHCHECK: its liveness probe asks for "liveness" (SERVING while
# the process serves), its readiness probe for "".
DEFAULT_SERVICE = ""
DEFAULT_TIMEOUT_SECONDS = 3.0
_ENV = "IMAGESVC_HEALTHCHECK_"

# A server bound to every interface is reached on loopback.
_WILDCARD_HOSTS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "[::]": "[::1]"}  # noqa: S104


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--grpc-address",
        help="the server's gRPC address (default: IMAGESVC_GRPC_ADDRESS, as for serve;"
        " 0.0.0.0 and [::] are probed on loopback)",
    )
    parser.add_argument(
        "--service",
        help=f"health service name ({_ENV}SERVICE; default '': readiness, follows the"
        " Docker daemon; 'liveness': SERVING while the process serves)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        help=f"seconds to wait for the answer ({_ENV}TIMEOUT_SECONDS;"
        f" default {DEFAULT_TIMEOUT_SECONDS:g})",
    )
    tls = parser.add_argument_group(
        "TLS (on when the server has IMAGESVC_TLS_CERT_FILE, with --tls, or when any of"
        " these files is given; see SECURITY.md)"
    )
    tls.add_argument(
        "--tls",
        action="store_true",
        default=None,
        help=f"speak TLS to a server elsewhere, e.g. from a test pod ({_ENV}TLS=true)",
    )
    tls.add_argument(
        "--tls-ca-file",
        help=f"CA of the server certificate ({_ENV}TLS_CA_FILE; default: system CAs)",
    )
    tls.add_argument(
        "--tls-server-name",
        help=f"name on the server certificate ({_ENV}TLS_SERVER_NAME; default: the host probed)",
    )
    tls.add_argument(
        "--tls-client-cert-file",
        help=f"client certificate when the server demands one ({_ENV}TLS_CLIENT_CERT_FILE)",
    )
    tls.add_argument(
        "--tls-client-key-file",
        help=f"key of the client certificate ({_ENV}TLS_CLIENT_KEY_FILE)",
    )


class HealthcheckError(Exception):
    """The probe cannot be made as configured."""


@dataclass(frozen=True)
class Probe:
    address: str
    service: str = DEFAULT_SERVICE
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    tls: bool = False
    ca_file: str | None = None
    server_name: str | None = None
    client_cert_file: str | None = None
    client_key_file: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace, environ: dict[str, str] | None = None) -> Probe:
        env = dict(os.environ) if environ is None else environ

        def option(name: str) -> str | None:
            value = getattr(args, name, None)
            if value is None:
                value = env.get(_ENV + name.upper()) or None
            return value if value is None else str(value)

        try:
            settings = Settings.from_env(env, grpc_address=args.grpc_address)
            timeout = float(
                args.timeout
                if args.timeout is not None
                else env.get(_ENV + "TIMEOUT_SECONDS") or DEFAULT_TIMEOUT_SECONDS
            )
        except (ValueError, TypeError) as exc:
            raise HealthcheckError(str(exc)) from None
        service = args.service if args.service is not None else env.get(_ENV + "SERVICE", "")
        ca_file = option("tls_ca_file")
        client_cert_file = option("tls_client_cert_file")
        client_key_file = option("tls_client_key_file")
        probe = cls(
            address=probe_address(settings.grpc_address),
            service=service,
            timeout=timeout,
            # A probe of a server in another container or pod has not the server's
            # settings: --tls, or a CA or client certificate to present, says TLS as well.
            tls=bool(settings.tls_cert_file)
            or _flag(args.tls, env.get(_ENV + "TLS"))
            or any((ca_file, client_cert_file, client_key_file)),
            ca_file=ca_file,
            server_name=option("tls_server_name"),
            client_cert_file=client_cert_file,
            client_key_file=client_key_file,
        )
        if settings.tls_client_ca_file and not (probe.client_cert_file and probe.client_key_file):
            raise HealthcheckError(
                "the server demands client certificates (IMAGESVC_TLS_CLIENT_CA_FILE): set"
                f" --tls-client-cert-file and --tls-client-key-file ({_ENV}TLS_CLIENT_CERT_FILE,"
                f" {_ENV}TLS_CLIENT_KEY_FILE)"
            )
        return probe

    def credentials(self) -> grpc.ChannelCredentials:
        import grpc

        def read(path: str | None) -> bytes | None:
            if path is None:
                return None
            try:
                return Path(path).read_bytes()
            except OSError as exc:
                raise HealthcheckError(f"cannot read {path}: {exc.strerror}") from None

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.ca_file),
            private_key=read(self.client_key_file),
            certificate_chain=read(self.client_cert_file),
        )

    def run(self) -> tuple[bool, str]:
        """(healthy, one line saying what was found)."""
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        where = f"{self.address}{' (TLS)' if self.tls else ''}, service {self.service!r}"
        options = [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []
        channel = (
            grpc.secure_channel(self.address, self.credentials(), options=options)
            if self.tls
            else grpc.insecure_channel(self.address)
        )
        with channel:
            try:
                stub: Any = health_pb2_grpc.HealthStub(channel)  # its types have no methods
                response = stub.Check(
                    health_pb2.HealthCheckRequest(service=self.service), timeout=self.timeout
                )
            except grpc.RpcError as error:
                code = error.code() if isinstance(error, grpc.Call) else None
                details = (error.details() if isinstance(error, grpc.Call) else None) or ""
                name = code.name if code is not None else "ERROR"
                if code == grpc.StatusCode.NOT_FOUND:
                    details = "the server has no such health service"
                reason = details.splitlines()[0] if details else "no details"
                return False, f"{name} from {where}: {reason}"
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        return response.status == health_pb2.HealthCheckResponse.SERVING, f"{status} ({where})"


def _flag(given: bool | None, variable: str | None) -> bool:
    if given is not None:
        return given
    value = (variable or "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise HealthcheckError(f"{_ENV}TLS must be true or false, not {variable!r}")


def probe_address(grpc_address: str) -> str:
    """Where to reach a server listening on ``grpc_address`` from its own host."""
    if grpc_address.startswith("unix:"):
        return grpc_address
    host, sep, port = grpc_address.rpartition(":")
    if not sep:
        return grpc_address
    return f"{_WILDCARD_HOSTS.get(host, host)}:{port}"


def main(args: argparse.Namespace) -> int:
    try:
        healthy, reason = Probe.from_args(args).run()
    except HealthcheckError as exc:
        healthy, reason = False, str(exc)
    print(f"imagesvc healthcheck: {reason}", file=sys.stdout if healthy else sys.stderr)
    # Docker reserves exit code 2; 1 is "unhealthy".
    return 0 if healthy else 1
