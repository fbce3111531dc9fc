"""Fleet: stage outbox for the hand-off, attempt bookkeeping.

Revision ID: 0005_fleet_outbox
Revises: 0004_api_keys
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_fleet_outbox"
down_revision: str | None = "0004_api_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stage_outbox",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("publish_attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_stage_outbox_job_id_jobs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_stage_outbox"),
    )
    op.create_index("ix_stage_outbox_job_id", "stage_outbox", ["job_id"])
    op.create_index("ix_stage_outbox_pending", "stage_outbox", ["published_at", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_stage_outbox_pending", table_name="stage_outbox")
    op.drop_index("ix_stage_outbox_job_id", table_name="stage_outbox")
    op.drop_table("stage_outbox")
