"""Helpers for the API-key tests: keyed settings, keys made in the database, a live server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from sqlalchemy import func, select

from shared.db import api_keys as key_store
from shared.db import migrate
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.models import ApiKey, Job
from shared.settings import Settings

KEY_SECRET = "test-api-key-secret-0123456789"
ADMIN_TOKEN = "test-bootstrap-admin-token-0123"


def keyed_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Migrated settings with a real key secret and bootstrap token (SQLite unless told)."""
    values: dict[str, Any] = dict(
        data_dir=data_dir, public_base_url="http://test.example",
        api_key_secret=KEY_SECRET, admin_token=ADMIN_TOKEN,
    )  # fmt: skip
    values.update(overrides)
    settings = Settings(**values)
    migrate.upgrade(settings)
    return settings


def new_key(settings: Settings, name: str, **fields: Any) -> str:
    """Create a key in the settings' database; its secret."""
    engine = make_engine(settings)
    try:
        with make_sessionmaker(engine)() as session:
            created = key_store.create_key(
                session=session, server_secret=KEY_SECRET, name=name, **fields
            )
            session.commit()
            return created.secret
    finally:
        engine.dispose()


def key_id(settings: Settings, name: str) -> str:
    engine = make_engine(settings)
    try:
        with engine.connect() as connection:
            found = connection.execute(select(ApiKey.id).where(ApiKey.name == name))
            return str(found.scalar_one())
    finally:
        engine.dispose()


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def job_count(settings: Settings, api_key_id: str | None) -> int:
    """Jobs of one key (None: the keyless ones)."""
    engine = make_engine(settings)
    owner = Job.api_key_id.is_(None) if api_key_id is None else Job.api_key_id == api_key_id
    try:
        with engine.connect() as connection:
            query = select(func.count()).select_from(Job).where(owner)
            return int(connection.execute(query).scalar_one())
    finally:
        engine.dispose()


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run `app` under uvicorn on a free local port in a thread; its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
