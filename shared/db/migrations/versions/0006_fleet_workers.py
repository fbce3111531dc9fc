"""Fleet: worker registry and heartbeats; stage attempts indexed by finish time.

Revision ID: 0006_fleet_workers
Revises: 0005_fleet_outbox
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_fleet_workers"
down_revision: str | None = "0005_fleet_outbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("node", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("queues", sa.JSON(), nullable=False),
        sa.Column("device", sa.String(32), nullable=False),
        sa.Column("dtype", sa.String(16), nullable=False),
        sa.Column("family", sa.String(1024), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("current_job_id", sa.String(36), nullable=True),
        sa.Column("current_stage", sa.String(16), nullable=True),
        sa.Column("current_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("jobs_done", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_workers"),
    )
    op.create_index("ix_workers_heartbeat_at", "workers", ["heartbeat_at"])
    op.create_index("ix_stage_attempts_finished_at", "stage_attempts", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_stage_attempts_finished_at", table_name="stage_attempts")
    op.drop_index("ix_workers_heartbeat_at", table_name="workers")
    op.drop_table("workers")
