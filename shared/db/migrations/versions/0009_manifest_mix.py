"""Reproducibility manifest and replay, embedding-level inputs (variation by id, mix).

Revision ID: 0009_manifest_mix
Revises: 0008_events_webhooks
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_manifest_mix"
down_revision: str | None = "0008_events_webhooks"
branch_labels = None
depends_on = None

COLUMNS = (
    ("input_embedding_id", sa.String(64)),
    ("input_embedding_key", sa.String(512)),
    ("mix", sa.JSON(none_as_null=True)),
    ("stage_runs", sa.JSON(none_as_null=True)),
    ("replay_of", sa.String(36)),
    ("replay_expect", sa.JSON(none_as_null=True)),
)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for name, type_ in COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
