"""Moderation round 2: enforcement, suspensions, appeals.

Revision ID: 0007_moderation_round2
Revises: 0006_fleet_workers
Create Date: 2026-12-01
"""

from __future__ import annotations

revision = "0007_moderation_round2"
down_revision: str | None = "0006_fleet_workers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
