"""Real `unclip` processes for drills: start, watch the log, find pool children, kill, stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 180.0


class ProcessFailed(RuntimeError):
    """A drill process exited early or never became ready."""


def children(pid: int) -> list[int]:
    """The direct children of `pid` (Linux /proc), e.g. a Celery worker's pool processes."""
    found: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    try:
        for task in task_dir.iterdir():
            text = (task / "children").read_text()
            found.extend(int(p) for p in text.split())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return sorted(set(found))


def alive(pid: int) -> bool:
    """True while `pid` exists and is no zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


class ManagedProcess:
    """`python -m shared.cli <argv>` in its own session, output to `log_path`."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", *self.argv],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was never started"
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, marker: str, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait until `marker` appears in the log; ProcessFailed if it exits or times out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if marker in self.log_text():
                return
            if not self.running():
                raise ProcessFailed(
                    f"{self.name} exited ({self.returncode()}) before {marker!r}:"
                    f"\n{self.log_text()[-3000:]}"
                )
            time.sleep(0.2)
        raise ProcessFailed(f"no {marker!r} in {self.log_path} after {timeout_s:.0f} s")

    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def pool_children(self) -> list[int]:
        return children(self.pid) if self.running() else []

    def send(self, sig: signal.Signals) -> None:
        """Send `sig` to the main process only (its pool children are left to react)."""
        if self.running():
            os.kill(self.pid, sig)

    def kill_group(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send `sig` to the whole process group: main process and every pool child."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)
        if sig == signal.SIGKILL:
            self.process.wait()

    def wait_exit(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the main process to exit; True if it did."""
        if self.process is None:
            return True
        try:
            self.process.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM, then SIGKILL for the whole group (orphaned pool children too)."""
        if self.process is None:
            return
        if self.running():
            self.process.send_signal(signal.SIGTERM)
            self.wait_exit(timeout_s)
        self.kill_group(signal.SIGKILL)
