"""Databases for the storage and fault tests: a SQLite file, and PostgreSQL when one answers.

PostgreSQL: `YOUXU_TEST_PG` (default postgresql://postgres@127.0.0.1:5432/test, trust auth). Each
test gets a fresh schema (dropped afterwards) selected through the connection's search_path, so
parallel runs never see each other's tables. Tests skip with the reason when nothing answers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

PG_URL = os.environ.get("YOUXU_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_conninfo(url: str) -> str:
    u = urlsplit(url)
    parts = [f"host={u.hostname or '127.0.0.1'}", f"port={u.port or 5432}", f"dbname={u.path.lstrip('/') or 'test'}",
             f"user={u.username or 'postgres'}", "connect_timeout=3"]
    if u.password:
        parts.append(f"password={u.password}")
    return " ".join(parts)


def pg_unreachable_reason() -> str | None:
    try:
        import psycopg

        with psycopg.connect(_pg_conninfo(PG_URL)) as c:
            c.execute("select 1")
    except Exception as exc:
        return f"PostgreSQL at {PG_URL} unreachable ({type(exc).__name__}: {str(exc).strip()[:120]})"
    return None


def pg_schema_url(schema: str, port: int | None = None) -> str:
    """A SQLAlchemy URL for the test database whose tables live in `schema` (optionally via another port)."""
    u = urlsplit(PG_URL)
    user = u.username or "postgres"
    auth = f"{user}:{u.password}@" if u.password else f"{user}@"
    return (f"postgresql+psycopg://{auth}{u.hostname or '127.0.0.1'}:{port or u.port or 5432}"
            f"/{u.path.lstrip('/') or 'test'}?options=-csearch_path%3D{schema}")


class PgSchema:
    def __init__(self) -> None:
        import psycopg

        self.name = f"youxu_t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(_pg_conninfo(PG_URL), autocommit=True) as c:
            c.execute(f'create schema "{self.name}"')

    def url(self, port: int | None = None) -> str:
        return pg_schema_url(self.name, port)

    def drop(self) -> None:
        import psycopg

        with psycopg.connect(_pg_conninfo(PG_URL), autocommit=True) as c:
            c.execute(f'drop schema if exists "{self.name}" cascade')


@pytest.fixture(scope="session")
def pg_available() -> str | None:
    return pg_unreachable_reason()


@pytest.fixture
def pg_schema(pg_available: str | None) -> Iterator[PgSchema]:
    if pg_available:
        pytest.skip(pg_available)
    s = PgSchema()
    yield s
    s.drop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, pg_available: str | None) -> Iterator[str]:
    """The same test on a SQLite file and on a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'youxu.sqlite'}"
        return
    if pg_available:
        pytest.skip(pg_available)
    s = PgSchema()
    yield s.url()
    s.drop()
