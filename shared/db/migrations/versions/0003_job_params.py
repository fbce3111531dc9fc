"""Job parameters: NULL for what the client left out, the native size, and what ran.

The seven family-filled columns (shared.job_params.FAMILY_FILLED_COLUMNS) become nullable;
`native_size` (the family's output size as the API read it) and `params_used` (JSON, what the
worker ran) are added.

Revision ID: 0003_job_params
Revises: 0002_moderation_ledger_immutable
Create Date: 2026-12-01
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003_job_params"
down_revision: str | None = "0002_moderation_ledger_immutable"
branch_labels = None
depends_on = None

# Written out rather than imported: a migration must keep meaning what it meant.
NULLABLE: dict[str, sa.types.TypeEngine[Any]] = {
    "size": sa.String(16),
    "sampler": sa.String(16),
    "steps_prior": sa.Integer(),
    "steps_decoder": sa.Integer(),
    "steps_upsampler": sa.Integer(),
    "prior_guidance": sa.Float(),
    "decoder_guidance": sa.Float(),
}
# What a row that ran before this revision would have been filled with (pre-0003 defaults).
DOWNGRADE_FILL = {
    "size": "'256x256'",
    "sampler": "'ddim'",
    "steps_prior": "10",
    "steps_decoder": "10",
    "steps_upsampler": "4",
    "prior_guidance": "4.0",
    "decoder_guidance": "8.0",
}


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for name, kind in NULLABLE.items():
            batch.alter_column(name, existing_type=kind, nullable=True)
        batch.add_column(sa.Column("native_size", sa.String(16)))
        batch.add_column(sa.Column("params_used", sa.JSON))


def downgrade() -> None:
    for name, value in DOWNGRADE_FILL.items():
        op.execute(f"UPDATE jobs SET {name} = {value} WHERE {name} IS NULL")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("params_used")
        batch.drop_column("native_size")
        for name, kind in NULLABLE.items():
            batch.alter_column(name, existing_type=kind, nullable=False)
