"""API keys: scopes and limits, idempotency records.

Revision ID: 0004_api_keys
Revises: 0003_job_params
Create Date: 2026-12-01
"""

from __future__ import annotations

revision = "0004_api_keys"
down_revision: str | None = "0003_job_params"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
