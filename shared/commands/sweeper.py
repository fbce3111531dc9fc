"""`unclip sweeper [--once]`: re-publish jobs that lost their message or their worker."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--once", action="store_true", help="one pass, then exit")


def run(args: argparse.Namespace) -> int:
    from shared.settings import get_settings
    from shared.sweeper import make_sweeper

    try:
        from shared.logging import configure_logging
    except ImportError:  # structured logs are optional here
        logging.basicConfig(level=logging.INFO)
    else:
        configure_logging()
    sweeper = make_sweeper(get_settings())
    if args.once:
        print(f"unclip sweeper: {sweeper.sweep_once()}")
        return 0
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)
    # Not "ready.": `unclip up`'s log is watched for the worker's " ready." line.
    print(f"unclip sweeper: sweeping every {sweeper.settings.sweeper.interval_s:g} s", flush=True)
    sweeper.run_forever(stop)
    return 0
