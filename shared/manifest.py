"""What a job ran with, stage by stage (the reproducibility manifest), and whether a replay of
it can give the same bytes.

Each stage task records one `StageRun` on the job row (jobs.stage_runs, keyed by stage) in
the transaction that completes the stage, so only the attempt that produced the kept output
is on record. GET /v1/jobs/{id}/manifest reads them; POST /v1/jobs/{id}/replay copies the
original's `ReplayExpectation` onto the new job, which then says whether it could hold.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from shared.job_params import STAGES, StageName


class FamilyRecord(BaseModel):
    """The model family a stage ran: its name and the SHA-256 of each *.safetensors file
    (empty for the random-weight reference family, which has no files)."""

    name: str
    weights: dict[str, str] = Field(default_factory=dict)


class StageRun(BaseModel):
    """What one stage of a job ran with, as the worker that ran it recorded."""

    stage: StageName
    attempt: int
    worker_id: str
    device: str  # the torch device type: "cpu", "cuda", ...
    machine: str  # the machine class: the CPU model or the GPU's name
    dtype: str  # "float32", "float16", "bfloat16"
    batch_jobs: int = Field(ge=1, description="jobs in the library call this stage ran in")
    batch_rows: int = Field(ge=1, description="images in that call, this job's included")
    batch_invariant: bool = Field(description="a row's numbers do not depend on its batch")
    # The mode that ran (settings.reproducible, or the render's own option): batch-invariant
    # kernels (True) or full speed (False). Records from before the mode existed read False.
    reproducible: bool = Field(default=False, description="ran in reproducible mode")
    steps: int
    sampler: str
    guidance: float | None  # the upsampler has none
    # Per image, the seeds of the generators the stage drew from (the prior: one per
    # candidate; none where the stage samples nothing, such as a variation's prior).
    seeds: list[list[int]]
    # A mix's prior: per prompt entry, the seed its images were sampled from (else empty).
    mix_seeds: list[int] = Field(default_factory=list)
    family: FamilyRecord
    code_version: str


def stage_runs(raw: dict[str, Any] | None) -> dict[str, StageRun]:
    """The row's jobs.stage_runs, typed, in stage order."""
    found = raw or {}
    return {stage: StageRun.model_validate(found[stage]) for stage in STAGES if stage in found}


def with_stage_run(raw: dict[str, Any] | None, run: StageRun) -> dict[str, Any]:
    """jobs.stage_runs with `run` recorded for its stage (a later attempt replaces an earlier)."""
    return {**(raw or {}), run.stage: run.model_dump(mode="json")}


class StageExpectation(BaseModel):
    """What the original's stage ran on: a replay must run on the same to match its bytes."""

    device: str
    machine: str
    dtype: str
    batch_jobs: int
    batch_invariant: bool
    code_version: str
    weights: dict[str, str]


def replay_expectation(runs: dict[str, StageRun]) -> dict[str, Any]:
    """The original's per-stage expectation, as the replay row keeps it (jobs.replay_expect)."""
    return {
        stage: StageExpectation(
            device=run.device,
            machine=run.machine,
            dtype=run.dtype,
            batch_jobs=run.batch_jobs,
            batch_invariant=run.batch_invariant,
            code_version=run.code_version,
            weights=run.family.weights,
        ).model_dump(mode="json")
        for stage, run in runs.items()
    }


def _unstable_batch(stage: str, jobs: int, invariant: bool, whose: str) -> str | None:
    if jobs > 1 and not invariant:
        return (
            f"{whose} {stage} stage ran in a batch of {jobs} jobs without batch-invariant "
            "mode, so its numbers depend on what it was batched with"
        )
    return None


def _differs(stage: str, want: StageExpectation, run: StageRun) -> str | None:
    pairs = (
        ("device", want.device, run.device),
        ("machine", want.machine, run.machine),
        ("dtype", want.dtype, run.dtype),
        ("code version", want.code_version, run.code_version),
    )
    for what, original, replay in pairs:
        if original != replay:
            return f"the {stage} stage ran on {what} {replay!r}, the original on {original!r}"
    if want.weights != run.family.weights:
        return f"the {stage} stage ran other weights than the original's (checksums differ)"
    return _unstable_batch(stage, run.batch_jobs, run.batch_invariant, "the replay's")


def reproducibility(
    expect: dict[str, Any] | None, raw_runs: dict[str, Any] | None
) -> tuple[bool | None, str | None]:
    """(reproducible, why not) of a replay: False as soon as one reason is known, True once
    every stage ran as the original's did, None while that is not known yet."""
    if expect is None:
        return None, None
    wanted = {stage: StageExpectation.model_validate(expect[stage]) for stage in expect}
    for stage, want in wanted.items():
        reason = _unstable_batch(stage, want.batch_jobs, want.batch_invariant, "the original's")
        if reason is not None:
            return False, reason
    runs = stage_runs(raw_runs)
    for stage, run in runs.items():
        if stage in wanted and (reason := _differs(stage, wanted[stage], run)) is not None:
            return False, reason
    if set(wanted) - set(runs) or not wanted:
        return None, None
    return True, None
