"""TLS: the self-signed certificate in the data directory, and ``serve --tls`` as a real
process driven by the official identity SDK (which only speaks https)."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest
from azure.communication.identity import CommunicationIdentityClient, CommunicationUserIdentifier
from cryptography import x509

from switchboard.signalling.datadir import ensure_data_dir
from switchboard.signalling.tls import ensure_self_signed, self_signed_paths
from tests.helpers.serve import serving

from .test_cli import cli


def _names(cert_path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {
        *alt.get_values_for_type(x509.DNSName),
        *map(str, alt.get_values_for_type(x509.IPAddress)),
    }


def test_self_signed_certificate_is_made_once(tmp_path: Path) -> None:
    cert, key, created = ensure_self_signed(tmp_path, ["0.0.0.0", "rtc.example.org", "10.0.0.7"])
    assert created and (cert, key) == self_signed_paths(tmp_path)
    assert _names(cert) == {"localhost", "127.0.0.1", "::1", "rtc.example.org", "10.0.0.7"}
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in key.read_bytes() and b"PRIVATE" not in cert.read_bytes()
    before = cert.read_bytes(), key.read_bytes()
    again = ensure_self_signed(tmp_path, ["other.example.org"])
    assert again == (cert, key, False) and (cert.read_bytes(), key.read_bytes()) == before


def _connection_string(lines: list[str]) -> str:
    return next(line for line in lines if line.startswith("endpoint="))


async def test_serve_tls_self_signed_with_the_identity_sdk(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cert, _ = self_signed_paths(data)
    async with serving("--data-dir", str(data), "--tls", "self-signed") as served:
        lines = served.lines
        assert (
            f"created self-signed TLS certificate {cert} (clients trust it by this path)" in lines
        )
        connection_string = _connection_string(lines)
        assert connection_string.startswith("endpoint=https://127.0.0.1:")
        assert lines[-1].startswith("Switchboard listening on https://127.0.0.1:")
        client = CommunicationIdentityClient.from_connection_string(
            connection_string, connection_verify=str(cert)
        )
        user = await asyncio.to_thread(client.create_user)
    first_cert = cert.read_bytes()

    # A restart reuses the certificate, and the identity made before is still there.
    async with serving("--data-dir", str(data), "--tls", "self-signed") as served:
        lines = served.lines
        assert f"using self-signed TLS certificate {cert} (clients trust it by this path)" in lines
        client = CommunicationIdentityClient.from_connection_string(
            _connection_string(lines), connection_verify=str(cert)
        )
        token = await asyncio.to_thread(
            client.get_token, CommunicationUserIdentifier(user.raw_id), ["voip"]
        )
        assert token.token
    assert cert.read_bytes() == first_cert


async def test_serve_with_given_certificate_files(tmp_path: Path) -> None:
    cert, key, _ = ensure_self_signed(tmp_path / "own")
    data = str(tmp_path / "data")
    async with serving(
        "--data-dir", data, "--tls-cert", str(cert), "--tls-key", str(key)
    ) as served:
        lines = served.lines
        client = CommunicationIdentityClient.from_connection_string(
            _connection_string(lines), connection_verify=str(cert)
        )
        assert (await asyncio.to_thread(client.create_user)).raw_id.startswith("8:acs:")
    assert not (tmp_path / "data" / "tls").exists()


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("--tls-cert", "c.pem"), id="cert without key"),
        pytest.param(("--tls", "self-signed", "--tls-key", "k.pem"), id="self-signed and a key"),
        pytest.param(("--tls", "acme"), id="unknown mode"),
    ],
)
def test_serve_tls_usage_errors(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = cli("serve", "--port", "0", "--data-dir", tmp_path / "data", *args)
    assert result.returncode != 0
    assert "Switchboard listening" not in result.stdout


def test_connection_string_https(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ensure_data_dir(data)
    result = cli("connection-string", "--data-dir", data, "--https", "--port", "8443")
    assert result.returncode == 0 and result.stdout.startswith("endpoint=https://127.0.0.1:8443/;")
