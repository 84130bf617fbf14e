"""Opening the database: one ``Store`` per application, made in a cleanup context."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from sqlalchemy import Connection, event, inspect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
FIRST_REVISION = "0001"

log = logging.getLogger(__name__)

DB_FILE = "switchboard.db"


class Store:
    """The database of one installation: an async engine and a session factory.

    ``url``: an SQLAlchemy async URL; ``Store.in_data_dir`` gives the default, SQLite in the
    data directory (``<data dir>/switchboard.db``, mode 0600, WAL); a ``postgresql://`` URL
    (or ``postgresql+asyncpg://``) uses PostgreSQL through asyncpg, with the same code. The
    schema is upgraded with Alembic at ``open``.
    """

    def __init__(self, url: str) -> None:
        if url.startswith(("postgresql://", "postgres://")):
            url = "postgresql+asyncpg://" + url.split("://", 1)[1]
        self.url = url
        self.engine: AsyncEngine = create_async_engine(url)
        if url.startswith("sqlite"):
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.session: async_sessionmaker[AsyncSession] = async_sessionmaker(
            self.engine, expire_on_commit=False
        )

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> Store:
        """The default store: SQLite at ``<data_dir>/switchboard.db``."""
        return cls(f"sqlite+aiosqlite:///{(data_dir / DB_FILE).resolve()}")

    async def open(self) -> None:
        """Upgrade the schema to the newest Alembic revision (``migrations/versions``).

        A database made before migrations existed (issue 3's ``create_all``: tables but no
        ``alembic_version``) is stamped with the first revision, whose tables it has, first.
        """
        async with self.engine.begin() as conn:
            await conn.run_sync(_upgrade)

    async def close(self) -> None:
        await self.engine.dispose()


def _upgrade(connection: Connection) -> None:
    """Run Alembic's ``upgrade head`` on ``connection`` (synchronous, inside ``run_sync``)."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    tables = set(inspect(connection).get_table_names())
    if "alembic_version" not in tables and "identities" in tables:
        log.info("stamping a database made before migrations with revision %s", FIRST_REVISION)
        command.stamp(config, FIRST_REVISION)
    command.upgrade(config, "head")


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    """Foreign keys on (for ON DELETE CASCADE), WAL for concurrent readers, and every commit
    synced to disk before it returns (``synchronous=FULL``: an acknowledged chat message
    survives a crash of the machine, not only of the process)."""
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


async def context(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: open the store as ``app[STORE]``: ``app[CONFIG].database_url`` if
    set, else SQLite in ``app[CONFIG].data_dir``; its schema is upgraded first."""
    from ..keys import CONFIG, STORE

    config = app[CONFIG]
    if config.database_url:
        store = Store(config.database_url)
    else:
        data_dir = config.data_dir
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        db_path = data_dir / DB_FILE
        if not db_path.exists():
            db_path.touch(mode=0o600)
        store = Store.in_data_dir(data_dir)
    await store.open()
    app[STORE] = store
    try:
        yield
    finally:
        await store.close()
