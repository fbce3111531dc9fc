"""`unclip up [--host H] [--port P]`: migrate, then the API, a worker, the sweeper and the
webhook dispatcher."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from types import FrameType

from api.commands.api import DEFAULT_HOST, DEFAULT_PORT, served_base_url

# Past the worker's drain timeout (UNCLIP_DRAIN_TIMEOUT_S), children left are killed.
STOP_MARGIN_S = 30.0
POLL_S = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"API bind address ({DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="API port (default 8000)")


def _unclip(*argv: str) -> list[str]:
    return [sys.executable, "-m", "shared.cli", *argv]


def stop_timeout_s() -> float:
    """How long children get after SIGTERM: the worker's drain timeout and a margin."""
    from shared.settings import get_settings

    return get_settings().drain_timeout_s + STOP_MARGIN_S


def stop_children(children: list[subprocess.Popen[bytes]]) -> int:
    """SIGTERM every live child, wait for them, SIGKILL what is left; the worst exit status."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + stop_timeout_s()
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    codes = [c.returncode for c in children]
    # A child stopped by our own SIGTERM is a clean stop.
    return max((0 if rc in (0, -signal.SIGTERM) else 1) for rc in codes)


class _Stop(Exception):
    """Raised by the signal handler to leave the supervision loop."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise SystemExit(f"--port {args.port} is out of range; use 1-65535")
    from shared.settings import get_settings

    if get_settings().public_base_url is None:
        # Every child signs image URLs against the API served here: the webhook dispatcher's
        # payloads too, not only the API's own answers.
        os.environ["UNCLIP_PUBLIC_BASE_URL"] = served_base_url(args.host, args.port)
    migrate = subprocess.run(_unclip("migrate"), check=False)
    if migrate.returncode != 0:
        print(f"unclip up: migrations failed (exit {migrate.returncode})", file=sys.stderr)
        return migrate.returncode
    children: list[subprocess.Popen[bytes]] = []
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        children.append(subprocess.Popen(_unclip("worker", "--queues", "prior,decoder,upsampler")))
        # Re-publishes jobs whose message or worker was lost (shared/sweeper.py).
        children.append(subprocess.Popen(_unclip("sweeper")))
        # Sends signed webhook deliveries from their outbox (shared/webhooks/dispatcher.py).
        children.append(subprocess.Popen(_unclip("webhooks")))
        children.append(
            subprocess.Popen(_unclip("api", "--host", args.host, "--port", str(args.port)))
        )
        print(
            f"unclip up: API on http://{args.host}:{args.port}, worker on all queues, sweeper, "
            "webhook dispatcher; "
            "Ctrl-C stops them",
            flush=True,
        )
        while all(c.poll() is None for c in children):
            time.sleep(POLL_S)
        dead = next(c for c in children if c.poll() is not None)
        print(
            f"unclip up: {dead.args!r} exited with {dead.returncode}; stopping the rest",
            file=sys.stderr,
        )
        stop_children(children)
        return 1
    except _Stop as stop:
        print(f"unclip up: {stop}, stopping the API, the worker, the sweeper and the dispatcher",
              flush=True)  # fmt: skip
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)
        return stop_children(children)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
