"""Opening the database: SQLite in WAL mode under the data dir, or PostgreSQL by URL."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import peewee as pw
from playhouse.db_url import connect

from host.store import models, runner
from host.store.migrations import migrate

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "normal",  # with WAL: durable across process crashes, fast
    "foreign_keys": 1,
    "busy_timeout": 10_000,
    "cache_size": -32_000,
}


# pg_try_advisory_lock's key for the node lease: one node per PostgreSQL database ("c2dnode").
NODE_LEASE_KEY = 0x6332646E6F6465

_lease: Any = None  # the connection holding the node lease, open for the process's life


class DatabaseInUse(RuntimeError):
    """Another node already holds this PostgreSQL database's node lease."""


def _take_lease(db: pw.PostgresqlDatabase) -> None:
    """Takes the node lease: a session advisory lock on a connection of its own, held until the
    process ends (the server releases it when the connection drops, even on SIGKILL). Two nodes on
    one database would corrupt each other's state, as two on one data dir would."""
    global _lease
    import psycopg2

    release_lease()  # a database opened before in this process (tests open many)
    conn = psycopg2.connect(dbname=db.database, **db.connect_params)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", (NODE_LEASE_KEY,))
        row = cursor.fetchone()
    if not (row and row[0]):
        conn.close()
        raise DatabaseInUse(f"another node is running on the PostgreSQL database {db.database!r}")
    _lease = conn


def release_lease() -> None:
    """Gives the node lease back, if this process holds one. Unlocked before the connection is
    closed: the server drops a closed connection's locks only once it has noticed the close, so a
    lease taken again at once (the same database reopened) could otherwise find it still held."""
    global _lease
    if _lease is None:
        return
    # A connection the server already dropped holds nothing to unlock.
    with contextlib.suppress(Exception), _lease.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s)", (NODE_LEASE_KEY,))
    _lease.close()
    _lease = None


def open_database(data_dir: Path, url: str | None = None) -> pw.Database:
    """Connects, binds the models, and applies pending migrations. On PostgreSQL it first takes
    the node lease (:class:`DatabaseInUse` when another node holds it)."""
    if url:
        db = connect(url)
        if isinstance(db, pw.PostgresqlDatabase):
            _take_lease(db)
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        db = pw.SqliteDatabase(str(data_dir / "node.db"), pragmas=SQLITE_PRAGMAS, check_same_thread=False)
    runner.close()  # the database thread's connection to a database bound before (tests bind many)
    models.database_proxy.initialize(db)
    db.connect(reuse_if_open=True)
    migrate(db)
    return db
