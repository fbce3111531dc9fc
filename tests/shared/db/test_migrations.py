"""Migrations: up, down and up again on SQLite and PostgreSQL; the schema matches the models."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

import shared.db.models  # noqa: F401
from shared.db import migrate
from shared.db.base import Base
from shared.db.engine import make_engine
from shared.settings import Settings

TABLES = {
    "jobs", "job_images", "stage_attempts", "moderation_verdicts", "moderation_reviews",
    "api_keys",
}  # fmt: skip


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[Settings]:
    """A PostgreSQL database created for this test alone and dropped after it."""
    psycopg = pytest.importorskip("psycopg")
    name = f"unclip_mig_{uuid.uuid4().hex[:12]}"
    admin = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL on 127.0.0.1:5432 is not reachable ({exc}); `make test` starts it"
        if os.environ.get("UNCLIP_TEST_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield Settings(
            data_dir=tmp_path, database_url=f"postgresql+psycopg://postgres@127.0.0.1/{name}"
        )
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _tables(settings: Settings) -> set[str]:
    engine = make_engine(settings)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _schema_drift(settings: Settings) -> list[object]:
    engine = make_engine(settings)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def _round_trip(settings: Settings) -> None:
    assert migrate.current_revision(settings) is None
    migrate.upgrade(settings)
    assert migrate.current_revision(settings) == migrate.head_revision()
    assert _tables(settings) >= TABLES
    assert _schema_drift(settings) == []
    migrate.downgrade(settings)
    assert migrate.current_revision(settings) is None
    assert _tables(settings) & TABLES == set()
    migrate.upgrade(settings)
    assert _tables(settings) >= TABLES


def test_sqlite_round_trip(tmp_path: Path) -> None:
    _round_trip(Settings(data_dir=tmp_path / "nested" / "dir"))


@pytest.mark.integration
def test_postgres_round_trip(own_postgres: Settings) -> None:
    _round_trip(own_postgres)


def test_initial_revision_id_is_stable() -> None:
    # The moderation migration names this as its down_revision.
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    assert script.get_revision("0001_initial") is not None
