"""A job row (plus its stored input image and mask) as the model library's RenderSpec."""

from __future__ import annotations

import io

import PIL.Image

from shared.db.models import Job
from shared.storage.base import Storage
from worker.unclip.render_spec import RenderSpec, StageSteps


def load_image(storage: Storage, key: str, what: str) -> PIL.Image.Image:
    """Open a stored upload fully (so no file handle outlives the call)."""
    data = storage.get_bytes(key)
    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.copy()
    except (PIL.UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"stored {what} {key!r} is not a readable image: {exc}") from exc


def parse_size(size: str) -> tuple[int, int]:
    """'256x256' -> (256, 256)."""
    width, sep, height = size.partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or int(width) < 1:
        raise ValueError(f"job size {size!r} is not WIDTHxHEIGHT such as '256x256'")
    return int(width), int(height)


def build_spec(job: Job, storage: Storage) -> RenderSpec:
    """The RenderSpec of `job`, its input image and mask read from storage."""
    image = mask = None
    if job.kind in ("variation", "edit"):
        if job.input_image_key is None:
            raise ValueError(f"job {job.id} is a {job.kind} but has no input image")
        image = load_image(storage, job.input_image_key, "input image")
        if job.kind == "edit" and job.mask_key is not None:
            mask = load_image(storage, job.mask_key, "mask")
    return RenderSpec(
        kind=job.kind,  # type: ignore[arg-type]  # the API only writes the three kinds
        prompt=job.prompt,
        n=job.n,
        seed=job.seed,
        steps=StageSteps(
            prior=job.steps_prior, decoder=job.steps_decoder, upsampler=job.steps_upsampler
        ),
        sampler=job.sampler,
        prior_guidance=job.prior_guidance,
        decoder_guidance=job.decoder_guidance,
        image=image,
        mask=mask,
    )
