"""Two roles on PostgreSQL: migrations run as the owner; the app role cannot rewrite the ledger.

A private owner role, app role and database (unique names, dropped after) on the local server:
`migrate.upgrade` with UNCLIP_MIGRATION_DATABASE_URL as the owner, then the app role may read
and append to the ledger but not UPDATE, DELETE or TRUNCATE it, nor switch its triggers off
with `SET session_replication_role = replica` or `ALTER TABLE ... DISABLE TRIGGER`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from shared.db import migrate
from shared.db.engine import engine_for_url, make_sessionmaker
from shared.db.ledger_roles import LEDGER_TABLES
from shared.db.models import Job
from shared.errors import ConfigurationError
from shared.moderation.lexical import LexicalChecker
from shared.moderation.policy import load_policy
from shared.settings import Settings
from tests.conftest import PG_HOST, PG_PORT, PG_USER

ROOT = Path(__file__).resolve().parents[3]
ADMIN_DSN = f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname=postgres connect_timeout=3"


def _url(role: str, database: str) -> str:
    return f"postgresql+psycopg://{role}@{PG_HOST}:{PG_PORT}/{database}"


@pytest.fixture
def roles(postgres_url: str) -> Iterator[tuple[str, str]]:
    """(owner URL, app URL) on a fresh database the owner role owns."""
    import psycopg

    suffix = uuid.uuid4().hex[:10]
    owner, app, database = f"ut_owner_{suffix}", f"ut_app_{suffix}", f"ut_roles_{suffix}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{owner}" LOGIN NOSUPERUSER')
        conn.execute(f'CREATE ROLE "{app}" LOGIN NOSUPERUSER')
        conn.execute(f'CREATE DATABASE "{database}" OWNER "{owner}"')
    try:
        yield _url(owner, database), _url(app, database)
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{app}"')
            conn.execute(f'DROP ROLE IF EXISTS "{owner}"')


def _refused(url: str, statement: str, params: dict[str, str] | None = None) -> str:
    engine = engine_for_url(url)
    try:
        with pytest.raises(DBAPIError) as caught, engine.begin() as conn:
            conn.execute(text(statement), params or {})
        return str(caught.value.orig)
    finally:
        engine.dispose()


def test_app_role_appends_and_reads_but_cannot_rewrite_the_ledger(
    roles: tuple[str, str], tmp_path: Path
) -> None:
    owner_url, app_url = roles
    settings = Settings(data_dir=tmp_path, database_url=app_url, migration_database_url=owner_url)
    migrate.upgrade(settings)
    assert migrate.current_revision(settings) == migrate.head_revision()

    verdict = LexicalChecker(load_policy(ROOT / "policies" / "default.yaml")).check("gore")
    engine = engine_for_url(app_url)
    try:
        from shared.db import verdicts as ledger

        with make_sessionmaker(engine).begin() as session:  # the app's everyday work
            job = Job(
                kind="generate",
                prompt="gore",
                n=1,
                size="64x64",
                seed=1,
                sampler="ddim",
                steps_prior=1,
                steps_decoder=1,
                steps_upsampler=1,
                prior_guidance=1.0,
                decoder_guidance=1.0,
                status="queued",
                attempt=0,
            )
            session.add(job)
            session.flush()
            row = ledger.record_verdict(session=session, job_id=job.id, verdict=verdict)
            job.status = "rejected"  # working tables stay writable
            job_id, verdict_id = job.id, row.id
        with engine.connect() as conn:
            count = conn.execute(
                text("SELECT count(*) FROM moderation_verdicts WHERE job_id = :j"), {"j": job_id}
            ).scalar_one()
        assert count == 1
    finally:
        engine.dispose()

    params = {"v": verdict_id}
    for statement in (
        "UPDATE moderation_verdicts SET decision = 'allow' WHERE id = :v",
        "DELETE FROM moderation_verdicts WHERE id = :v",
        "TRUNCATE moderation_verdicts CASCADE",
    ):
        assert "permission denied" in _refused(app_url, statement, params)
    assert "permission denied" in _refused(app_url, "SET session_replication_role = replica")
    for table in LEDGER_TABLES:
        message = _refused(app_url, f"ALTER TABLE {table} DISABLE TRIGGER ALL")
        assert "must be owner" in message
    # The owner, by contrast, is still bound by the triggers for plain UPDATEs.
    assert "append-only" in _refused(
        owner_url, "UPDATE moderation_verdicts SET decision = 'allow' WHERE id = :v", params
    )


def test_migrate_refuses_an_app_role_that_owns_the_ledger(
    roles: tuple[str, str], tmp_path: Path
) -> None:
    owner_url, _ = roles
    other_owner = owner_url.replace("ut_owner_", "ut_app_")
    import psycopg

    app_role = other_owner.split("//")[1].split("@")[0]
    owner_role = owner_url.split("//")[1].split("@")[0]
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'GRANT "{owner_role}" TO "{app_role}"')  # the app may act as the owner
    settings = Settings(
        data_dir=tmp_path, database_url=other_owner, migration_database_url=owner_url
    )
    with pytest.raises(ConfigurationError, match="could rewrite the ledger"):
        migrate.upgrade(settings)
