"""Moderation round 2: the enforcement-action ledger (append-only) and appeals.

Revision ID: 0007_moderation_round2
Revises: 0006_fleet_workers
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_moderation_round2"
down_revision: str | None = "0006_fleet_workers"
branch_labels = None
depends_on = None

ID = sa.String(36)
ACTIONS = "moderation_actions"
PG_FUNCTION = "moderation_ledger_append_only"  # created by 0002


def _ts(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _append_only(table: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {event} is not allowed'); "
                "END"
            )
        return
    op.execute(
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {PG_FUNCTION}()"
    )
    op.execute(
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {PG_FUNCTION}()"
    )


def upgrade() -> None:
    op.create_table(
        ACTIONS,
        sa.Column("id", ID, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("api_key_id", ID),
        sa.Column("job_id", ID),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
        _ts("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_moderation_actions"),
        sa.ForeignKeyConstraint(
            ["api_key_id"], ["api_keys.id"], name="fk_moderation_actions_api_key_id_api_keys"
        ),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_moderation_actions_job_id_jobs"),
    )
    op.create_index("ix_moderation_actions_api_key_id", ACTIONS, ["api_key_id"])
    _append_only(ACTIONS)
    op.create_table(
        "moderation_appeals",
        sa.Column("id", ID, nullable=False),
        sa.Column("job_id", ID, nullable=False),
        sa.Column("api_key_id", ID),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _ts("created_at", nullable=False),
        _ts("decided_at"),
        sa.Column("review_id", ID),
        sa.PrimaryKeyConstraint("id", name="pk_moderation_appeals"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_moderation_appeals_job_id_jobs"),
        sa.ForeignKeyConstraint(
            ["api_key_id"], ["api_keys.id"], name="fk_moderation_appeals_api_key_id_api_keys"
        ),
        sa.ForeignKeyConstraint(
            ["review_id"],
            ["moderation_reviews.id"],
            name="fk_moderation_appeals_review_id_moderation_reviews",
        ),
        sa.UniqueConstraint("job_id", name="uq_moderation_appeals_job_id"),
    )
    op.create_index("ix_moderation_appeals_status", "moderation_appeals", ["status"])


def downgrade() -> None:
    op.drop_index("ix_moderation_appeals_status", table_name="moderation_appeals")
    op.drop_table("moderation_appeals")
    op.drop_index("ix_moderation_actions_api_key_id", table_name=ACTIONS)
    op.drop_table(ACTIONS)  # dropping the table drops its triggers
