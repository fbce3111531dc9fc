"""Fleet: worker registry and heartbeats.

Revision ID: 0006_fleet_workers
Revises: 0005_fleet_outbox
Create Date: 2026-12-01
"""

from __future__ import annotations

revision = "0006_fleet_workers"
down_revision: str | None = "0005_fleet_outbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
