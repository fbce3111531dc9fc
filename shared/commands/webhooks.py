"""`unclip webhooks`: the dispatcher that sends signed webhook deliveries until stopped."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--once", action="store_true", help="send what is due now, then exit")


def run(args: argparse.Namespace) -> int:
    from shared.db.engine import make_engine, make_sessionmaker
    from shared.image_urls import signed_image_url
    from shared.settings import get_settings
    from shared.webhooks.dispatcher import Dispatcher

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = get_settings()
    engine = make_engine(settings)
    dispatcher = Dispatcher(settings, make_sessionmaker(engine),
                            image_url=lambda job_id, i: signed_image_url(settings, job_id, i))
    if args.once:
        dispatcher.run_once()
        dispatcher.close()
        engine.dispose()
        return 0
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stop)
    print("unclip webhooks: dispatching", flush=True)
    dispatcher.run_forever(stop)
    dispatcher.close()  # the attempts in flight are logged before the process exits
    engine.dispose()
    return 0
