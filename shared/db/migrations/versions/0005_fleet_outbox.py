"""Fleet: stage outbox for the hand-off, attempt bookkeeping.

Revision ID: 0005_fleet_outbox
Revises: 0004_api_keys
Create Date: 2026-12-01
"""

from __future__ import annotations

revision = "0005_fleet_outbox"
down_revision: str | None = "0004_api_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
