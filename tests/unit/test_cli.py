"""The data directory, and the ``switchboard`` command run as a real process."""

from __future__ import annotations

import base64
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from switchboard.signalling.datadir import (
    ACCESS_KEY_FILE,
    DataDirError,
    ensure_data_dir,
    load_access_key,
)
from switchboard.signalling.identity.hmac_auth import parse_connection_string, sign_request
from switchboard.signalling.identity.tokens import TokenService
from tests.helpers.serve import start_serve

USER = "8:acs:00000000-0000-4000-8000-000000000000_11111111-1111-4111-8111-111111111111"


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switchboard.signalling.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Run with umask 000, so that only our own modes protect the files."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


# --- the data directory -----------------------------------------------------------------------


def test_ensure_data_dir_creates_a_private_key(tmp_path: Path, open_umask: None) -> None:
    data_dir = tmp_path / "a" / "data"
    key, created = ensure_data_dir(data_dir)
    assert created and len(key) == 32
    assert mode(data_dir) == 0o700
    key_file = data_dir / ACCESS_KEY_FILE
    assert mode(key_file) == 0o600
    assert base64.b64decode(key_file.read_text().strip(), validate=True) == key
    assert sorted(p.name for p in data_dir.iterdir()) == [ACCESS_KEY_FILE]  # no temporary left


def test_ensure_data_dir_keeps_an_existing_key(tmp_path: Path) -> None:
    key, _ = ensure_data_dir(tmp_path / "data")
    again, created = ensure_data_dir(tmp_path / "data")
    assert (again, created) == (key, False)
    assert load_access_key(tmp_path / "data") == key


def test_ensure_data_dir_keeps_an_existing_directory_mode(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o750)
    os.chmod(data_dir, 0o750)
    _, created = ensure_data_dir(data_dir)
    assert created and mode(data_dir) == 0o750
    assert mode(data_dir / ACCESS_KEY_FILE) == 0o600


def test_keys_differ_between_installations(tmp_path: Path) -> None:
    assert ensure_data_dir(tmp_path / "a")[0] != ensure_data_dir(tmp_path / "b")[0]


def test_load_access_key_without_a_key(tmp_path: Path) -> None:
    with pytest.raises(DataDirError) as info:
        load_access_key(tmp_path)
    assert str(tmp_path / ACCESS_KEY_FILE) in str(info.value)
    assert "serve" in str(info.value)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("", id="empty"),
        pytest.param("not base64!\n", id="not base64"),
        pytest.param(base64.b64encode(bytes(16)).decode(), id="16 bytes"),
        pytest.param(base64.b64encode(bytes(33)).decode(), id="33 bytes"),
    ],
)
def test_load_access_key_refuses_a_damaged_key(tmp_path: Path, content: str) -> None:
    (tmp_path / ACCESS_KEY_FILE).write_text(content)
    with pytest.raises(DataDirError) as info:
        load_access_key(tmp_path)
    assert "32 bytes" in str(info.value)


def test_load_access_key_warns_about_a_readable_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key, _ = ensure_data_dir(tmp_path)
    os.chmod(tmp_path / ACCESS_KEY_FILE, 0o644)
    assert load_access_key(tmp_path) == key
    assert "chmod 600" in caplog.text
    assert base64.b64encode(key).decode() not in caplog.text


# --- the command ------------------------------------------------------------------------------


def test_connection_string_command(tmp_path: Path) -> None:
    key, _ = ensure_data_dir(tmp_path)
    result = cli("connection-string", "--data-dir", tmp_path, "--port", "9000")
    assert result.returncode == 0, result.stderr
    key_b64 = base64.b64encode(key).decode()
    assert result.stdout == f"endpoint=http://127.0.0.1:9000/;accesskey={key_b64}\n"
    assert parse_connection_string(result.stdout) == ("http://127.0.0.1:9000/", key_b64)
    ipv6 = cli("connection-string", "--data-dir", tmp_path, "--host", "::1")
    assert ipv6.stdout.startswith("endpoint=http://[::1]:8080/;")


def test_commands_need_an_existing_key(tmp_path: Path) -> None:
    for args in (("connection-string",), ("token", "--user", USER)):
        result = cli(*args, "--data-dir", tmp_path / "missing")
        assert result.returncode == 1
        assert result.stdout == ""
        assert "no access key" in result.stderr
        assert not (tmp_path / "missing").exists()


def test_token_command(tmp_path: Path) -> None:
    key, _ = ensure_data_dir(tmp_path)
    result = cli("token", "--data-dir", tmp_path, "--user", USER)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert result.stdout == token + "\n"
    verified = TokenService(key).verify(token, "voip")
    assert verified.user_id == USER
    assert verified.scopes == ("voip", "chat")
    assert verified.expires_at - verified.issued_at == 1440 * 60


