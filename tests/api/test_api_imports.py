"""The API side imports neither torch nor the worker package (an API host has no torch)."""

from __future__ import annotations

import subprocess
import sys


def test_api_and_shared_import_without_torch_or_worker() -> None:
    code = (
        "import sys\n"
        "from api.app import create_app\n"
        "import shared.db.jobs, shared.db.migrate, shared.queue.dispatch, shared.storage.factory\n"
        "import shared.storage.s3, shared.commands.migrate\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'worker'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == ""
