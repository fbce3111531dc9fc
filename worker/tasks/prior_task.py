"""render.prior: the prompt (or input image, embedding or mix) -> CLIP image embeddings, stored
for the decoder, with an embedding id per image recorded as the stage completes."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from functools import partial

from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from shared.db.claims import Claim
from shared.db.embeddings import replace_embeddings
from shared.db.jobs import record_params_used
from shared.db.models import Job
from shared.db.states import Stage
from shared.manifest import StageRun
from shared.moderation.verdict import Verdict
from shared.storage.keys import stage_output_key
from worker.moderation.stage_gate import (
    check_mix,
    check_prompt_and_input,
    prompt_checks_together,
    record_verdicts,
)
from worker.tasks.base import RenderTask, StageOutput
from worker.tasks.batching import run_in_batch
from worker.tasks.job_spec import build_spec, params_used
from worker.tasks.payloads import encode_tensor
from worker.tasks.progress import ProgressWriter
from worker.tasks.run_record import stage_run, write_stage_run

EMBEDDINGS_NAME = "image_embeddings.safetensors"


def _on_complete(
    job: Job, claim: Claim, key: str, dim: int, run: StageRun, allowed: list[Verdict],
    session: Session,
) -> None:  # fmt: skip
    """In the completing transaction: the moderation verdicts that let the job through, the
    run record and the embedding ids of this output."""
    record_verdicts(session, claim.job_id, allowed)
    write_stage_run(session, claim, run, job)
    upload_variation = job.kind == "variation" and job.input_embedding_key is None
    replace_embeddings(session, job, storage_key=key, dim=dim, variation_input=upload_variation)


class PriorTask(RenderTask):
    """Stage 1 of 3."""

    name = "render.prior"
    stage = Stage.prior

    def on_claimed(self, session: Session, job: Job) -> None:
        """What runs is recorded first, in the claim's transaction: the request's Nones filled
        from the family's defaults (a later attempt keeps the first record)."""
        try:
            wanted = params_used(job, self.family())
        except Exception:  # a row render() will fail, with why
            return
        used = record_params_used(session=session, job_id=job.id, used=wanted)
        set_committed_value(job, "params_used", used.model_dump(mode="json"))

    def batch_scope(self, jobs: Sequence[Job]) -> AbstractContextManager[None]:
        """A batch's prompts get one semantic encode between them."""
        res = self.resources()
        return prompt_checks_together(res.settings, self.family(), jobs)

    def render(self, job: Job, claim: Claim, progress: ProgressWriter) -> StageOutput:
        res = self.resources()
        storage = res.storage
        if job.params_used is None:  # not recorded at the claim (a row params_used refused)
            with res.sessions.begin() as session:
                record_params_used(
                    session=session, job_id=job.id, used=params_used(job, self.family())
                )
        used = params_used(job, self.family())  # the recorded parameters
        spec = build_spec(job, storage, used)
        # Moderation point 1: prompt (terms, meaning) and input-image checks before the prior;
        # a hold or block stops the stage here (ModerationStopped), a checker error holds. Its
        # verdicts are written before the model runs on the prompt, so an attempt that dies
        # later still leaves them in the ledger.
        allowed = check_prompt_and_input(res.sessions, claim, res.settings, self.family(), job,
                                         spec.image)  # fmt: skip
        # One library call with the jobs batched with this one (alone when none is).
        embeddings = run_in_batch(  # (n, D)
            self.stage, self.family(), spec, None, progress, turns=self.takes_turns()
        )
        run = stage_run(self.family(), str(res.settings.family), spec, self.stage, claim)
        # A mix's embeddings (and a variation's given one) pass the image checks first.
        if spec.kind == "mix" or spec.image_embedding is not None:
            images = [part.image for part in spec.mix if part.image is not None]
            allowed += check_mix(res.sessions, claim, res.settings, self.family(), images,
                                 embeddings, defer_allowed=True)  # fmt: skip
        key = stage_output_key(job.id, claim.attempt, self.stage, EMBEDDINGS_NAME)
        storage.put_bytes(
            key, encode_tensor(embeddings, stage=self.stage), "application/x-safetensors"
        )
        dim = int(embeddings.shape[-1])
        return StageOutput(
            output_key=key, on_complete=partial(_on_complete, job, claim, key, dim, run, allowed)
        )
