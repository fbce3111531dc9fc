"""The `unclip` command: a dispatcher that imports each subcommand's module only when used.

An API host has no torch, so `unclip api` must never import the worker side; each
subcommand lives in its own module with `add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol, cast

# name -> (module, one-line help). Modules are imported by name, only for the chosen command.
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("api.commands.up", "start the embedded stack: API, a worker on all queues, the sweeper"),
    "api": ("api.commands.api", "serve the HTTP API"),
    "migrate": ("shared.commands.migrate", "apply the database migrations"),
    "keys": ("api.commands.keys", "create, list and revoke API keys"),
    "sweeper": ("shared.commands.sweeper", "re-publish jobs that lost their message or worker"),
    "worker": ("worker.commands.worker", "run a Celery render worker for the given queues"),
    "render": ("worker.commands.render", "render in this process, without the service"),
    "import-karlo": ("worker.commands.import_karlo", "turn Karlo checkpoints into a model family"),
    "train": ("worker.commands.train", "train the shapes model family, one stage or all"),
    "eval": ("worker.commands.eval", "run ShapeEval on a model family"),
    # Moderation (H-moderation): train the semantic stage's classifier head on the tuning set.
    "moderation-head": ("worker.moderation.train_head", "train the moderation classifier head"),
    "webhooks": ("shared.commands.webhooks", "send signed webhook deliveries (the dispatcher)"),
    # Client commands: HTTP to a running server (typer + rich), see shared/client/commands.py.
    "submit": ("shared.client.commands", "submit a job; --wait follows it and saves the PNGs"),
    "watch": ("shared.client.commands", "follow a job's progress to its end"),
    "jobs": ("shared.client.commands", "list your jobs"),
    "cancel": ("shared.client.commands", "cancel a job"),
    "fleet": ("shared.client.commands", "workers, queues and depth (admin key)"),
}


class CommandModule(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def _load(name: str) -> CommandModule:
    module_name = COMMANDS[name][0]
    return cast(CommandModule, importlib.import_module(module_name))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = argparse.ArgumentParser(prog="unclip", description="unclip-farm command line")
    top.add_argument("command", choices=sorted(COMMANDS), help="subcommand")
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        print("\nsubcommands:")
        for name, (_, text) in sorted(COMMANDS.items()):
            print(f"  {name:<13} {text}")
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        top.error(f"unknown command {argv[0]!r}; choose one of: {', '.join(sorted(COMMANDS))}")
    module = _load(argv[0])
    typer_entry = getattr(module, "run_typer", None)
    if typer_entry is not None:  # a typer command module parses its own options
        return cast(int, typer_entry(argv[0], argv[1:]))
    parser = argparse.ArgumentParser(prog=f"unclip {argv[0]}", description=COMMANDS[argv[0]][1])
    module.add_arguments(parser)
    return module.run(parser.parse_args(argv[1:]))


if __name__ == "__main__":
    raise SystemExit(main())
