"""The store: schema migrations, indexed status queries, the node key and sealed pod keys."""

from __future__ import annotations

import stat
from pathlib import Path

import peewee as pw
import pytest
from cryptography.exceptions import InvalidTag
from playhouse import migrate as schema

from host.identity import load_identity
from host.store import db as db_module
from host.store import migrations, nonces, tokens
from host.store.db import DatabaseInUse, open_database
from host.store.models import RevokedToken, Stage, StatusEvent, Workflow


def test_migrations_apply_once_and_refuse_a_newer_database(tmp_path: Path, store_url: str | None) -> None:
    db = open_database(tmp_path, store_url)
    assert migrations.current_version(db) == migrations.MIGRATIONS[-1][0]
    if store_url is None:
        assert db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    db = open_database(tmp_path, store_url)  # a second start changes nothing
    assert migrations.SchemaMigration.select().count() == len(migrations.MIGRATIONS)
    migrations.SchemaMigration.create(version=999, applied_at=0)
    db.close()
    with pytest.raises(RuntimeError, match="newer than this node knows"):
        open_database(tmp_path, store_url)


def test_a_version_2_database_loses_the_unread_columns_and_keeps_its_rows(
    tmp_path: Path, store_url: str | None
) -> None:
    db = open_database(tmp_path, store_url)
    # As version 2 made them: the columns nothing read, filled.
    db.execute_sql("ALTER TABLE workflow ADD COLUMN request TEXT NOT NULL DEFAULT '{}'")
    db.execute_sql("ALTER TABLE workflow ADD COLUMN payment TEXT")
    db.execute_sql("ALTER TABLE result ADD COLUMN path TEXT NOT NULL DEFAULT ''")
    db.execute_sql(
        "INSERT INTO workflow (id, owner, environment_id, free, viewers, created_at, request, payment)"
        " VALUES ('w', '0xabc', 'env', TRUE, '[]', 0, '{\"stages\": []}', NULL)"
    )
    migrations.SchemaMigration.delete().where(migrations.SchemaMigration.version >= 3).execute()
    db.close()

    db = open_database(tmp_path, store_url)
    assert migrations.current_version(db) == migrations.MIGRATIONS[-1][0]
    for table, column in migrations.UNREAD_COLUMNS:
        assert column not in {c.name for c in db.get_columns(table)}, (table, column)
    assert Workflow.get_by_id("w").owner == "0xabc"
    db.close()


def test_a_version_3_database_gains_the_stage_queue_columns_and_keeps_its_rows(
    tmp_path: Path, store_url: str | None
) -> None:
    db = open_database(tmp_path, store_url)
    for column, _ in migrations.QUEUE_COLUMNS:  # as version 3 made the table: without them
        db.execute_sql(f"ALTER TABLE stage DROP COLUMN {column}")
    Workflow.create(id="w", owner="0xabc", environment_id="env", free=True, created_at=0)
    Stage.insert(  # the columns given and those with defaults: none of the dropped ones
        job_id="j", workflow="w", index=0, owner="0xabc", environment_id="env", engine="e", status=1,
        spec={}, max_duration_seconds=60, created_at=5, queue_deadline=3605,
    ).execute()  # fmt: skip
    migrations.SchemaMigration.delete().where(migrations.SchemaMigration.version >= 4).execute()
    db.close()

    db = open_database(tmp_path, store_url)
    assert migrations.current_version(db) == migrations.MIGRATIONS[-1][0]
    stage = Stage.get_by_id("j")
    assert (stage.queue_deadline, stage.queued_at, stage.queue_limit_seconds) == (3605, None, None)
    db.close()


def test_a_version_4_database_gains_the_job_info_columns_and_keeps_its_rows(
    tmp_path: Path, store_url: str | None
) -> None:
    db = open_database(tmp_path, store_url)
    # As version 4 made them: without the workflow's metadata and the stage's out-of-memory flag.
    migrator = schema.SchemaMigrator.from_database(db)
    schema.migrate(*(migrator.drop_column(table, column) for table, column, _ in migrations.JOB_INFO_COLUMNS))
    db.execute_sql(
        "INSERT INTO workflow (id, owner, environment_id, free, viewers, created_at)"
        " VALUES ('w', '0xabc', 'env', TRUE, '[]', 0)"
    )
    migrations.SchemaMigration.delete().where(migrations.SchemaMigration.version >= 5).execute()
    db.close()

    db = open_database(tmp_path, store_url)
    assert migrations.current_version(db) == migrations.MIGRATIONS[-1][0]
    for table, column, _ in migrations.JOB_INFO_COLUMNS:
        assert column in {c.name for c in db.get_columns(table)}, (table, column)
    workflow = Workflow.get_by_id("w")
    assert (workflow.owner, workflow.metadata) == ("0xabc", None)
    db.close()


