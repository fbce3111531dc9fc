"""render.upsampler: stored low-resolution images -> final PNGs at the job's size, published."""

from __future__ import annotations

import io
from functools import partial

import PIL.Image
from sqlalchemy.orm import Session

from shared.db.claims import Claim, ImageRecord
from shared.db.models import Job
from shared.db.states import Stage
from shared.manifest import StageRun
from shared.moderation.verdict import Verdict
from shared.storage.keys import image_key
from worker.moderation.stage_gate import check_outputs, record_verdicts
from worker.tasks.base import RenderTask, StageOutput
from worker.tasks.batching import run_in_batch
from worker.tasks.job_spec import build_spec, params_used, parse_size
from worker.tasks.payloads import decode_tensor
from worker.tasks.progress import ProgressWriter
from worker.tasks.run_record import stage_run, write_stage_run
from worker.unclip.images import to_pil_images


def png_bytes(image: PIL.Image.Image) -> bytes:
    """The image as PNG bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def fit_size(image: PIL.Image.Image, size: tuple[int, int]) -> PIL.Image.Image:
    """The image at the requested size (Lanczos); unchanged when it already is that size."""
    if image.size == size:
        return image
    return image.resize(size, PIL.Image.Resampling.LANCZOS)


def _on_complete(
    job: Job, claim: Claim, run: StageRun, allowed: list[Verdict], session: Session
) -> None:
    """In the completing transaction: the output check's verdicts and the run record."""
    record_verdicts(session, claim.job_id, allowed)
    write_stage_run(session, claim, run, job)


class UpsamplerTask(RenderTask):
    """Stage 3 of 3; resumes from the decoder output stored on the job row."""

    name = "render.upsampler"
    stage = Stage.upsampler

    def render(self, job: Job, claim: Claim, progress: ProgressWriter) -> StageOutput:
        storage = self.resources().storage
        if job.decoder_output_key is None:
            raise ValueError(f"job {job.id} reached the upsampler without stored decoder output")
        used = params_used(job, self.family())
        spec = build_spec(job, storage, used)
        low_res = decode_tensor(
            storage.get_bytes(job.decoder_output_key), stage=Stage.decoder, expected_rows=job.n
        )  # (n, 3, s, s)
        # One library call with the jobs batched with this one (alone when none is).
        final = run_in_batch(
            self.stage, self.family(), spec, low_res, progress, turns=self.takes_turns()
        )
        run = stage_run(self.family(), str(self.resources().settings.family), spec, self.stage,
                        claim)  # fmt: skip
        size = parse_size(used.size)
        images = [fit_size(image, size) for image in to_pil_images(final)]
        records = []
        for index, image in enumerate(images):
            key = image_key(job.id, claim.attempt, index)
            storage.put_bytes(key, png_bytes(image), "image/png")
            records.append(ImageRecord(index, key, image.width, image.height))
        # Moderation point 3: the output-image check, after storing and before publishing; a
        # hold or block keeps the images unpublished (a reviewer's release publishes them) and
        # the run record beside them, for that release. Allowed, the verdicts and the run
        # record are written in the transaction that completes the job.
        res = self.resources()
        # Edits: the repainted region (crop and change) is checked beside the whole output.
        edit = (spec.image, spec.mask) if spec.kind == "edit" and spec.image is not None else None
        allowed = check_outputs(
            res.sessions, claim, res.settings, self.family(), images, records, edit,
            defer_allowed=True, on_stop=lambda session: write_stage_run(session, claim, run, job),
        )  # fmt: skip
        on_complete = partial(_on_complete, job, claim, run, allowed)
        return StageOutput(images=records, on_complete=on_complete)
