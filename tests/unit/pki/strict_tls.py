"""A TLS handshake in memory (two SSL objects joined by memory BIOs), with the client,
and for client certificates the server, verifying X.509 strictly (VERIFY_X509_STRICT,
the default of Python 3.13's ssl.create_default_context): checks the certificates the
tests and the docs make on any Python, without a socket."""

from __future__ import annotations

import ssl
from pathlib import Path


def strict(context: ssl.SSLContext) -> ssl.SSLContext:
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    return context


def handshake(
    *,
    server_cert: Path,
    server_key: Path,
    server_ca: Path,
    server_name: str,
    client_ca: Path | None = None,
    client_cert: Path | None = None,
    client_key: Path | None = None,
) -> None:
    """Completes a handshake or raises ssl.SSLCertVerificationError (the client's
    verdict) or ssl.SSLError (the server's verdict on the client certificate)."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(server_cert, server_key)
    if client_ca is not None:
        strict(server_context).load_verify_locations(client_ca)
        server_context.verify_mode = ssl.CERT_REQUIRED
    client_context = strict(ssl.create_default_context(cafile=str(server_ca)))
    if client_cert is not None:
        client_context.load_cert_chain(client_cert, client_key)
    # TLS 1.2: the server checks the client certificate inside the handshake (in TLS
    # 1.3 the client finishes first and would only hear of a refusal later).
    client_context.maximum_version = ssl.TLSVersion.TLSv1_2

    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    from_server, from_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(to_client, from_client, server_hostname=server_name)
    server = server_context.wrap_bio(to_server, from_server, server_side=True)
    done = {client: False, server: False}
    for _ in range(20):
        for side in (client, server):
            if not done[side]:
                try:
                    side.do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
        to_server.write(from_client.read())
        to_client.write(from_server.read())
        if all(done.values()):
            return
    raise AssertionError("the in-memory TLS handshake did not finish")
