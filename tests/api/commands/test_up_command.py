"""`unclip up` stops its children on SIGTERM and reports a clean stop as 0."""

from __future__ import annotations

import subprocess
import sys

from api.commands.up import stop_children


def _child(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code])


def test_stop_terminates_children_cleanly() -> None:
    children = [_child("import time; time.sleep(60)") for _ in range(2)]
    assert stop_children(children) == 0
    assert all(c.returncode is not None for c in children)


def test_a_child_that_failed_makes_the_stop_unclean() -> None:
    failed = _child("raise SystemExit(3)")
    failed.wait()
    assert stop_children([failed, _child("import time; time.sleep(60)")]) == 1


def test_children_get_the_served_base_url_when_none_is_set(monkeypatch) -> None:
    """The webhook dispatcher and the worker sign image URLs too: under `up --port P` they
    must name port P, not the development default."""
    import argparse

    from api.commands import up
    from shared.settings import get_settings

    # Set, then removed: monkeypatch then restores the variable's absence after up.run set it.
    monkeypatch.setenv("UNCLIP_PUBLIC_BASE_URL", "http://placeholder")
    monkeypatch.delenv("UNCLIP_PUBLIC_BASE_URL")
    get_settings.cache_clear()
    seen: dict[str, str | None] = {}

    def fake_run(argv: list[str], check: bool) -> subprocess.CompletedProcess[bytes]:
        import os

        seen["url"] = os.environ.get("UNCLIP_PUBLIC_BASE_URL")
        return subprocess.CompletedProcess(argv, 1)  # migrations "fail": nothing is started

    monkeypatch.setattr(up.subprocess, "run", fake_run)
    try:
        assert up.run(argparse.Namespace(host="0.0.0.0", port=8123)) == 1
    finally:
        get_settings.cache_clear()
    assert seen["url"] == "http://127.0.0.1:8123"


def test_a_configured_base_url_is_left_alone(monkeypatch) -> None:
    import argparse
    import os

    from api.commands import up
    from shared.settings import get_settings

    monkeypatch.setenv("UNCLIP_PUBLIC_BASE_URL", "https://images.example.com")
    get_settings.cache_clear()
    monkeypatch.setattr(
        up.subprocess, "run", lambda argv, check: subprocess.CompletedProcess(argv, 1)
    )
    try:
        up.run(argparse.Namespace(host="127.0.0.1", port=8123))
    finally:
        get_settings.cache_clear()
    assert os.environ["UNCLIP_PUBLIC_BASE_URL"] == "https://images.example.com"
