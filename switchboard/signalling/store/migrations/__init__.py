"""Alembic migrations of the store (``versions/``), run by ``Store.open`` at every start."""
