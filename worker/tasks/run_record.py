"""A stage's run record for the manifest: seeds, sampling, family checksums, code, device, batch.

Written on the job row (jobs.stage_runs) in the transaction that completes the stage, so only
the attempt whose output the job keeps is on record (shared/manifest.py).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from sqlalchemy import inspect, select, update
from sqlalchemy.orm import Session

from shared.db.base import rowcount
from shared.db.claims import Claim
from shared.db.models import Job
from shared.manifest import FamilyRecord, StageRun, with_stage_run
from worker.tasks.batching import last_batch_size
from worker.unclip.batch_invariance import batch_invariant
from worker.unclip.prior_stage import mix_part_seed
from worker.unclip.render_spec import RenderSpec
from worker.unclip.seeds import derive_seed

if TYPE_CHECKING:
    from worker.unclip.family import Family

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "unclip-farm"


@functools.cache
def weight_checksums(family_dir: str) -> dict[str, str]:
    """SHA-256 of each *.safetensors of a family directory, computed once per process."""
    root = Path(family_dir)
    if not (root / "family.json").is_file():
        return {}  # the random-weight reference family: no files to name
    found = {}
    for path in sorted(root.glob("*.safetensors")):
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(functools.partial(handle.read, 1 << 20), b""):
                digest.update(block)
        found[path.name] = digest.hexdigest()
    return found


def _git(*args: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None


@functools.cache
def code_version() -> str:
    """The package version, with the git commit (and "-dirty" for local changes) when known."""
    try:
        version = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    head = _git("rev-parse", "--short=12", "HEAD")
    if head is None or head.returncode != 0 or not head.stdout.strip():
        return version
    diff = _git("diff", "--quiet", "HEAD")
    dirty = "-dirty" if diff is None or diff.returncode != 0 else ""
    return f"{version}+g{head.stdout.strip()}{dirty}"


@functools.cache
def machine_class(device: str) -> str:
    """What decides the kernels: the GPU's name, or the CPU model."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def stage_seeds(spec: RenderSpec, stage: str, candidates: int) -> tuple[list[list[int]], list[int]]:
    """(per image the generator seeds the stage drew from, a mix's per-prompt-entry seeds),
    derived as the library derives them (worker/unclip/seeds.py, prior_stage.py)."""
    if stage != "prior":
        return [[derive_seed(spec.seed, stage, i)] for i in range(spec.n)], []
    if spec.kind == "variation":
        return [[] for _ in range(spec.n)], []
    if spec.kind == "mix":
        seeds = [mix_part_seed(spec.seed, j) for j, p in enumerate(spec.mix) if p.prompt]
        per_image = [
            [derive_seed(s, stage, i, c) for s in seeds for c in range(candidates)]
            for i in range(spec.n)
        ]
        return per_image, seeds
    return [
        [derive_seed(spec.seed, stage, i, c) for c in range(candidates)] for i in range(spec.n)
    ], []


def stage_run(
    family: Family, family_dir: str, spec: RenderSpec, stage: str, claim: Claim
) -> StageRun:
    """The record of the stage this thread just ran for `spec` (right after run_in_batch)."""
    device = str(family.device)
    candidates = family.defaults.prior_candidates
    seeds, mix_seeds = stage_seeds(spec, stage, candidates)
    guidance = {"prior": spec.prior_guidance, "decoder": spec.decoder_guidance}.get(stage)
    size = last_batch_size()
    reproducible = family.reproducible if spec.reproducible is None else spec.reproducible
    return StageRun(
        stage=stage,  # type: ignore[arg-type]  # one of the three stage names
        attempt=claim.attempt,
        worker_id=claim.worker_id,
        device=family.device.type,
        machine=machine_class(device),
        dtype=str(family.dtype).removeprefix("torch."),
        batch_jobs=size.jobs,
        batch_rows=max(size.rows, spec.n),
        batch_invariant=batch_invariant(family.device, reproducible),
        reproducible=reproducible,
        steps=int(getattr(spec.steps, stage)),
        sampler=spec.sampler,
        guidance=guidance,
        seeds=seeds,
        mix_seeds=mix_seeds,
        family=FamilyRecord(name=family.name, weights=weight_checksums(family_dir)),
        code_version=code_version(),
    )


def write_stage_run(session: Session, claim: Claim, run: StageRun, job: Job | None = None) -> bool:
    """Record `run` on the job while `claim` still owns it (normally inside the completing
    transaction, which holds the row); False when the claim was lost.

    `job` is the row as this claim read it (the row a stage renders from): while the claim
    holds, only its holder writes jobs.stage_runs, so its value there is current and one
    conditional UPDATE does. Without it the column is read first.
    """
    # The attempt alone says the claim still holds: the completing UPDATE has moved the
    # status on by the time this runs in its transaction.
    owned = (Job.id == claim.job_id, Job.attempt == claim.attempt)
    if job is not None and job.id == claim.job_id and "stage_runs" not in inspect(job).unloaded:
        recorded = job.stage_runs
    else:
        raw = session.execute(select(Job.stage_runs).where(*owned)).one_or_none()
        if raw is None:
            return False
        recorded = raw[0]
    result = session.execute(
        update(Job).where(*owned).values(stage_runs=with_stage_run(recorded, run))
    )
    return rowcount(result) == 1
