"""Job parameters: nullable client-omitted fields, what ran, native size.

Revision ID: 0003_job_params
Revises: 0002_moderation_ledger_immutable
Create Date: 2026-12-01
"""

from __future__ import annotations

revision = "0003_job_params"
down_revision: str | None = "0002_moderation_ledger_immutable"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
