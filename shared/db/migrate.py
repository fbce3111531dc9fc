"""Apply or roll back the Alembic migrations, with the Alembic config built in code (any cwd)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from shared.db.engine import engine_for_url
from shared.db.ledger_roles import grant_app_role, role_of
from shared.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """An Alembic Config pointing at the packaged migrations and `database_url`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # '%' is interpolation syntax in Alembic's ini layer; URLs may hold it in passwords.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def owner_url(settings: Settings) -> str:
    """The URL migrations run as: the owner's (migration_database_url) when set."""
    return settings.migration_database_url or settings.database_url


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Migrate up to `revision` (default: the newest) as the owner, then grant the app role.

    With migration_database_url set on PostgreSQL, the role of database_url gets only INSERT
    and SELECT on the ledger (shared/db/ledger_roles.py).
    """
    url = owner_url(settings)
    command.upgrade(alembic_config(url), revision)
    app_role = role_of(settings.database_url)
    if (
        settings.migration_database_url
        and url.startswith("postgresql")
        and app_role
        and app_role != role_of(url)
    ):
        engine = engine_for_url(url)
        try:
            with engine.begin() as connection:
                grant_app_role(connection, app_role)
        finally:
            engine.dispose()


def downgrade(settings: Settings, revision: str = "base") -> None:
    """Migrate down to `revision` (default: an empty database) as the owner."""
    command.downgrade(alembic_config(owner_url(settings)), revision)


def current_revision(settings: Settings) -> str | None:
    """The revision the database is at, or None before the first migration."""
    engine = engine_for_url(settings.database_url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str | None:
    """The newest revision the packaged migrations define."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
