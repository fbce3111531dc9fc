"""Make the moderation ledger append-only: triggers refuse UPDATE and DELETE of its rows.

Revision ID: 0002_moderation_ledger_immutable
Revises: 0001_initial
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0002_moderation_ledger_immutable"
down_revision: str | None = "0001_initial"
branch_labels = None
depends_on = None

TABLES = ("moderation_verdicts", "moderation_reviews")
EVENTS = ("UPDATE", "DELETE")
PG_FUNCTION = "moderation_ledger_append_only"


def _sqlite_upgrade() -> None:
    for table in TABLES:
        for event in EVENTS:
            op.execute(
                f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {event} is not allowed'); "
                "END"
            )


def _postgres_upgrade() -> None:
    op.execute(
        f"CREATE OR REPLACE FUNCTION {PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP "
        "USING ERRCODE = 'insufficient_privilege'; END $$"
    )
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {PG_FUNCTION}()"
        )
        # TRUNCATE bypasses row triggers; refuse it with a statement trigger.
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {PG_FUNCTION}()"
        )


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _sqlite_upgrade()
    elif dialect == "postgresql":
        _postgres_upgrade()
    else:
        raise NotImplementedError(
            f"append-only triggers exist for sqlite and postgresql, not {dialect!r}"
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in TABLES:
        if dialect == "sqlite":
            for event in EVENTS:
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{event.lower()}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    if dialect == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS {PG_FUNCTION}()")
