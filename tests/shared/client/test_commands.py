"""The client commands as a user runs them, against a scripted API: exit codes and messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from shared.client import commands
from tests.shared.client.fake_api import FakeApi, job

JOB_ID = "02a9ba2e-aa2c-4b7e-9d9e-0123456789ab"
CANCELLED = job("cancelled", "decoder", 2, id=JOB_ID, status_reason="cancelled_by_client")


def _run(monkeypatch: pytest.MonkeyPatch, api: FakeApi, *argv: str) -> Result:
    monkeypatch.setattr(commands, "ApiClient", lambda server, api_key: api.client())
    return CliRunner().invoke(commands.app, list(argv), catch_exceptions=False)


def _posts(api: FakeApi) -> list[httpx.Request]:
    return [r for r in api.requests if r.method == "POST"]


def _submitted(api: FakeApi, answer: dict[str, Any]) -> FakeApi:
    api.routes[("POST", "/v1/jobs")] = lambda _: httpx.Response(201, json=answer)
    return api


@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_watch_a_job_that_did_not_succeed_says_so_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, extra: list[str], tmp_path: Path
) -> None:
    done = _run(monkeypatch, FakeApi(jobs=[CANCELLED]), "watch", JOB_ID, *extra)
    assert done.exit_code == 1
    if extra:
        assert json.loads(done.stdout)["status"] == "cancelled"
    else:
        assert done.stdout.splitlines() == [f"{JOB_ID}: cancelled"]
        assert done.stderr.strip() == f"{JOB_ID}: cancelled cancelled_by_client"
    with_out = _run(monkeypatch, FakeApi(jobs=[CANCELLED]), "watch", JOB_ID, "-o", str(tmp_path))
    assert with_out.exit_code == 1


@pytest.mark.parametrize(("status", "code"), [("held", 1), ("failed", 1), ("succeeded", 0)])
def test_watch_exits_by_the_jobs_outcome(
    monkeypatch: pytest.MonkeyPatch, status: str, code: int
) -> None:
    done = _run(monkeypatch, FakeApi(jobs=[job(status, "prior", id=JOB_ID)]), "watch", JOB_ID)
    assert done.exit_code == code
    assert done.stdout.splitlines() == [f"{JOB_ID}: {status}"]


def test_submit_wait_refuses_a_bad_output_folder_before_submitting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    for bad, says in ((afile, "is a file, not a folder"), (afile / "sub", "cannot create")):
        api = _submitted(FakeApi(jobs=[job("succeeded")]), job("queued"))
        done = _run(monkeypatch, api, "submit", "a red circle", "--wait", "-o", str(bad))
        assert done.exit_code == 1 and _posts(api) == []
        assert done.stderr.count("\n") == 1 and says in done.stderr
        assert done.stderr.startswith(f"error: -o {bad}: ")


def test_a_file_that_cannot_be_saved_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    finished = job("succeeded", id=JOB_ID, images=[{"index": 0, "url": "/img/0"}])
    api = _submitted(FakeApi(jobs=[finished]), job("queued", id=JOB_ID))
    api.routes[("GET", "/img/0")] = lambda _: httpx.Response(200, content=b"png")
    (tmp_path / f"{JOB_ID}_0.png").mkdir()  # in the way of the file
    done = _run(monkeypatch, api, "submit", "a red circle", "--wait", "-o", str(tmp_path))
    assert done.exit_code == 1
    assert done.stderr.strip() == f"error: cannot save {tmp_path}/{JOB_ID}_0.png: Is a directory"


def test_submit_wait_saves_the_pngs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    finished = job("succeeded", id=JOB_ID, images=[{"index": 0, "url": "/img/0"}])
    api = _submitted(FakeApi(jobs=[finished]), job("queued", id=JOB_ID))
    api.routes[("GET", "/img/0")] = lambda _: httpx.Response(200, content=b"png")
    out_dir = tmp_path / "new" / "folder"
    done = _run(monkeypatch, api, "submit", "a red circle", "--wait", "-o", str(out_dir))
    assert done.exit_code == 0, done.stderr
    assert (out_dir / f"{JOB_ID}_0.png").read_bytes() == b"png"
    assert done.stdout.splitlines() == [f"{JOB_ID}: succeeded", f"{out_dir}/{JOB_ID}_0.png"]


def test_an_unreadable_image_is_a_local_error_not_a_network_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    api = _submitted(FakeApi(jobs=[]), job("queued"))
    missing = tmp_path / "nonexistent.png"
    done = _run(monkeypatch, api, "submit", "--image", str(missing))
    assert done.exit_code == 1 and _posts(api) == []
    assert done.stderr.strip() == f"error: cannot read {missing}: No such file or directory"


def test_jobs_piped_prints_whole_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    page = {"object": "list", "data": [job("queued", id=JOB_ID, prompt="a red circle",
                                           created_at="2026-12-04T19:26:45Z")]}  # fmt: skip
    api = FakeApi(jobs=[])
    api.routes[("GET", "/v1/jobs")] = lambda _: httpx.Response(200, json=page)
    done = _run(monkeypatch, api, "jobs")
    assert done.exit_code == 0
    assert done.stdout.splitlines()[1].split() == [JOB_ID, "queued", "generate", "2026-12-04",
                                                   "19:26:45", "a", "red", "circle"]  # fmt: skip


def test_fleet_without_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    view = {"workers": [], "queues": [{"stage": "prior", "depth": 0, "running": 0}],
            "throughput": []}  # fmt: skip
    api = FakeApi(jobs=[])
    api.routes[("GET", "/v1/fleet")] = lambda _: httpx.Response(200, json=view)
    done = _run(monkeypatch, api, "fleet")
    assert done.exit_code == 0
    assert [line.split() for line in done.stdout.splitlines() if line] == [
        ["workers:", "none"], ["queues:"], ["STAGE", "DEPTH", "RUNNING"], ["prior", "0", "0"],
        ["throughput:", "none"],
    ]  # fmt: skip