def test_a_version_5_database_gains_the_start_crash_count_at_zero(
    tmp_path: Path, store_url: str | None
) -> None:
    db = open_database(tmp_path, store_url)
    db.execute_sql("ALTER TABLE stage DROP COLUMN start_crashes")  # as version 5 made the table
    Workflow.create(id="w", owner="0xabc", environment_id="env", free=True, created_at=0)
    values = {"job_id": "j", "workflow": "w", "index": 0, "owner": "0xabc", "environment_id": "env",
              "engine": "e", "status": 1, "spec": {}, "max_duration_seconds": 60, "created_at": 5}  # fmt: skip
    fields = [f for f in Stage._meta.sorted_fields if f.name != "start_crashes"]
    row = {f: values.get(f.name, f.default() if callable(f.default) else f.default) for f in fields}
    row = {f: v for f, v in row.items() if v is not None}
    columns = ", ".join(f'"{f.column_name}"' for f in row)
    marks = ", ".join(db.param for _ in row)
    # Raw SQL: peewee's insert would name every column with a default, the dropped one too.
    db.execute_sql(f"INSERT INTO stage ({columns}) VALUES ({marks})", [f.db_value(v) for f, v in row.items()])
    migrations.SchemaMigration.delete().where(migrations.SchemaMigration.version >= 6).execute()
    db.close()

    db = open_database(tmp_path, store_url)
    assert migrations.current_version(db) == migrations.MIGRATIONS[-1][0]
    assert Stage.get_by_id("j").start_crashes == 0
    db.close()


def test_a_version_7_database_gains_the_revoked_tokens_table(tmp_path: Path, store_url: str | None) -> None:
    db = open_database(tmp_path, store_url)
    db.drop_tables([RevokedToken])  # as version 7 left the database
    migrations.SchemaMigration.delete().where(migrations.SchemaMigration.version >= 8).execute()
    db.close()

    db = open_database(tmp_path, store_url)
    assert migrations.current_version(db) == migrations.MIGRATIONS[-1][0]
    tokens.revoke("a" * 32, "0xabc", expires_at=100.0, now=10.0)
    assert tokens.is_revoked("a" * 32)
    db.close()


def test_revoked_tokens_are_kept_until_they_would_have_expired(tmp_path: Path, store_url: str | None) -> None:
    open_database(tmp_path, store_url)
    tokens.revoke("early", "0xabc", expires_at=50.0, now=10.0)
    tokens.revoke("late", "0xabc", expires_at=500.0, now=10.0)
    tokens.revoke("late", "0xabc", expires_at=500.0, now=20.0)  # again: a no-op
    assert tokens.is_revoked("early") and tokens.is_revoked("late")
    tokens.revoke("expired", "0xabc", expires_at=60.0, now=100.0)  # expired already: nothing to keep
    assert not tokens.is_revoked("expired")
    assert not tokens.is_revoked("early")  # dropped: its expiry refuses it now
    assert tokens.is_revoked("late")


def test_nonces_are_accepted_once_up_to_bigint(tmp_path: Path, store_url: str | None) -> None:
    open_database(tmp_path, store_url)
    assert nonces.consume("0xabc", 5) is None
    assert nonces.consume("0xabc", 5) == 5
    assert nonces.consume("0xabc", 2**63 - 1) is None
    assert nonces.consume("0xabc", 7) == 2**63 - 1


def test_a_second_node_on_one_postgresql_database_is_refused(tmp_path: Path, postgres_url: str) -> None:
    import psycopg2

    open_database(tmp_path, postgres_url)  # this process holds the node lease now
    other = psycopg2.connect(postgres_url)
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", (db_module.NODE_LEASE_KEY,))
            assert cursor.fetchone() == (False,)
    finally:
        other.close()
    assert db_module._lease is not None
    db_module._lease.close()  # as if the node had died: the server releases the lease
    db_module._lease = None
    taker = psycopg2.connect(postgres_url)
    with taker.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", (db_module.NODE_LEASE_KEY,))
    with pytest.raises(DatabaseInUse, match="another node is running"):
        open_database(tmp_path, postgres_url)
    taker.close()


def query_plan(db: pw.Database, query: pw.Query) -> str:
    sql, params = query.sql()
    return " ".join(str(row) for row in db.execute_sql(f"EXPLAIN QUERY PLAN {sql}", params).fetchall())


@pytest.mark.parametrize(
    "build",
    [
        lambda: Stage.select().where(Stage.owner == "0xabc").order_by(Stage.created_at.desc()),
        lambda: Stage.select().where(Stage.workflow == "w"),
        lambda: Stage.select().where((Stage.terminal == False) & (Stage.environment_id == "e")),
        lambda: StatusEvent.select().where(StatusEvent.stage == "j").order_by(StatusEvent.id),
    ],
    ids=["by owner", "by workflow", "active per environment", "history"],
)
def test_status_queries_use_an_index(tmp_path: Path, build: object) -> None:
    db = open_database(tmp_path)
    plan = query_plan(db, build())  # type: ignore[operator]
    assert "SEARCH" in plan and "USING INDEX" in plan, plan  # never a full scan of the table


def test_node_key_is_created_once_with_owner_only_rights(tmp_path: Path) -> None:
    first = load_identity(tmp_path)
    assert stat.S_IMODE((tmp_path / "node_key").stat().st_mode) == 0o600
    assert load_identity(tmp_path) == first
    (tmp_path / "node_key").chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        load_identity(tmp_path)


def test_pod_keys_are_sealed_to_their_job(tmp_path: Path) -> None:
    identity = load_identity(tmp_path)
    sealed = identity.seal(b"0xsecretpodkey", b"job-1")
    assert b"secretpodkey" not in sealed
    assert identity.unseal(sealed, b"job-1") == b"0xsecretpodkey"
    with pytest.raises(InvalidTag):
        identity.unseal(sealed, b"job-2")  # a sealed key cannot be moved to another stage
    other = load_identity(tmp_path / "other")
    with pytest.raises(InvalidTag):
        other.unseal(sealed, b"job-1")
