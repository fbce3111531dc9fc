"""`unclip worker --queues prior,decoder,upsampler [--concurrency N]`: a Celery worker."""

from __future__ import annotations

import argparse
import socket

STAGE_QUEUES = ("prior", "decoder", "upsampler")


def parse_queues(text: str) -> list[str]:
    """Split and check a comma-separated queue list."""
    queues = [q.strip() for q in text.split(",") if q.strip()]
    unknown = [q for q in queues if q not in STAGE_QUEUES]
    if not queues or unknown:
        raise argparse.ArgumentTypeError(
            f"queues {text!r} must be a comma-separated subset of {','.join(STAGE_QUEUES)}"
        )
    return list(dict.fromkeys(queues))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--queues",
        type=parse_queues,
        default=list(STAGE_QUEUES),
        help="comma-separated stage queues to serve (default: all of prior,decoder,upsampler)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="pool processes (default: UNCLIP_PIPELINE, 1 unless set; with UNCLIP_PIPELINE "
        "above 1 they take turns on the device)",
    )
    parser.add_argument("--name", default=None, help="worker node name (default: queues@host)")
    parser.add_argument(
        "--pool", default="prefork", choices=["prefork", "solo", "threads"], help="Celery pool"
    )
    parser.add_argument("--loglevel", default="INFO", help="Celery log level (default INFO)")


def celery_argv(args: argparse.Namespace) -> list[str]:
    """The `celery worker` argument list these options stand for."""
    concurrency = args.concurrency
    if concurrency is None:
        from shared.settings import get_settings

        concurrency = get_settings().pipeline
    if concurrency < 1:
        raise SystemExit(f"--concurrency {concurrency} must be 1 or more")
    name = args.name or f"{'-'.join(args.queues)}@{socket.gethostname()}"
    return [
        "worker",
        f"--queues={','.join(args.queues)}",
        f"--concurrency={concurrency}",
        f"--pool={args.pool}",
        f"--loglevel={args.loglevel}",
        f"--hostname={name}",
        "--without-gossip",
        "--without-mingle",
    ]


def run(args: argparse.Namespace) -> int:
    """Run the worker until it has shut down, then leave at once (worker/tasks/lifecycle.py:
    a drained worker exits within its drain timeout, not after the interpreter's teardown)."""
    from worker.tasks.app import get_app
    from worker.tasks.lifecycle import exit_now

    try:
        # What worker_main does, keeping the worker's exit code (worker_main drops it).
        returned = get_app().start(argv=celery_argv(args))
    except SystemExit as stop:
        returned = stop.code
    code = returned if isinstance(returned, int) else (0 if returned is None else 1)
    exit_now(code)
    return code  # not reached: exit_now ends the process
