"""Opening the database: one ``Store`` per application, made in a cleanup context."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from .models import Base

log = logging.getLogger(__name__)

DB_FILE = "switchboard.db"


class Store:
    """The database of one installation: an async engine and a session factory.

    ``url``: an SQLAlchemy async URL; ``Store.in_data_dir`` gives the default, SQLite in the
    data directory (``<data dir>/switchboard.db``, mode 0600). Tables are created at ``open``
    if missing (no migrations yet: a later schema change will bring Alembic).
    """

    def __init__(self, url: str) -> None:
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
        """Create the tables that are missing."""
        async with self.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)

    async def close(self) -> None:
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    """Foreign keys on (for ON DELETE CASCADE), WAL for concurrent readers."""
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


async def context(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: open the store of ``app[CONFIG].data_dir`` as ``app[STORE]``."""
    from ..keys import CONFIG, STORE

    data_dir = app[CONFIG].data_dir
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
