"""`unclip migrate [--revision REV] [--downgrade]`: bring the database schema to a revision."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--revision",
        default=None,
        help="target revision (default: head when upgrading, base when downgrading)",
    )
    parser.add_argument("--downgrade", action="store_true", help="migrate down instead of up")


def run(args: argparse.Namespace) -> int:
    from shared.db import migrate
    from shared.settings import get_settings

    settings = get_settings()
    before = migrate.current_revision(settings)
    if args.downgrade:
        migrate.downgrade(settings, args.revision or "base")
    else:
        migrate.upgrade(settings, args.revision or "head")
    after = migrate.current_revision(settings)
    print(f"unclip migrate: {settings.database_url.split('@')[-1]}: {before} -> {after}")
    return 0
