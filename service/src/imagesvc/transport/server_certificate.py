"""The server's TLS certificate, key and client CA as files that may be renewed while the
server runs (cert-manager, a Secret update): both ports pick up a new version for the
connections that follow, without a restart.

The files are looked at, at most once per interval, when a TLS handshake starts: gRPC
asks through its dynamic credentials, HTTP through the SSL context's server-name
callback (which OpenSSL calls on every handshake, with or without SNI). A version that
cannot be used (unreadable, key not matching the certificate, bad PEM) is ignored with
an ERROR line and the last good one stays in force.

A changed client CA replaces the old one on gRPC; on HTTP the new CA is added to the
trust store (an SSL context cannot forget a CA), so removing a CA needs a restart.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from imagesvc.transport.http.tls import TlsFiles

log = logging.getLogger(__name__)

Signature = tuple[tuple[int, int, int, int], ...]


@dataclass(frozen=True, slots=True)
class _Pems:
    cert: bytes
    key: bytes
    client_ca: bytes | None


class CertificateProblem(ValueError):
    """The certificate files cannot be used; the message never quotes them."""


def _signature(paths: list[str]) -> Signature:
    stats = [os.stat(path) for path in paths]
    return tuple((s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns) for s in stats)


class ServerCertificate:
    def __init__(
        self,
        files: TlsFiles,
        *,
        interval_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.files = files
        self._paths = [files.cert_file, files.key_file]
        if files.client_ca_file:
            self._paths.append(files.client_ca_file)
        self._interval = interval_seconds
        self._clock = clock
        self._lock = threading.Lock()
        try:
            self._signature = _signature(self._paths)
        except OSError as exc:
            raise CertificateProblem(f"{exc.filename}: {exc.strerror or exc}") from None
        self._pems = self._load()
        self.version = 0
        self._checked = clock()

    def _load(self) -> _Pems:
        """Reads the files and checks that they work together, as the TLS stacks will."""
        files = self.files
        try:
            check = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            check.load_cert_chain(files.cert_file, files.key_file)
            if files.client_ca_file:
                check.load_verify_locations(files.client_ca_file)
            return _Pems(
                Path(files.cert_file).read_bytes(),
                Path(files.key_file).read_bytes(),
                Path(files.client_ca_file).read_bytes() if files.client_ca_file else None,
            )
        except OSError as exc:
            # ssl.SSLError is an OSError: its text names the problem, not the content.
            where = f"{exc.filename}: " if exc.filename else ""
            raise CertificateProblem(f"{where}{exc.strerror or exc}") from None

    def refresh(self) -> int:
        """Reloads changed files (at most once per interval); the current version."""
        now = self._clock()
        if now - self._checked < self._interval:
            return self.version
        with self._lock:
            if now - self._checked >= self._interval:
                self._checked = now
                self._reload_if_changed()
            return self.version

    def _reload_if_changed(self) -> None:
        try:
            signature = _signature(self._paths)
        except OSError as exc:
            signature = ()
            problem = f"{exc.filename}: {exc.strerror or exc}"
        else:
            if signature == self._signature:
                return
            try:
                self._pems = self._load()
            except CertificateProblem as exc:
                problem = str(exc)
            else:
                self._signature = signature
                self.version += 1
                log.info("reloaded the server certificate", extra={"version": self.version})
                return
        if signature != self._signature:  # one error per change, not one per handshake
            log.error(
                "the server certificate files changed but cannot be used; keeping the last"
                " good ones",
                extra={"problem": problem},
            )
        self._signature = signature

    def _grpc_configuration(self) -> Any:
        pems = self._pems
        return grpc.ssl_server_certificate_configuration(
            [(pems.key, pems.cert)], root_certificates=pems.client_ca
        )

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """Credentials for the gRPC port; a client CA makes a verified client certificate
        a condition of the handshake (gRPC cannot request one optionally)."""
        applied = [self.version]

        def fetch() -> Any:
            # None: keep the configuration in use.
            if self.refresh() == applied[0]:
                return None
            applied[0] = self.version
            return self._grpc_configuration()

        return grpc.dynamic_ssl_server_credentials(
            self._grpc_configuration(),
            fetch,
            require_client_authentication=self.files.client_ca_file is not None,
        )

    def follow(self, context: ssl.SSLContext) -> None:
        """Keeps an HTTP server's SSL context up to date, from the event loop's thread
        (where its handshakes run), for the connections after a change."""
        applied = [self.version]
        # TLS 1.2 or newer whatever the system's OpenSSL configuration allows.
        if context.minimum_version < ssl.TLSVersion.TLSv1_2:
            context.minimum_version = ssl.TLSVersion.TLSv1_2

        def on_handshake(ssl_object: Any, server_name: str | None, ctx: ssl.SSLContext) -> None:
            if self.refresh() == applied[0]:
                return
            applied[0] = self.version
            try:
                context.load_cert_chain(self.files.cert_file, self.files.key_file)
                if self.files.client_ca_file:
                    context.load_verify_locations(self.files.client_ca_file)
            except OSError as exc:  # changed again since it was checked: next time
                log.error(
                    "cannot load the server certificate into the HTTP port",
                    extra={"problem": exc.strerror or str(exc)},
                )

        context.sni_callback = on_handshake
