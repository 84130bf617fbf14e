"""Debian's coturn on loopback for the tests, configured by ``switchboard turn-config``.

``start_coturn`` picks free loopback ports, writes a self-signed certificate for TURN over TLS
(``cryptography``), writes the configuration with the real CLI, starts ``turnserver`` and
returns once it answers a STUN Binding request (RFC 8489 §6) on UDP and accepts TLS
connections: waits are on those answers, with a deadline, never a fixed sleep. Without coturn
the caller skips, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aioice import stun

from switchboard.signalling.tls import make_self_signed

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
RELAY_PORTS = 40  # relayed addresses coturn may hand out at once in a test


@dataclass
class Coturn:
    """A running coturn: ``port`` serves TURN over UDP and TCP, ``tls_port`` TURN over TLS."""

    host: str
    port: int
    tls_port: int
    ca_file: Path
    config_file: Path
    process: asyncio.subprocess.Process
    log: list[str] = field(default_factory=list)

    @property
    def turn_urls(self) -> list[str]:
        """TURN URIs (RFC 7065) for the three transports, in the order clients prefer."""
        return [
            f"turn:{self.host}:{self.port}?transport=udp",
            f"turn:{self.host}:{self.port}?transport=tcp",
            f"turns:{self.host}:{self.tls_port}?transport=tcp",
        ]

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def require_coturn() -> str:
    """The path of ``turnserver``, or skip (fail under CI=true) when it is not installed."""
    found = shutil.which("turnserver") or (
        "/usr/bin/turnserver" if Path("/usr/bin/turnserver").exists() else None
    )
    if found is None:
        reason = "coturn is not installed (apt-get install coturn); the TURN tests need it"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def free_port(kind: int = socket.SOCK_DGRAM, also_tcp: bool = False) -> int:
    """A port free on 127.0.0.1 (UDP, and TCP too when ``also_tcp``)."""
    while True:
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not also_tcp:
            return port
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            try:
                t.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue


def write_self_signed(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate for ``host`` (an IP SAN) and its key, as PEM files."""
    cert_pem, key_pem = make_self_signed([host])
    cert_path, key_path = directory / "turn-cert.pem", directory / "turn-key.pem"
    cert_path.write_bytes(cert_pem)
    key_path.write_bytes(key_pem)
    key_path.chmod(0o600)
    return cert_path, key_path


class _StunClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answered = asyncio.Event()

    def datagram_received(self, data: bytes, addr: object) -> None:
        with contextlib.suppress(ValueError):
            if stun.parse_message(data).message_class == stun.Class.RESPONSE:
                self.answered.set()


async def _wait_ready(host: str, port: int, tls_port: int, context: ssl.SSLContext) -> None:
    """Return once coturn answers a STUN Binding on UDP ``port`` and completes a TLS handshake
    on ``tls_port``; each attempt waits for the answer (or refusal) itself."""
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(_StunClient, remote_addr=(host, port))
    try:
        while not client.answered.is_set():
            request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
            transport.sendto(bytes(request))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(client.answered.wait(), 0.2)  # STUN retransmit (RTO)
    finally:
        transport.close()
    while True:
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host, tls_port, ssl=context), 2
            )
        except (OSError, TimeoutError, ssl.SSLError):
            await asyncio.sleep(0.1)  # retry interval of a refused connection, not a sync point
            continue
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        return


@contextlib.asynccontextmanager
async def start_coturn(
    workdir: Path, data_dir: Path, sfu_address: str = "127.0.0.1"
) -> AsyncIterator[Coturn]:
    """Run coturn for ``data_dir``'s TURN secret (created if missing) until the block ends."""
    turnserver = require_coturn()
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    cert, key = write_self_signed(workdir)
    host = "127.0.0.1"
    port = free_port(also_tcp=True)
    tls_port = free_port(socket.SOCK_STREAM)
    relay_low = free_port()
    relay_low = min(relay_low, 65535 - RELAY_PORTS)
    config_file = workdir / "turnserver.conf"
    subprocess.run(
        [
            sys.executable, "-m", "switchboard.signalling.cli", "turn-config",
            "--data-dir", str(data_dir), "--out", str(config_file),
            "--listening-ip", host, "--relay-ip", host,
            "--port", str(port), "--tls-port", str(tls_port),
            "--cert", str(cert), "--pkey", str(key),
            "--relay-ports", f"{relay_low}-{relay_low + RELAY_PORTS - 1}",
            "--sfu-address", sfu_address,
            "--pidfile", str(workdir / "turnserver.pid"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        turnserver, "-c", str(config_file), "--db", str(workdir / "turndb"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    coturn = Coturn(host, port, tls_port, cert, config_file, process)

    async def drain() -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            coturn.log.append(line.decode(errors="replace").rstrip())

    drainer = asyncio.ensure_future(drain())
    try:
        ready = asyncio.ensure_future(_wait_ready(host, port, tls_port, coturn.tls_context()))
        exited = asyncio.ensure_future(process.wait())
        await asyncio.wait([ready, exited], timeout=START_TIMEOUT_S, return_when="FIRST_COMPLETED")
        exited.cancel()
        if not ready.done():
            ready.cancel()
            output = "\n".join(coturn.log[-50:])
            pytest.fail(f"coturn did not become ready (exit {process.returncode})\n{output}")
        yield coturn
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                process.kill()
                await process.wait()
        drainer.cancel()
