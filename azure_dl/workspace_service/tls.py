"""The service's own certificate authority and its localhost server certificate, generated at start.

The SDK's bearer-token policy refuses plain http, so the service speaks HTTPS; clients trust it through a CA
bundle (certifi's roots plus this CA) named by REQUESTS_CA_BUNDLE, so other HTTPS in the same shell still works.
The CA and key persist under DIR/tls so that a restarted service keeps the bundle a shell already points at.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 365
HOSTS = ("localhost",)
ADDRESSES = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class TlsFiles:
    """Where the generated material lives: `bundle` is what clients point REQUESTS_CA_BUNDLE at."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    bundle: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _load_or_make_ca(folder: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = folder / "ca.pem", folder / "ca.key"
    if cert_path.is_file() and key_path.is_file():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        not_after = cert.not_valid_after_utc
        if isinstance(key, ec.EllipticCurvePrivateKey) and not_after > _now() + datetime.timedelta(days=1):
            return cert, key
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("azure-dl local workspace CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(key, key_path)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _server_cert(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(host) for host in HOSTS]
    names += [x509.IPAddress(ipaddress.ip_address(address)) for address in ADDRESSES]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=VALID_DAYS - 1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = folder / "server.pem", folder / "server.key"
    _write_key(key, key_path)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _certifi_roots() -> bytes:
    # certifi comes with requests (a dependency); without it the bundle would hold only our CA and break
    # every other HTTPS call made from a shell that sourced connection.env.
    import certifi

    return Path(certifi.where()).read_bytes()


def bundle_path(folder: Path) -> Path:
    """The client CA bundle `prepare(folder)` writes (jobs point REQUESTS_CA_BUNDLE at it)."""
    return folder / "ca-bundle.pem"


def prepare(folder: Path) -> TlsFiles:
    """Reuse (or create) the CA under `folder`, issue a fresh server certificate and write the client bundle."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _load_or_make_ca(folder)
    server_cert, server_key = _server_cert(ca, ca_key, folder)
    bundle = bundle_path(folder)
    roots = _certifi_roots().rstrip(b"\n")
    bundle.write_bytes(roots + b"\n\n# azure-dl local workspace CA\n" + ca.public_bytes(serialization.Encoding.PEM))
    return TlsFiles(ca_cert=folder / "ca.pem", server_cert=server_cert, server_key=server_key, bundle=bundle)


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """The TLS context the listening socket is wrapped with."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=str(files.server_cert), keyfile=str(files.server_key))
    return context
