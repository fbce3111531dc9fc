"""render.decoder: stored image embeddings -> low-resolution images, stored for the upsampler."""

from __future__ import annotations

from shared.db.claims import Claim
from shared.db.models import Job
from shared.db.states import Stage
from shared.storage.keys import stage_output_key
from worker.tasks.base import RenderTask, StageOutput
from worker.tasks.batching import run_in_batch
from worker.tasks.job_spec import build_spec, params_used
from worker.tasks.payloads import decode_tensor, encode_tensor
from worker.tasks.progress import ProgressWriter
from worker.tasks.run_record import stage_run, write_stage_run

LOW_RES_NAME = "low_res.safetensors"


class DecoderTask(RenderTask):
    """Stage 2 of 3; resumes from the prior output stored on the job row."""

    name = "render.decoder"
    stage = Stage.decoder

    def render(self, job: Job, claim: Claim, progress: ProgressWriter) -> StageOutput:
        storage = self.resources().storage
        if job.prior_output_key is None:
            raise ValueError(f"job {job.id} reached the decoder without stored prior output")
        spec = build_spec(job, storage, params_used(job, self.family()))
        embeddings = decode_tensor(
            storage.get_bytes(job.prior_output_key), stage=Stage.prior, expected_rows=job.n
        )  # (n, D)
        # Moderation point 2: the input-image check of a variation or edit runs here.
        # One library call with the jobs batched with this one (alone when none is).
        low_res = run_in_batch(
            self.stage, self.family(), spec, embeddings, progress, turns=self.takes_turns()
        )
        run = stage_run(self.family(), str(self.resources().settings.family), spec, self.stage,
                        claim)  # fmt: skip
        key = stage_output_key(job.id, claim.attempt, self.stage, LOW_RES_NAME)
        storage.put_bytes(
            key, encode_tensor(low_res, stage=self.stage), "application/x-safetensors"
        )
        return StageOutput(
            output_key=key, on_complete=lambda session: write_stage_run(session, claim, run, job)
        )