def test_token_command_scopes_and_lifetime(tmp_path: Path) -> None:
    key, _ = ensure_data_dir(tmp_path)
    result = cli(
        "token",
        "--data-dir",
        tmp_path,
        "--user",
        "u1",
        "--scopes",
        "chat",
        "--expires-minutes",
        "5",
    )
    assert result.returncode == 0, result.stderr
    verified = TokenService(key).verify(result.stdout.strip(), "chat")
    assert verified.scopes == ("chat",)
    assert verified.expires_at - verified.issued_at == 300


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("--scopes", "voip,admin"), id="unknown scope"),
        pytest.param(("--scopes", ","), id="no scope"),
        pytest.param(("--expires-minutes", "0"), id="0 minutes"),
        pytest.param(("--expires-minutes", "1441"), id="1441 minutes"),
    ],
)
def test_token_command_refuses(tmp_path: Path, args: tuple[str, ...]) -> None:
    key, _ = ensure_data_dir(tmp_path)
    result = cli("token", "--data-dir", tmp_path, "--user", USER, *args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "switchboard token:" in result.stderr
    assert base64.b64encode(key).decode() not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        pytest.param((), id="no command"),
        pytest.param(("token",), id="token without --user"),
        pytest.param(("token", "--user", "u", "--bogus"), id="unknown option"),
        pytest.param(("connection-string", "extra"), id="extra argument"),
        pytest.param(("serve", "--port", "http"), id="port not a number"),
    ],
)
def test_usage_errors(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = cli(*args)
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_serve_on_a_port_in_use(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = cli("serve", "--port", str(port), "--data-dir", tmp_path / "data")
    assert result.returncode == 1
    assert "switchboard:" in result.stderr and "in use" in result.stderr
    assert "endpoint=" not in result.stdout
    assert "Switchboard listening" not in result.stdout


def test_join_takes_its_arguments_from_the_client() -> None:
    result = cli("join", "--help")
    assert result.returncode == 0, result.stderr
    assert "switchboard join" in result.stdout and "--room" in result.stdout


async def run_server(data_dir: Path) -> tuple[list[str], str, str]:
    """Start ``serve --port 0``, wait for its ready line, create an identity with a token
    through the printed connection string, fetch the demo page, stop it (SIGTERM).

    Returns (stdout lines up to the ready line, the token obtained, all of stderr).
    """
    served = await start_serve("--data-dir", str(data_dir))
    lines = served.lines
    try:
        endpoint, key_b64 = parse_connection_string(
            next(line for line in lines if line.startswith("endpoint="))
        )
        assert lines[-1] == f"Switchboard listening on {endpoint} (web demo at /)"
        url = f"{endpoint}identities?api-version=2023-10-01"
        body = b'{"createTokenWithScopes": ["voip"]}'
        async with aiohttp.ClientSession() as session:
            headers = sign_request("POST", url, body, key_b64)
            async with session.post(url, data=body, headers=headers) as response:
                assert response.status == 201, await response.text()
                token = (await response.json())["accessToken"]["token"]
            async with session.get(endpoint) as response:
                assert response.status == 200
                assert response.content_type == "text/html"
    finally:
        await served.stop()
    return lines, token, served.stderr


async def test_serve(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first, token, stderr = await run_server(data_dir)
    key = load_access_key(data_dir)
    key_b64 = base64.b64encode(key).decode()
    assert first[0] == f"created data directory {data_dir} and its access key"
    assert sum(line.startswith("endpoint=") for line in first) == 1
    assert f";accesskey={key_b64}" in "\n".join(first)
    assert TokenService(key).verify(token, "voip")
    assert mode(data_dir) == 0o700 and mode(data_dir / ACCESS_KEY_FILE) == 0o600
    assert key_b64 not in stderr and token not in stderr  # logs hold neither

    second, _, stderr = await run_server(data_dir)
    assert not any(line.startswith("created") for line in second)
    assert f";accesskey={key_b64}" in "\n".join(second)  # same key on every start
    assert key_b64 not in stderr


@pytest.mark.parametrize(("choice", "loop"), [("auto", "uvloop"), ("asyncio", "asyncio")])
async def test_serve_event_loop(tmp_path: Path, choice: str, loop: str) -> None:
    """``serve`` runs on uvloop where installed (a dependency on Linux) unless told not to,
    and answers requests on either loop."""
    served = await start_serve("--data-dir", str(tmp_path / "data"), "--event-loop", choice)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(served.url + "/") as response:
                assert response.status == 200
    finally:
        await served.stop()
    assert f"event loop: {loop}" in served.stderr
