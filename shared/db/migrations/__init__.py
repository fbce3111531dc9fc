"""Alembic migrations of the unclip-farm database (run through shared.db.migrate)."""
