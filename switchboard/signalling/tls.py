"""TLS for ``switchboard serve``: a certificate given by path, or one made once in the data dir.

The ACS SDKs turn every connection string into ``https://``, and browsers on another machine
need a secure context for the camera, so the server can listen with TLS:

    --tls-cert FILE --tls-key FILE   a certificate and key in PEM, from your own CA or ACME
    --tls self-signed                 <data dir>/tls/cert.pem and key.pem, made at first start

The self-signed certificate (ECDSA P-256, SHA-256, valid 825 days, the longest that Apple's
clients accept) names ``localhost``, ``127.0.0.1``, ``::1`` and the host names given (the
``--host`` the server binds, unless it is a wildcard). It is its own CA (``BasicConstraints
ca=True``), so a client can trust it by path: Python's ``ssl.create_default_context(cafile=
cert.pem)``, or an azure-core transport with ``connection_verify=<path>``. It is made once and
then reused as it is: delete ``<data dir>/tls`` to make a new one (for new host names, say).
The private key file is mode 0600 and never logged.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import ssl
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

TLS_DIR = "tls"
CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
VALIDITY_DAYS = 825  # Apple's limit for TLS server certificates
DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})


def self_signed_paths(data_dir: Path) -> tuple[Path, Path]:
    """Return ``(cert, key)``: where ``--tls self-signed`` keeps its files in ``data_dir``."""
    return data_dir / TLS_DIR / CERT_FILE, data_dir / TLS_DIR / KEY_FILE


def ensure_self_signed(data_dir: Path, hosts: Iterable[str] = ()) -> tuple[Path, Path, bool]:
    """Return ``(cert path, key path, created)``, making the certificate if it is missing.

    ``hosts``: extra DNS names or IP addresses for the subjectAltName, besides
    ``DEFAULT_NAMES``; wildcards (``0.0.0.0``, ``::``) are skipped. An existing certificate is
    reused whatever names it holds. The key is written with mode 0600 before the certificate,
    so a certificate on disk always has its key. Raises OSError on I/O errors.
    """
    cert_path, key_path = self_signed_paths(data_dir)
    if cert_path.is_file() and key_path.is_file():
        return cert_path, key_path, False
    cert_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    names = list(dict.fromkeys([*DEFAULT_NAMES, *(h for h in hosts if h not in _WILDCARDS)]))
    cert_pem, key_pem = make_self_signed(names)
    _write_private(key_path, key_pem)
    tmp = cert_path.with_name(f".{CERT_FILE}.{secrets.token_hex(4)}.tmp")
    tmp.write_bytes(cert_pem)
    os.replace(tmp, cert_path)
    return cert_path, key_path, True


def make_self_signed(names: list[str], now: datetime | None = None) -> tuple[bytes, bytes]:
    """Return ``(certificate PEM, private key PEM)`` for ``names`` (DNS names or IP addresses).

    The first name is the subject's common name; every name goes in the subjectAltName
    (IP addresses as iPAddress entries, RFC 5280 §4.2.1.6).
    """
    # Imported here: the other CLI commands need not load cryptography.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if not names:
        raise ValueError("at least one name is required")
    key = ec.generate_private_key(ec.SECP256R1())
    start = (now or datetime.now(UTC)) - timedelta(minutes=5)  # tolerate a little clock skew
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Switchboard (self-signed)"),
            x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64]),
        ]
    )
    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=VALIDITY_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """Return a TLS server context (TLS 1.2 or newer) for a PEM certificate chain and key.

    Raises OSError / ssl.SSLError if a file is missing or they do not match.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_path, key_path)
    return context


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600 from the start, replacing it atomically."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """``--tls self-signed`` | ``--tls-cert FILE --tls-key FILE`` on ``switchboard serve``."""
    group = parser.add_argument_group("TLS (https:// and wss://)")
    group.add_argument(
        "--tls",
        choices=["self-signed"],
        help="listen with TLS, with a certificate made once in <data dir>/tls",
    )
    group.add_argument("--tls-cert", type=Path, metavar="FILE", help="PEM certificate chain")
    group.add_argument("--tls-key", type=Path, metavar="FILE", help="PEM private key")


def context_from_args(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The server's TLS context from ``serve``'s arguments (None: plain HTTP).

    Prints where a newly made self-signed certificate is (clients trust it by that path).
    Raises SystemExit (via ``argparse`` conventions, status 2) on inconsistent flags, OSError
    or ssl.SSLError on unreadable or mismatched files.
    """
    if args.tls and (args.tls_cert or args.tls_key):
        raise SystemExit("switchboard serve: --tls self-signed excludes --tls-cert/--tls-key")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise SystemExit("switchboard serve: --tls-cert and --tls-key go together")
    if args.tls_cert:
        return server_context(args.tls_cert, args.tls_key)
    if args.tls != "self-signed":
        return None
    cert, key, created = ensure_self_signed(args.data_dir, [args.host])
    verb = "created" if created else "using"
    print(f"{verb} self-signed TLS certificate {cert} (clients trust it by this path)")
    return server_context(cert, key)
