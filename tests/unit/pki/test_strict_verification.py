"""The certificates the tests make (tests/integration/certificates.py) and the ones
docs/security.md's openssl commands make pass a strict X.509 verifier (VERIFY_X509_STRICT,
the default of Python 3.13's ssl), checked here on this machine's Python with that flag
set by hand; a certificate without an authority key identifier is refused by the same
check, so the check itself is known to bite."""

from __future__ import annotations

import datetime
import os
import re
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.integration.certificates import CertificateAuthority, KeyPair, new_ca
from tests.unit.pki.strict_tls import handshake

SECURITY_GUIDE = Path(__file__).resolve().parents[3] / "docs" / "security.md"


@pytest.fixture
def server_ca(tmp_path: Path) -> CertificateAuthority:
    return new_ca(tmp_path, "server-ca")


def _server(ca: CertificateAuthority, directory: Path) -> KeyPair:
    return ca.issue(
        directory,
        "server",
        common_name="imagesvc",
        dns=("imagesvc.test",),
        ips=("127.0.0.1",),
        server=True,
    )


@pytest.mark.parametrize("server_name", ["127.0.0.1", "imagesvc.test"])
def test_the_test_server_certificate_passes_a_strict_client(
    tmp_path: Path, server_ca: CertificateAuthority, server_name: str
) -> None:
    server = _server(server_ca, tmp_path)
    handshake(
        server_cert=server.cert,
        server_key=server.key,
        server_ca=server_ca.cert,
        server_name=server_name,
    )


def test_a_test_client_certificate_passes_a_strict_server(
    tmp_path: Path, server_ca: CertificateAuthority
) -> None:
    server = _server(server_ca, tmp_path)
    client_ca = new_ca(tmp_path, "client-ca")
    client = client_ca.issue(tmp_path, "client", common_name="client", uris=("spiffe://t/c",))
    handshake(
        server_cert=server.cert,
        server_key=server.key,
        server_ca=server_ca.cert,
        server_name="127.0.0.1",
        client_ca=client_ca.cert,
        client_cert=client.cert,
        client_key=client.key,
    )


def test_a_certificate_without_authority_key_identifier_is_refused(tmp_path: Path) -> None:
    """What the test PKI made before: the same checks refuse it, as Python 3.13 did."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bare CA")])
    ca = _signed(
        _bare(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        ),
        ca_key,
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bare")])
    leaf = _signed(
        _bare(leaf_name, ca_name, leaf_key.public_key())
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("imagesvc.test")]), critical=False
        ),
        ca_key,
    )
    (tmp_path / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.crt").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.key").write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ssl.SSLCertVerificationError, match="Missing Authority Key Identifier"):
        handshake(
            server_cert=tmp_path / "leaf.crt",
            server_key=tmp_path / "leaf.key",
            server_ca=tmp_path / "ca.crt",
            server_name="imagesvc.test",
        )


def _bare(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    """A certificate with no extensions yet."""
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def _signed(builder: x509.CertificateBuilder, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    return builder.sign(key, hashes.SHA256())


# docs/security.md's commands ---------------------------------------------------------


def _openssl_blocks() -> list[str]:
    """The ```sh blocks of docs/security.md that run openssl."""
    blocks = re.findall(r"^```sh\n(.*?)^```", SECURITY_GUIDE.read_text(), re.MULTILINE | re.DOTALL)
    return [block for block in blocks if "openssl " in block]


def _run_documented(block: str, directory: Path) -> None:
    bash = shutil.which("bash")
    assert bash is not None
    assert shutil.which("openssl") is not None, "the documented commands need openssl"
    # An empty openssl.cnf: the commands must not rely on a distribution's defaults.
    config = directory / "empty-openssl.cnf"
    config.touch()
    ran = subprocess.run(
        [bash, "-euo", "pipefail", "-c", block],
        cwd=directory,
        env={"PATH": os.environ["PATH"], "OPENSSL_CONF": str(config)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr


def test_the_security_guide_gives_the_client_and_the_server_commands() -> None:
    blocks = _openssl_blocks()
    assert len(blocks) == 2, blocks
    assert "ci-builder.crt" in blocks[0]
    assert "server.crt" in blocks[1]


def test_the_documented_certificates_pass_strict_verification(tmp_path: Path) -> None:
    """Both blocks run as written (bash: they use process substitution); the server
    certificate then serves a strict client for each of its names, and the client
    certificate satisfies a strict server."""
    client_block, server_block = _openssl_blocks()
    _run_documented(client_block, tmp_path)
    _run_documented(server_block, tmp_path)
    for server_name in ("127.0.0.1", "imagesvc.example.org"):
        handshake(
            server_cert=tmp_path / "server.crt",
            server_key=tmp_path / "server.key",
            server_ca=tmp_path / "ca.crt",
            server_name=server_name,
            client_ca=tmp_path / "client-ca.crt",
            client_cert=tmp_path / "ci-builder.crt",
            client_key=tmp_path / "ci-builder.key",
        )
    for ca in ("ca.crt", "client-ca.crt"):
        _assert_extensions(tmp_path / ca, ca=True)
    for leaf in ("server.crt", "ci-builder.crt"):
        _assert_extensions(tmp_path / leaf, ca=False)


def _assert_extensions(path: Path, *, ca: bool) -> None:
    """The extensions docs/security.md spells out, whatever the openssl version adds itself."""
    extensions = x509.load_pem_x509_certificate(path.read_bytes()).extensions
    constraints = extensions.get_extension_for_class(x509.BasicConstraints)
    usage = extensions.get_extension_for_class(x509.KeyUsage)
    extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert constraints.critical
    assert constraints.value.ca is ca
    assert usage.critical
    if ca:
        assert usage.value.key_cert_sign
        assert usage.value.crl_sign
    else:
        assert usage.value.digital_signature
        extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
        extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        extensions.get_extension_for_class(x509.SubjectAlternativeName)
