"""A real PostgreSQL for the store's tests: a fresh database per test, dropped after.

The server is the one ``C2D_TEST_POSTGRES_URL`` names (default
``postgresql://c2d:c2d@127.0.0.1:5432/c2d_test``, which ``bash scripts/setup-dev`` creates as
root); its role must be allowed to create databases. Without one the tests skip, except under
``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

DEFAULT_URL = "postgresql://c2d:c2d@127.0.0.1:5432/c2d_test"


def server_url() -> str:
    return os.environ.get("C2D_TEST_POSTGRES_URL") or DEFAULT_URL


def _admin() -> object:
    """An autocommit connection to the server's maintenance database; skips (fails in CI) without one."""
    try:
        import psycopg2

        conn = psycopg2.connect(server_url(), connect_timeout=5)
    except Exception as exc:
        message = f"needs PostgreSQL at {server_url()} ({type(exc).__name__}: {exc}); bash scripts/setup-dev"
        if os.environ.get("CI"):
            pytest.fail(f"CI requires PostgreSQL: {message}", pytrace=False)
        pytest.skip(message)
    conn.autocommit = True
    return conn


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database, dropped after the test."""
    conn = _admin()
    name = f"c2d_t_{uuid.uuid4().hex[:12]}"
    with conn.cursor() as cursor:  # type: ignore[attr-defined]
        cursor.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(server_url())
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        from host.store import db as store_db
        from host.store import runner

        runner.close()
        store_db.release_lease()
        with conn.cursor() as cursor:  # type: ignore[attr-defined]
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()  # type: ignore[attr-defined]
