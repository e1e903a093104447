"""Client-certificate names on the HTTP port, from what ssl decodes of a verified
certificate, and the uvicorn TLS options."""

from __future__ import annotations

import ssl
from pathlib import Path

from imagesvc.core.credential_files import CertificateNames
from imagesvc.transport.http.tls import TlsFiles, certificate_names, server_ssl_options
from imagesvc.transport.server_certificate import ServerCertificate
from tests.integration.certificates import new_ca

PEER = {
    "subject": ((("organizationName", "Example"),), (("commonName", "ci-builder"),)),
    "subjectAltName": (
        ("DNS", "builder.internal"),
        ("URI", "spiffe://example.org/ci"),
        ("email", "ci@example.org"),
        ("IP Address", "10.0.0.1"),
    ),
}


def test_names_of_a_decoded_certificate() -> None:
    assert certificate_names(PEER) == CertificateNames(
        common_names=("ci-builder",),
        dns=("builder.internal",),
        uris=("spiffe://example.org/ci",),
        emails=("ci@example.org",),
    )


def test_client_certificates_are_requested_not_demanded_on_http() -> None:
    options = server_ssl_options(TlsFiles("c.pem", "k.pem", "ca.pem"))
    assert options["ssl_cert_reqs"] == ssl.CERT_OPTIONAL
    assert options["ssl_ca_certs"] == "ca.pem"
    assert server_ssl_options(TlsFiles("c.pem", "k.pem", None)) == {
        "ssl_certfile": "c.pem",
        "ssl_keyfile": "k.pem",
    }


def test_the_http_port_speaks_tls_1_2_or_newer(tmp_path: Path) -> None:
    """Whatever the system's OpenSSL configuration allows, as docs/security.md promises."""
    ca = new_ca(tmp_path, "ca")
    pair = ca.issue(tmp_path, "server", common_name="imagesvc", server=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    ServerCertificate(TlsFiles(str(pair.cert), str(pair.key), None)).follow(context)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    ServerCertificate(TlsFiles(str(pair.cert), str(pair.key), None)).follow(context)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3  # never lowered
