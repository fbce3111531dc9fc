"""Alembic environment: runs the packaged migrations online against the configured URL."""

from __future__ import annotations

from alembic import context

import shared.db.models  # noqa: F401  (registers every table on Base.metadata)
from shared.db.base import Base
from shared.db.engine import engine_for_url

target_metadata = Base.metadata


def run_online() -> None:
    """Run migrations in one transaction per connection; SQLite alters tables in batch mode."""
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("alembic config has no sqlalchemy.url; use shared.db.migrate")
    engine = engine_for_url(url)
    try:
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                # Batch mode rebuilds a table (copy, drop, rename): with foreign keys on, the
                # drop would cascade-delete the table's children (job_images of jobs). Off for
                # the migration (only possible outside a transaction), checked before commit.
                connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
                connection.commit()
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=sqlite,
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"migration broke foreign keys: {broken[:5]}")
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported; run `unclip migrate`")
run_online()
