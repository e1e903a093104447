"""How the server protects its ports, from the settings: TLS on both ports, who may call
(tokens file, client CA and client-certificate roles), and the rule that an
unauthenticated server listens on loopback only unless explicitly told otherwise.

Everything is checked when the server is constructed, before a port is bound, so a
mistake stops the start-up with a message that says what to set (SECURITY.md).
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import grpc

from imagesvc.config import Settings, SettingsError
from imagesvc.core.authentication import Authenticator
from imagesvc.core.credential_files import parse_clients, parse_tokens
from imagesvc.core.reloading import FileProblem, ReloadingFile
from imagesvc.transport.http.server import split_address
from imagesvc.transport.http.tls import TlsFiles
from imagesvc.transport.loopback import is_loopback_ip
from imagesvc.transport.server_certificate import CertificateProblem, ServerCertificate

log = logging.getLogger(__name__)


class SecuritySettingsError(SettingsError):
    """The security settings cannot be used; the message says what to change."""


def is_loopback_host(host: str) -> bool:
    """A host name other than localhost is not trusted to be loopback (it is not
    resolved here); an empty host means every interface."""
    host = host.strip("[]")
    return host.lower() == "localhost" or is_loopback_ip(host)


def is_loopback_address(address: str) -> bool:
    """Whether a gRPC listen address ("host:port", "[v6]:port", "unix:path") only accepts
    connections from this machine."""
    if address.startswith(("unix:", "unix-abstract:")):
        return True
    host, sep, port = address.rpartition(":")
    return bool(sep) and port.isdigit() and is_loopback_host(host)


def _readable(path: str, setting: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SecuritySettingsError(f"{setting} {path}: {exc.strerror or exc}") from None


class ServerSecurity:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tls = self._tls_files(settings)
        self.certificate = self._certificate(self.tls)
        self.authenticator = self._authenticator(settings)
        self._check_listen_addresses(settings)

    @staticmethod
    def _tls_files(settings: Settings) -> TlsFiles | None:
        cert, key, ca = settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file
        if bool(cert) != bool(key):
            raise SecuritySettingsError(
                "TLS needs both --tls-cert-file and --tls-key-file (IMAGESVC_TLS_CERT_FILE,"
                " IMAGESVC_TLS_KEY_FILE)"
            )
        if ca and not cert:
            raise SecuritySettingsError(
                "--tls-client-ca-file (mutual TLS) needs server TLS too: set --tls-cert-file"
                " and --tls-key-file"
            )
        if not cert or not key:
            return None
        for path, setting in ((cert, "--tls-cert-file"), (key, "--tls-key-file")):
            _readable(path, setting)
        if ca:
            _readable(ca, "--tls-client-ca-file")
        return TlsFiles(cert, key, ca or None)

    @staticmethod
    def _certificate(tls: TlsFiles | None) -> ServerCertificate | None:
        if tls is None:
            return None
        try:
            return ServerCertificate(tls)
        except CertificateProblem as exc:
            raise SecuritySettingsError(
                f"the TLS files (--tls-cert-file, --tls-key-file, --tls-client-ca-file) do not"
                f" work together: {exc}"
            ) from None

    def _authenticator(self, settings: Settings) -> Authenticator:
        if settings.client_cert_roles_file and not settings.tls_client_ca_file:
            raise SecuritySettingsError(
                "--client-cert-roles-file maps client certificates, which need"
                " --tls-client-ca-file (the CA they must chain to)"
            )
        try:
            tokens = (
                ReloadingFile(settings.tokens_file, parse_tokens, what="tokens file")
                if settings.tokens_file
                else None
            )
            clients = (
                ReloadingFile(
                    settings.client_cert_roles_file,
                    parse_clients,
                    what="client certificate roles file",
                )
                if settings.client_cert_roles_file
                else None
            )
        except FileProblem as exc:
            raise SecuritySettingsError(str(exc)) from None
        self._tokens = tokens
        return Authenticator(
            tokens, clients, client_certificates=bool(self.tls and self.tls.client_ca_file)
        )

    @staticmethod
    def _exposed_addresses(settings: Settings) -> list[str]:
        exposed = []
        if not is_loopback_address(settings.grpc_address):
            exposed.append(f"{settings.grpc_address} (gRPC)")
        if not is_loopback_host(split_address(settings.http_address)[0]):
            exposed.append(f"{settings.http_address} (HTTP)")
        return exposed

    def _check_listen_addresses(self, settings: Settings) -> None:
        if self.authenticator.enabled or settings.insecure_allow_unauthenticated:
            return
        exposed = self._exposed_addresses(settings)
        if exposed:
            raise SecuritySettingsError(
                f"refusing to listen on {' and '.join(exposed)} without authentication:"
                " whoever reaches these ports controls the Docker daemon, which is root on"
                " its host. Set --tokens-file and/or --tls-client-ca-file (see SECURITY.md),"
                " or listen on loopback only (e.g. --grpc-address 127.0.0.1:50051"
                " --http-address 127.0.0.1:8080), or, when something in front of this"
                " service authenticates its callers, pass --insecure-allow-unauthenticated"
                " (IMAGESVC_INSECURE_ALLOW_UNAUTHENTICATED=1)"
            )

    def log_startup(self) -> None:
        """One line on how callers are authenticated; WARNING when they are not."""
        settings = self.settings
        exposed = self._exposed_addresses(settings)
        if not self.authenticator.enabled:
            if exposed:
                log.warning(
                    "authentication is OFF and --insecure-allow-unauthenticated lets the"
                    " server listen beyond loopback: every caller that reaches it has every"
                    " role, i.e. controls the Docker daemon",
                    extra={"exposed": exposed},
                )
            else:
                log.warning(
                    "authentication is OFF: every caller has every role; listening on"
                    " loopback only (set --tokens-file or --tls-client-ca-file to listen"
                    " beyond it)"
                )
            return
        log.info(
            "authentication is on",
            extra={
                "tokens_file": settings.tokens_file,
                "tls": self.tls is not None,
                "client_ca_file": self.tls.client_ca_file if self.tls else None,
                "client_cert_roles_file": settings.client_cert_roles_file,
            },
        )
        self._warn_about_readable_tokens()
        if self.tls is None and settings.tokens_file and exposed:
            log.warning(
                "bearer tokens travel in clear text on non-loopback ports: set --tls-cert-file"
                " and --tls-key-file unless a proxy or mesh in front terminates TLS",
                extra={"exposed": exposed},
            )

    def _warn_about_readable_tokens(self) -> None:
        """A tokens file with plain `token` entries holds usable credentials: say so when
        every user of the machine may read it (hashed entries are safe to expose)."""
        path = self.settings.tokens_file
        tokens = self._tokens
        if not path or tokens is None or not tokens.current().plain_tokens:
            return
        try:
            mode = Path(path).stat().st_mode
        except OSError:
            return  # the reloading file reports it
        if mode & stat.S_IROTH:
            log.warning(
                "the tokens file holds plain tokens and every user of this machine can read"
                ' it: replace its "token" entries by "sha256" ones (imagesvc hash-token)'
                " or make it readable by this service only (chmod 600; defaultMode: 0400"
                " for a Kubernetes Secret)",
                extra={"tokens_file": path, "plain_tokens": tokens.current().plain_tokens},
            )

    def add_grpc_port(self, server: grpc.aio.Server, address: str) -> int:
        """Binds the gRPC port, with TLS when configured (the certificate files are
        followed while the server runs)."""
        if self.certificate is None:
            return server.add_insecure_port(address)
        return server.add_secure_port(address, self.certificate.grpc_credentials())
