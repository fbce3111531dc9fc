"""render.prior: the prompt (or input image) -> CLIP image embeddings, stored for the decoder."""

from __future__ import annotations

from shared.db.claims import Claim
from shared.db.models import Job
from shared.db.states import Stage
from shared.storage.keys import stage_output_key
from worker.moderation.stage_gate import check_prompt_and_input
from worker.tasks.base import RenderTask, StageOutput
from worker.tasks.job_spec import build_spec
from worker.tasks.payloads import encode_tensor
from worker.tasks.progress import ProgressWriter
from worker.unclip.prior_stage import run_prior

EMBEDDINGS_NAME = "image_embeddings.safetensors"


class PriorTask(RenderTask):
    """Stage 1 of 3."""

    name = "render.prior"
    stage = Stage.prior

    def render(self, job: Job, claim: Claim, progress: ProgressWriter) -> StageOutput:
        storage = self.resources().storage
        spec = build_spec(job, storage)
        # Moderation point 1: prompt (terms, meaning) and input-image checks before the prior;
        # a hold or block stops the stage here (ModerationStopped), a checker error holds.
        res = self.resources()
        check_prompt_and_input(res.sessions, claim, res.settings, self.family(), job, spec.image)
        [embeddings] = run_prior(self.family(), [spec], callback=progress)  # (n, D)
        key = stage_output_key(job.id, claim.attempt, self.stage, EMBEDDINGS_NAME)
        storage.put_bytes(
            key, encode_tensor(embeddings, stage=self.stage), "application/x-safetensors"
        )
        return StageOutput(output_key=key)
