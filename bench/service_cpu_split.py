"""CPU seconds per image of each process of one service stack, round by round.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.service_cpu_split distributed 8 [--jobs 16]
        [--rounds 3]

Starts the service as bench/bench_service.py does (`stack`: distributed = `unclip worker` +
`unclip api` on a private PostgreSQL database and Redis db; embedded = `unclip up`), runs one
untimed round of the same kind of jobs, then `--rounds` timed rounds of `--jobs` jobs, and
prints per round: images/s, CPU s per image of each process (named by its `unclip` command;
a pool child as `worker@PID`), and the mean batch size per stage. Environment variables pass
through to the service (e.g. UNCLIP_FROZEN_GRAPHS=false). While it runs, a profiler can be
attached to the printed worker pid, e.g. `py-spy record --idle --subprocesses -r 50 -f raw`.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from contextlib import suppress
from pathlib import Path

from bench.bench_service import batch_sizes, job_body, run_jobs, stack
from worker.unclip.reference_family import save_reference_family
from worker.unclip.render_spec import StageSteps

Snapshot = dict[int, tuple[int, float]]  # pid -> (parent pid, CPU seconds so far)


def snapshot() -> Snapshot:
    out: Snapshot = {}
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
            out[int(stat.parent.name)] = (int(fields[1]), cpu)
    return out


def below(roots: list[int], snap: Snapshot) -> dict[int, int]:
    """Every process under `roots` (themselves included) -> its root."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in snap.items():
        children.setdefault(parent, []).append(pid)
    found: dict[int, int] = {}
    for root in roots:
        todo = [root]
        while todo:
            pid = todo.pop()
            found[pid] = root
            todo += children.get(pid, [])
    return found


def command_of(pid: int) -> str:
    """The `unclip` subcommand a process runs ("?" when unknown or gone)."""
    with suppress(OSError):
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"shared.cli" in argv and argv.index(b"shared.cli") + 1 < len(argv):
            return argv[argv.index(b"shared.cli") + 1].decode()
    return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["embedded", "distributed"])
    parser.add_argument("batch", type=int, help="UNCLIP_BATCH__MAX")
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=StageSteps.parse, default=StageSteps(10, 10, 4))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-family-") as family:
        save_reference_family(Path(family))
        with stack(args.mode, Path(family), args.batch) as service:
            print(json.dumps({"service_pids": service.pids}), flush=True)
            run_jobs(service, [job_body(30_000 + i, args.steps) for i in range(args.jobs)])
            for r in range(args.rounds):
                before = snapshot()
                known = below(service.pids, before)
                wall = run_jobs(service, [job_body(1000 * r + i, args.steps)
                                          for i in range(args.jobs)])  # fmt: skip
                after = snapshot()
                per_image: dict[str, float] = {}
                for pid, root in below(service.pids, after).items():
                    used = after[pid][1] - (before[pid][1] if pid in known else 0.0)
                    name = command_of(pid) + ("" if pid == root else f"@{pid}")
                    per_image[name] = round(per_image.get(name, 0.0) + used / args.jobs, 4)
                print(json.dumps({
                    "round": r, "mode": args.mode, "batch_max": args.batch,
                    "images_per_s": round(args.jobs / wall, 3), "cpu_s_per_image": per_image,
                    "total_cpu_s_per_image": round(sum(per_image.values()), 3),
                    "mean_batch_jobs": batch_sizes(service, args.jobs),
                    "load_average": round(os.getloadavg()[0], 2),
                }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
