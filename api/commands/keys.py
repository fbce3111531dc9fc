"""`unclip keys create|list|revoke`: manage API keys in the database the settings name.

`create` prints the new secret as its last line, once: the database keeps only its keyed hash.
"""

from __future__ import annotations

import argparse
import sys

from shared.job_params import MAX_DB_INT


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    if value > MAX_DB_INT:
        raise argparse.ArgumentTypeError(f"{value} must be at most {MAX_DB_INT}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="create|list|revoke")
    create = actions.add_parser("create", help="create a key and print its secret (once)")
    create.add_argument("--name", required=True, help="a unique name for the key")
    create.add_argument(
        "--rpm", type=_positive, help="create requests per minute (default: UNCLIP_KEY_DEFAULT_RPM)"
    )
    create.add_argument(
        "--max-active-jobs",
        type=_positive,
        help="queued + running jobs at once (default: UNCLIP_KEY_DEFAULT_MAX_ACTIVE_JOBS)",
    )
    create.add_argument("--admin", action="store_true", help="the key may use /v1/admin/*")
    actions.add_parser("list", help="list keys (never their secrets)")
    revoke = actions.add_parser("revoke", help="revoke a key by name")
    revoke.add_argument("name", help="the key's name")


def _state(row: object) -> str:
    if getattr(row, "revoked_at", None) is not None:
        return "revoked"
    if getattr(row, "suspended_at", None) is not None:
        return "suspended"
    return "active"


def run(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from shared.db import api_keys as key_store
    from shared.db.engine import make_engine, make_sessionmaker
    from shared.errors import UnclipError
    from shared.settings import PLACEHOLDER_SECRETS, get_settings

    settings = get_settings()
    secret = settings.api_key_secret.get_secret_value()
    engine = make_engine(settings)
    try:
        with make_sessionmaker(engine)() as session:
            if args.action == "create":
                if secret.lower() in PLACEHOLDER_SECRETS:
                    print(
                        "note: UNCLIP_API_KEY_SECRET is a placeholder; keys made now stop "
                        "working once you set a real one",
                        file=sys.stderr,
                    )
                created = key_store.create_key(
                    session=session, server_secret=secret, name=args.name, rpm=args.rpm,
                    max_active_jobs=args.max_active_jobs, is_admin=args.admin,
                )  # fmt: skip
                session.commit()
                row = created.row
                kind = "admin key" if row.is_admin else "key"
                print(f"created {kind} {row.name!r} (id {row.id}); the secret is shown once:")
                print(created.secret)
            elif args.action == "list":
                print(f"{'name':<24} {'prefix':<16} {'admin':<5} {'rpm':>5} {'active':>6}  state")
                for row in key_store.list_keys(session=session):
                    print(
                        f"{row.name:<24} {row.prefix:<16} {'yes' if row.is_admin else 'no':<5} "
                        f"{row.rpm or '-':>5} {row.max_active_jobs or '-':>6}  {_state(row)}"
                    )
            else:
                row = key_store.revoke_key(session=session, name=args.name)
                session.commit()
                print(f"revoked key {row.name!r} at {row.revoked_at}")
    except UnclipError as exc:
        print(f"unclip keys: {exc.message}", file=sys.stderr)
        return 1
    except (OperationalError, ProgrammingError) as exc:
        print(
            f"unclip keys: the database is not ready ({exc.orig}); run `unclip migrate` first",
            file=sys.stderr,
        )
        return 1
    finally:
        engine.dispose()
    return 0
