"""Chat durability and the store's migrations.

- A ``switchboard serve`` subprocess killed with SIGKILL while clients post loses no message it
  acknowledged (201), and serves them all after a restart on the same data directory.
- A database made before migrations existed (issue 3's ``create_all``) is stamped and upgraded.
- The same chat code runs on PostgreSQL (asyncpg): a private server started for the test from
  Debian's binaries (``initdb`` in a temporary directory, a Unix socket only, as ``postgres``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import create_engine, inspect, text

from switchboard.sfu import MediaConfig
from switchboard.signalling.app import create_app
from switchboard.signalling.config import Config
from switchboard.signalling.identity.routes import new_identity_id
from switchboard.signalling.identity.tokens import TokenService
from switchboard.signalling.store import Store
from switchboard.signalling.store.models import Base
from tests.helpers.serve import start_serve

API = {"api-version": "2024-03-07"}


def _key(data_dir: Path) -> bytes:
    from switchboard.signalling.datadir import load_access_key

    return load_access_key(data_dir)


async def test_sigkill_loses_no_acknowledged_message(tmp_path: Path) -> None:
    served = await start_serve("--no-demo", "--data-dir", str(tmp_path))
    process, url = served.process, served.url
    tokens = TokenService(_key(tmp_path))
    user = new_identity_id(_key(tmp_path))
    headers = {"Authorization": f"Bearer {tokens.mint(user, ['chat'], 60)[0]}"}
    acknowledged: list[str] = []
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{url}/chat/threads", params=API, json={"topic": "durable"}, headers=headers
        ) as response:
            thread = (await response.json())["chatThread"]["id"]
        path = f"{url}/chat/threads/{thread}/messages"
        killed = asyncio.Event()

        async def writer(n: int) -> None:
            i = 0
            while not killed.is_set():
                try:
                    async with session.post(
                        path, params=API, json={"content": f"w{n}-{i}"}, headers=headers
                    ) as response:
                        if response.status == 201:
                            acknowledged.append((await response.json())["id"])
                except aiohttp.ClientError:
                    return  # the server died under this request: not acknowledged
                i += 1
                if len(acknowledged) >= 60 and not killed.is_set():
                    process.send_signal(signal.SIGKILL)  # mid-stream, others in flight
                    killed.set()

        await asyncio.gather(*(writer(n) for n in range(4)))
        await process.wait()
        assert process.returncode == -signal.SIGKILL
        assert len(acknowledged) >= 60

        await served.stop()  # collects the killed process and its pipes
        served = await start_serve("--no-demo", "--data-dir", str(tmp_path))
        url = served.url
        try:
            stored: set[str] = set()
            next_url: str | None = f"{url}/chat/threads/{thread}/messages?maxPageSize=200"
            while next_url:
                async with session.get(next_url, params=API, headers=headers) as response:
                    assert response.status == 200
                    body = await response.json()
                stored |= {m["id"] for m in body["value"]}
                next_url = body.get("nextLink")
            assert set(acknowledged) <= stored
        finally:
            await served.stop()


def test_a_database_from_before_migrations_is_upgraded(tmp_path: Path) -> None:
    """Issue 3 made its tables with create_all and no alembic_version: stamp, then upgrade."""
    db = tmp_path / "switchboard.db"
    engine = create_engine(f"sqlite:///{db}")
    legacy = [Base.metadata.tables[n] for n in ("identities", "revocations", "rooms")]
    legacy.append(Base.metadata.tables["room_participants"])
    Base.metadata.create_all(engine, tables=legacy)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO identities VALUES ('8:acs:x', 1.0)"))
    engine.dispose()

    async def open_twice() -> None:
        for _ in range(2):  # the second open finds everything current
            store = Store.in_data_dir(tmp_path)
            await store.open()
            await store.close()

    asyncio.run(open_twice())
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        assert {"chat_threads", "chat_messages", "alembic_version"} <= set(
            inspect(conn).get_table_names()
        )
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0002"
        assert conn.execute(text("SELECT id FROM identities")).scalar() == "8:acs:x"
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    engine.dispose()


# -- PostgreSQL ---------------------------------------------------------------------------------


def _postgres_bin() -> Path | None:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A private PostgreSQL for this test: initdb in a temporary directory owned by the
    ``postgres`` user, listening on a Unix socket there only; its asyncpg URL."""
    bin_dir = _postgres_bin()
    if bin_dir is None or shutil.which("runuser") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL's binaries (Debian's postgresql) are missing under CI")
        pytest.skip("PostgreSQL's binaries are not installed (apt-get install postgresql)")
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        as_postgres = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="switchboard-pg-"))
    data = root / "data"
    if as_postgres:
        shutil.chown(root, "postgres")
    subprocess.run(
        [*as_postgres, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
        check=True,
        capture_output=True,
    )
    port = _free_port()
    options = f"-c listen_addresses='' -c unix_socket_directories={root} -p {port} -c fsync=off"
    # pg_ctl's server inherits its stdout: a log file, not a pipe (a pipe would never close)
    log = root / "postgres.log"
    subprocess.run(
        [*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log)]
        + ["-w", "start"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=60,
    )
    try:
        subprocess.run(
            [
                *as_postgres,
                str(bin_dir / "createdb"),
                "-h",
                str(root),
                "-p",
                str(port),
                "-U",
                "postgres",
                "chat",
            ],
            check=True,
            capture_output=True,
        )
        yield f"postgresql://postgres@/chat?host={root}&port={port}"
    finally:
        subprocess.run(
            [*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


@contextlib.asynccontextmanager
async def _app_on(database_url: str, data_dir: Path) -> AsyncIterator[tuple[str, bytes]]:
    key = secrets.token_bytes(32)
    config = Config(
        access_key=key,
        data_dir=data_dir,
        database_url=database_url,
        media=MediaConfig(ice_addresses=("127.0.0.1",)),
    )
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/")).rstrip("/"), key
    finally:
        await server.close()


async def test_chat_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    async with _app_on(postgres_url, tmp_path) as (url, key):
        tokens = TokenService(key)
        ada, bob = new_identity_id(key), new_identity_id(key)
        ada_h = {"Authorization": f"Bearer {tokens.mint(ada, ['chat'], 60)[0]}"}
        bob_h = {"Authorization": f"Bearer {tokens.mint(bob, ['chat'], 60)[0]}"}
        async with aiohttp.ClientSession() as session:
            body = {"topic": "pg", "participants": [{"communicationIdentifier": {"rawId": bob}}]}
            async with session.post(
                f"{url}/chat/threads", params=API, json=body, headers=ada_h
            ) as r:
                assert r.status == 201
                thread = (await r.json())["chatThread"]["id"]
            path = f"{url}/chat/threads/{thread}/messages"

            async def post(i: int) -> int:
                headers = ada_h if i % 2 else bob_h
                async with session.post(
                    path, params=API, json={"content": str(i)}, headers=headers
                ) as r:
                    return r.status

            assert await asyncio.gather(*(post(i) for i in range(20))) == [201] * 20
            async with session.get(path, params={**API, "maxPageSize": "200"}, headers=bob_h) as r:
                messages = (await r.json())["value"]
            texts = [m for m in messages if m["type"] == "text"]
            assert sorted(int(m["content"]["message"]) for m in texts) == list(range(20))
            sequence = [int(m["sequenceId"]) for m in messages]
            assert sequence == list(range(len(messages), 0, -1))  # gap-free, newest first
    # the schema is there and current, upgraded by the server at start
    sync_url = postgres_url.replace("postgresql://", "postgresql+asyncpg://")
    store = Store(sync_url)
    async with store.engine.connect() as conn:
        version = await conn.scalar(text("SELECT version_num FROM alembic_version"))
    await store.close()
    assert version == "0002"
