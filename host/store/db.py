"""Opening the database: SQLite in WAL mode under the data dir, or PostgreSQL by URL."""

from __future__ import annotations

from pathlib import Path

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


def open_database(data_dir: Path, url: str | None = None) -> pw.Database:
    """Connects, binds the models, and applies pending migrations."""
    if url:
        db = connect(url)
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        db = pw.SqliteDatabase(str(data_dir / "node.db"), pragmas=SQLITE_PRAGMAS, check_same_thread=False)
    runner.close()  # the database thread's connection to a database bound before (tests bind many)
    models.database_proxy.initialize(db)
    db.connect(reuse_if_open=True)
    migrate(db)
    return db
