"""docs/operations.md's all-on-loopback recipe, run as written: ``turn-config``, ``serve --tls
self-signed`` with TURN URLs, ``turnserver -c``, then ``check-connectivity --ca-file`` over
https. Only the ports change (free ones instead of 3478/5349/8080, so that the test can run
beside anything), plus coturn's database and pid file in the test's directory. coturn is
started from another working directory: the certificate paths in its file must be absolute.
Every wait is on a process's output or a server's answer, with a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shlex
import socket
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from switchboard.signalling.tls import CERT_FILE, TLS_DIR
from tests.helpers.coturn import RELAY_PORTS, _wait_ready, free_port, require_coturn

OPERATIONS_MD = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
TIMEOUT_S = 60.0


def recipe_commands() -> list[list[str]]:
    """The shell commands of the recipe's block, continuation lines joined, comments and ``&``
    dropped."""
    text = OPERATIONS_MD.read_text()
    start = text.index("**Everything on one machine, over loopback**")
    block = re.search(r"```sh\n(.*?)```", text[start:], re.S)
    assert block is not None
    joined = block.group(1).replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        line = line.split("#", 1)[0].strip().removesuffix("&").strip()
        if line:
            commands.append(shlex.split(line))
    return commands


@contextlib.asynccontextmanager
async def running(*argv: str, cwd: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _line_with(process: asyncio.subprocess.Process, needle: str, seen: list[str]) -> None:
    assert process.stdout is not None
    while line := await process.stdout.readline():
        seen.append(line.decode(errors="replace").rstrip())
        if needle in seen[-1]:
            return
    raise AssertionError(f"exited ({process.returncode}) without {needle!r}:\n" + "\n".join(seen))


async def test_loopback_recipe_as_documented(tmp_path: Path) -> None:
    turnserver = require_coturn()
    commands = recipe_commands()
    assert [c[:2] for c in commands] == [
        ["switchboard", "turn-config"],
        ["switchboard", "serve"],
        ["turnserver", "-c"],
        ["switchboard", "check-connectivity"],
    ]
    port, tls_port = free_port(also_tcp=True), free_port(socket.SOCK_STREAM)
    http_port = free_port(socket.SOCK_STREAM)
    relay_low = min(free_port(), 65535 - RELAY_PORTS)
    ports = {"3478": str(port), "5349": str(tls_port), "8080": str(http_port)}

    def with_ports(argv: list[str]) -> list[str]:
        return [re.sub(r":(3478|5349|8080)\b", lambda m: ":" + ports[m[1]], a) for a in argv]

    cli = [sys.executable, "-m", "switchboard.signalling.cli"]
    turn_config, serve, coturn, check = (with_ports(c) for c in commands)
    config = await asyncio.create_subprocess_exec(
        *cli, *turn_config[1:],
        "--port", str(port), "--tls-port", str(tls_port),
        "--relay-ports", f"{relay_low}-{relay_low + RELAY_PORTS - 1}",
        "--pidfile", str(tmp_path / "turnserver.pid"),
        cwd=tmp_path, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(config.communicate(), TIMEOUT_S)
    assert config.returncode == 0, err.decode()
    conf = (tmp_path / "turnserver.conf").read_text()
    cert = (tmp_path / "data" / TLS_DIR / CERT_FILE).resolve()
    assert f"cert={cert}\n" in conf and "relay-ip=127.0.0.1\n" in conf

    seen: list[str] = []
    serve_argv = [*cli, *serve[1:], "--port", str(http_port), "--host", "127.0.0.1"]
    async with running(*serve_argv, cwd=tmp_path) as server:
        await asyncio.wait_for(_line_with(server, "connection string", seen), TIMEOUT_S)
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        coturn_argv = [
            turnserver, "-c", str(tmp_path / coturn[2]), "--db", str(tmp_path / "turndb")
        ]  # fmt: skip
        async with running(*coturn_argv, cwd=elsewhere) as turn:
            context = ssl.create_default_context(cafile=str(cert))
            ready = asyncio.ensure_future(_wait_ready("127.0.0.1", port, tls_port, context))
            exited = asyncio.ensure_future(turn.wait())
            await asyncio.wait([ready, exited], timeout=TIMEOUT_S, return_when="FIRST_COMPLETED")
            exited.cancel()
            if not ready.done():
                ready.cancel()
                output = (await turn.stdout.read()).decode() if turn.stdout else ""
                pytest.fail(f"coturn did not start (exit {turn.returncode}):\n{output[-3000:]}")
            probe = await asyncio.create_subprocess_exec(
                *cli, *check[1:], cwd=tmp_path,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(probe.communicate(), TIMEOUT_S)
    assert probe.returncode == 0, (out.decode(), err.decode())
    checks = json.loads(out)["checks"]
    assert [(c["path"], c["ok"], c["error"]) for c in checks] == [
        ("udp", True, None),
        ("turn-udp", True, None),
        ("turn-tcp", True, None),
        ("turn-tls", True, None),
    ]
