"""API keys: admin flag, limits and suspension; idempotency records; rate-limit windows.

Revision ID: 0004_api_keys
Revises: 0003_job_params
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_api_keys"
down_revision: str | None = "0003_job_params"
branch_labels = None
depends_on = None

ID = sa.String(36)


def _ts(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(
            sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("rpm", sa.Integer))
        batch.add_column(sa.Column("max_active_jobs", sa.Integer))
        batch.add_column(_ts("suspended_at"))
        batch.add_column(sa.Column("suspended_reason", sa.String(512)))
        batch.create_unique_constraint("uq_api_keys_name", ["name"])
    op.create_table(
        "idempotency_records",
        sa.Column("id", ID, nullable=False),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("job_id", ID),
        _ts("created_at", nullable=False),
        _ts("expires_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_idempotency_records"),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name="fk_idempotency_records_job_id_jobs",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("scope", "key", name="uq_idempotency_records_scope_key"),
    )
    op.create_index("ix_idempotency_records_expires_at", "idempotency_records", ["expires_at"])
    op.create_table(
        "rate_limit_windows",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_rate_limit_windows"),
    )


def downgrade() -> None:
    op.drop_table("rate_limit_windows")
    op.drop_index("ix_idempotency_records_expires_at", table_name="idempotency_records")
    op.drop_table("idempotency_records")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_constraint("uq_api_keys_name", type_="unique")
        batch.drop_column("suspended_reason")
        batch.drop_column("suspended_at")
        batch.drop_column("max_active_jobs")
        batch.drop_column("rpm")
        batch.drop_column("is_admin")
