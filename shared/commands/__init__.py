"""Subcommands of the `unclip` command line."""
