"""Two PostgreSQL roles: the owner (migrations) and the application (API, workers).

The ledger's append-only triggers bind everyone but the table's owner, who can drop or
disable them (`ALTER TABLE ... DISABLE TRIGGER`) and, as a superuser, skip them
(`SET session_replication_role = replica`). So the API and the workers connect as a role that
owns nothing: `grant_app_role` gives it read/write on the working tables and only INSERT and
SELECT on the ledger tables, and refuses a role that could get around that.
"""

from __future__ import annotations

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from shared.errors import ConfigurationError

# Append-only: moderation verdicts, reviews and enforcement actions.
LEDGER_TABLES: tuple[str, ...] = ("moderation_verdicts", "moderation_reviews", "moderation_actions")
READ_ONLY_TABLES: tuple[str, ...] = ("alembic_version",)


def role_of(url: str) -> str | None:
    """The user name in a database URL (None when it names none)."""
    return make_url(url).username


def _quote(connection: Connection, name: str) -> str:
    quoted = connection.execute(text("SELECT quote_ident(:n)"), {"n": name}).scalar_one()
    return str(quoted)


def check_app_role(connection: Connection, app_role: str) -> None:
    """Refuse an application role that owns, or could act as, the ledger's owner."""
    row = connection.execute(
        text(
            "SELECT r.rolsuper, r.rolbypassrls, pg_has_role(r.rolname, t.tableowner, 'USAGE') "
            "FROM pg_roles r, pg_tables t WHERE r.rolname = :role "
            "AND t.schemaname = current_schema() AND t.tablename = 'moderation_verdicts'"
        ),
        {"role": app_role},
    ).first()
    if row is None:
        raise ConfigurationError(
            f"the application role {app_role!r} (the user of "
            "UNCLIP_DATABASE_URL) does not exist; create it first"
        )
    superuser, bypass, owner = row
    if superuser or bypass or owner:
        raise ConfigurationError(
            f"the application role {app_role!r} is "
            f"{'a superuser' if superuser else 'RLS-exempt' if bypass else 'the ledger owner'} "
            "and could rewrite the ledger; use a plain role that owns nothing "
            "(UNCLIP_DATABASE_URL) and migrate as the owner (UNCLIP_MIGRATION_DATABASE_URL)"
        )


def grant_app_role(connection: Connection, app_role: str) -> None:
    """Grant `app_role` what the service needs, and no more, on the current schema."""
    check_app_role(connection, app_role)
    role = _quote(connection, app_role)
    tables = [
        str(t)
        for t in connection.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        ).scalars()
    ]
    connection.execute(text(f"GRANT USAGE ON SCHEMA {_quote(connection, 'public')} TO {role}"))
    for table in tables:
        name = _quote(connection, table)
        connection.execute(text(f"REVOKE ALL ON {name} FROM {role}"))
        if table in LEDGER_TABLES:
            privileges = "SELECT, INSERT"
        elif table in READ_ONLY_TABLES:
            privileges = "SELECT"
        else:
            privileges = "SELECT, INSERT, UPDATE, DELETE"
        connection.execute(text(f"GRANT {privileges} ON {name} TO {role}"))
    connection.execute(text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}"))
