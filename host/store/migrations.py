"""Versioned schema migrations, applied in order at start-up inside one transaction each.

A release that changes the schema appends a function here; never edit one
that has shipped. ``schema_migrations`` records what a database has.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import peewee as pw
import structlog
from playhouse import migrate as schema

from host.store import models

log = structlog.get_logger()


class SchemaMigration(models.BaseModel):
    version = pw.IntegerField(primary_key=True)
    applied_at = pw.DoubleField()


def _v1_initial(db: pw.Database) -> None:
    db.create_tables([m for m in models.ALL_MODELS if m is not models.Payment])


def _v2_payments(db: pw.Database) -> None:
    db.create_tables([models.Payment])


# Columns that were written and never read: the accepted workflow as JSON, a payment slot that
# the payments table replaced, and each result's file path (derived from its job id and index).
UNREAD_COLUMNS = (("workflow", "request"), ("workflow", "payment"), ("result", "path"))


def _v3_drop_unread_columns(db: pw.Database) -> None:
    """Drops :data:`UNREAD_COLUMNS` where they exist (a database made since has none: v1 makes
    today's tables)."""
    migrator = schema.SchemaMigrator.from_database(db)
    present = {
        (table, column.name) for table in {t for t, _ in UNREAD_COLUMNS} for column in db.get_columns(table)
    }
    schema.migrate(*(migrator.drop_column(t, c) for t, c in UNREAD_COLUMNS if (t, c) in present))


# The queue time each stage keeps (its limit, and when it entered the queue).
QUEUE_COLUMNS = (
    ("queued_at", pw.DoubleField(null=True)),
    ("queue_limit_seconds", pw.IntegerField(null=True)),
)


def _v4_stage_queue_limits(db: pw.Database) -> None:
    """Adds :data:`QUEUE_COLUMNS` where missing (a database made since has them: v1 makes today's tables)."""
    migrator = schema.SchemaMigrator.from_database(db)
    present = {column.name for column in db.get_columns("stage")}
    schema.migrate(*(migrator.add_column("stage", n, f) for n, f in QUEUE_COLUMNS if n not in present))


# Columns added since: (table, column name, the model's field).
JOB_INFO_COLUMNS = (
    ("workflow", "metadata", models.Workflow.metadata),
    ("stage", "oom_killed", models.Stage.oom_killed),
)


def _v5_job_info(db: pw.Database) -> None:
    """Adds :data:`JOB_INFO_COLUMNS` where they are missing (v1 makes today's tables, which have them)."""
    migrator = schema.SchemaMigrator.from_database(db)
    present = {(table, column.name) for table in ("workflow", "stage") for column in db.get_columns(table)}
    schema.migrate(
        *(migrator.add_column(t, c, field) for t, c, field in JOB_INFO_COLUMNS if (t, c) not in present)
    )


def _v6_stage_start_crashes(db: pw.Database) -> None:
    """Adds ``stage.start_crashes`` where missing (a database made since has it: v1 makes today's tables)."""
    migrator = schema.SchemaMigrator.from_database(db)
    if "start_crashes" not in {column.name for column in db.get_columns("stage")}:
        schema.migrate(migrator.add_column("stage", "start_crashes", pw.IntegerField(default=0)))


def _v7_stage_build_seconds(db: pw.Database) -> None:
    """Adds ``stage.build_seconds`` where missing (a database made since has it: v1 makes today's tables)."""
    migrator = schema.SchemaMigrator.from_database(db)
    if "build_seconds" not in {column.name for column in db.get_columns("stage")}:
        schema.migrate(migrator.add_column("stage", "build_seconds", pw.DoubleField(default=0)))


def _v8_revoked_tokens(db: pw.Database) -> None:
    """Creates the revoked Ocean auth tokens' table where missing (v1 makes today's tables)."""
    db.create_tables([models.RevokedToken])


MIGRATIONS: list[tuple[int, str, Callable[[pw.Database], None]]] = [
    (1, "initial schema", _v1_initial),
    (2, "escrow payments", _v2_payments),
    (3, "drop columns nothing read", _v3_drop_unread_columns),
    (4, "stages keep their queue limit", _v4_stage_queue_limits),
    (5, "job metadata and out-of-memory ends", _v5_job_info),
    (6, "stages count the engine crashes that cut their start off", _v6_stage_start_crashes),
    (7, "stages keep how long building their image took", _v7_stage_build_seconds),
    (8, "revoked Ocean auth tokens", _v8_revoked_tokens),
]


def current_version(db: pw.Database) -> int:
    if not db.table_exists(SchemaMigration._meta.table_name):
        return 0
    return SchemaMigration.select(pw.fn.MAX(SchemaMigration.version)).scalar() or 0


def migrate(db: pw.Database) -> int:
    """Brings the schema up to date; returns the version reached."""
    db.create_tables([SchemaMigration])
    have = current_version(db)
    latest = MIGRATIONS[-1][0]
    if have > latest:
        raise RuntimeError(
            f"the database has schema version {have}, newer than this node knows ({latest}): upgrade the node"
        )
    for version, description, apply in MIGRATIONS:
        if version <= have:
            continue
        with db.atomic():
            apply(db)
            SchemaMigration.create(version=version, applied_at=time.time())
        log.info("database migrated", version=version, change=description)
    return latest
