"""render.upsampler: stored low-resolution images -> final PNGs at the job's size, published."""

from __future__ import annotations

import io

import PIL.Image

from shared.db.claims import Claim, ImageRecord
from shared.db.models import Job
from shared.db.states import Stage
from shared.storage.keys import image_key
from worker.moderation.stage_gate import check_outputs
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
        final = run_in_batch(self.stage, self.family(), spec, low_res, progress)
        run = stage_run(self.family(), str(self.resources().settings.family), spec, self.stage,
                        claim)  # fmt: skip
        size = parse_size(used.size)
        images = [fit_size(image, size) for image in to_pil_images(final)]
        records = []
        for index, image in enumerate(images):
            key = image_key(job.id, claim.attempt, index)
            storage.put_bytes(key, png_bytes(image), "image/png")
            records.append(ImageRecord(index, key, image.width, image.height))
        # The run record first (a job the output check holds keeps it for its release).
        with self.resources().sessions.begin() as session:
            write_stage_run(session, claim, run)
        # Moderation point 3: the output-image check, after storing and before publishing; a
        # hold or block keeps the images unpublished (a reviewer's release publishes them).
        res = self.resources()
        # Edits: the repainted region (crop and change) is checked beside the whole output.
        edit = (spec.image, spec.mask) if spec.kind == "edit" and spec.image is not None else None
        check_outputs(res.sessions, claim, res.settings, self.family(), images, records, edit)
        return StageOutput(images=records)
