"""`unclip api [--host H] [--port P]`: serve the HTTP API with uvicorn."""

from __future__ import annotations

import argparse

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# After SIGTERM, requests still open get this long (event streams and sync waits end at once,
# api/shutdown.py); under compose's default 10 s stop grace period.
GRACEFUL_SHUTDOWN_S = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"bind address ({DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (default 8000)")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn log level",
    )


def served_base_url(host: str, port: int) -> str:
    """The base of the URLs this machine's clients reach an API bound to host:port at (for
    development, where UNCLIP_PUBLIC_BASE_URL is unset): a wildcard bind answers on loopback."""
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}"


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from api.shutdown import register_stopping
    from shared.settings import get_settings

    if not 0 < args.port < 65536:
        raise SystemExit(f"--port {args.port} is out of range; use 1-65535")
    settings = get_settings()
    if settings.public_base_url is None:  # development only: production requires it
        # Image URLs point at the address served here, not at whatever Host a request names.
        settings = settings.model_copy(
            update={"public_base_url": served_base_url(args.host, args.port)}
        )
    app = create_app(settings)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)  # fmt: skip
    server = uvicorn.Server(config)
    register_stopping(app, lambda: server.should_exit)  # event streams end on SIGTERM
    server.run()
    return 0
