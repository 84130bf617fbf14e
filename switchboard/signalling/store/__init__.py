"""Persistent state in the data directory: SQLAlchemy 2 (async), SQLite by default.

``db.py`` opens the database (``Store``, and ``context``, the application's cleanup context);
``models.py`` holds the tables; ``identities.py`` and ``rooms.py`` are the queries of each
service. A later service (chat) adds its tables to ``models.py`` and its queries in a module
of its own, on the same ``Store``.
"""

from .db import Store, context

__all__ = ["Store", "context"]
