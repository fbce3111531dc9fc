"""Stage run records and whether a replay can give the original's bytes."""

from __future__ import annotations

from typing import Any

from shared.job_params import STAGES
from shared.manifest import (
    FamilyRecord,
    StageRun,
    replay_expectation,
    reproducibility,
    stage_runs,
    with_stage_run,
)


def make_run(stage: str, **changes: Any) -> StageRun:
    values: dict[str, Any] = dict(
        stage=stage, attempt=1, worker_id="w1", device="cpu", machine="AMD EPYC 7B13",
        dtype="float32", batch_jobs=1, batch_rows=1, batch_invariant=True, steps=2,
        sampler="ddim", guidance=None if stage == "upsampler" else 4.0, seeds=[[1]],
        family=FamilyRecord(name="shapes", weights={"prior.safetensors": "ab" * 32}),
        code_version="0.1.0+g0123456789ab",
    )  # fmt: skip
    values.update(changes)
    return StageRun.model_validate(values)


def runs_json(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] | None = None
    for stage in STAGES:
        raw = with_stage_run(raw, make_run(stage, **changes))
    assert raw is not None
    return raw


def test_a_later_attempt_replaces_the_stage_record_and_stages_keep_their_order() -> None:
    raw = with_stage_run(None, make_run("decoder"))
    raw = with_stage_run(raw, make_run("prior"))
    raw = with_stage_run(raw, make_run("decoder", attempt=4))
    runs = stage_runs(raw)
    assert list(runs) == ["prior", "decoder"] and runs["decoder"].attempt == 4


def test_replay_on_the_same_machine_class_is_reproducible_once_every_stage_ran() -> None:
    expect = replay_expectation(stage_runs(runs_json()))
    assert reproducibility(expect, None) == (None, None)
    partial = with_stage_run(None, make_run("prior", worker_id="another", attempt=7))
    assert reproducibility(expect, partial) == (None, None)
    assert reproducibility(expect, runs_json(worker_id="w9")) == (True, None)


def test_another_device_dtype_machine_code_or_weights_cannot_be_reproducible() -> None:
    expect = replay_expectation(stage_runs(runs_json()))
    for change, words in (
        ({"device": "cuda", "batch_invariant": False}, "device 'cuda'"),
        ({"dtype": "float16"}, "dtype 'float16'"),
        ({"machine": "Intel Xeon"}, "machine 'Intel Xeon'"),
        ({"code_version": "0.2.0"}, "code version"),
        ({"family": FamilyRecord(name="shapes", weights={"prior.safetensors": "cd" * 32})},
         "other weights"),
    ):  # fmt: skip
        ok, reason = reproducibility(expect, runs_json(**change))
        assert ok is False and reason is not None and words in reason
        # Known as soon as the first stage ran elsewhere.
        first = with_stage_run(None, make_run("prior", **change))
        assert reproducibility(expect, first)[0] is False


def test_a_batch_without_batch_invariance_cannot_be_reproduced() -> None:
    unstable = {"batch_jobs": 3, "batch_invariant": False, "device": "cuda"}
    expect = replay_expectation(stage_runs(runs_json(**unstable)))
    ok, reason = reproducibility(expect, None)  # known before the replay runs at all
    assert ok is False and reason is not None and "batch of 3" in reason
    # A batch with batch-invariant mode on (the CPU) is no obstacle.
    stable = replay_expectation(stage_runs(runs_json(batch_jobs=3)))
    assert reproducibility(stable, runs_json(batch_jobs=2)) == (True, None)
    # Nor is the replay's own batch elsewhere when invariant; but a non-invariant one is.
    gpu = replay_expectation(stage_runs(runs_json(device="cuda", batch_invariant=False)))
    ok, reason = reproducibility(gpu, runs_json(device="cuda", batch_invariant=False,
                                                batch_jobs=2))  # fmt: skip
    assert ok is False and reason is not None and "the replay's" in reason
