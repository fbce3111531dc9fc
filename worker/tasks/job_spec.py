"""A job row (plus its stored input image and mask) as the model library's RenderSpec.

What a client left out (None in the row) is filled from the loaded family's defaults, as
`unclip render` fills it, so an API job and a local render of the same prompt and seed make
the same images. The prior stage records the filled parameters on the row (params_used);
later stages and attempts run with that record.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import PIL.Image
import torch

from shared.db.models import Job
from shared.family_info import native_side_for, side_of
from shared.job_params import (
    ParamsUsed,
    SamplingDefaults,
    Steps,
    StoredMixEntry,
    fill_params,
    params_from_row,
)
from shared.storage.base import Storage
from worker.tasks.payloads import decode_tensor
from worker.unclip.render_spec import MixPart, RenderSpec, StageSteps

if TYPE_CHECKING:
    from worker.unclip.family import Family


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


def sampling_defaults(family: Family) -> SamplingDefaults:
    """The family's family.json defaults as the job parameters' type."""
    d = family.defaults
    return SamplingDefaults(
        steps=Steps(prior=d.steps.prior, decoder=d.steps.decoder, upsampler=d.steps.upsampler),
        sampler=d.sampler,  # type: ignore[arg-type]  # FamilyDefaults checks it is a sampler
        prior_guidance=d.prior_guidance,
        decoder_guidance=d.decoder_guidance,
    )


def params_used(job: Job, family: Family) -> ParamsUsed:
    """What `job` runs with: its record when a stage already wrote one, else its request
    with every None filled from `family`."""
    if job.params_used is not None:
        return ParamsUsed.model_validate(job.params_used)
    params = params_from_row(job)
    # The native size the request runs at, by the API's rule (shared/family_info.py).
    requested = None if params.size is None else side_of(params.size)
    side = native_side_for(family.native_sides, requested)
    return fill_params(
        params,
        family=family.name,
        native_size=f"{side}x{side}",
        defaults=sampling_defaults(family),
    )


def load_embedding(storage: Storage, key: str) -> torch.Tensor:
    """A job's own copy of a stored CLIP image embedding: (D,)."""
    x = decode_tensor(storage.get_bytes(key), stage="input", expected_rows=1)  # (1, D)
    return x[0]


def load_mix(job: Job, storage: Storage) -> tuple[MixPart, ...]:
    """A mix job's entries with their images and embeddings read from the job's storage."""
    parts = []
    for raw in job.mix or ():
        entry = StoredMixEntry.model_validate(raw)
        image = embedding = None
        if entry.image_key is not None:
            image = load_image(storage, entry.image_key, "mix image")
        if entry.embedding_key is not None:
            embedding = load_embedding(storage, entry.embedding_key)
        parts.append(MixPart(weight=entry.weight, prompt=entry.prompt, image=image,
                             embedding=embedding))  # fmt: skip
    return tuple(parts)


def build_spec(job: Job, storage: Storage, used: ParamsUsed) -> RenderSpec:
    """The RenderSpec of `job` run with `used`, its input image and mask (or embedding, or
    mix entries) read from storage."""
    image = mask = embedding = None
    if job.kind == "variation" and job.input_embedding_key is not None:
        embedding = load_embedding(storage, job.input_embedding_key)
    elif job.kind in ("variation", "edit"):
        if job.input_image_key is None:
            raise ValueError(f"job {job.id} is a {job.kind} but has no input image")
        image = load_image(storage, job.input_image_key, "input image")
        if job.kind == "edit" and job.mask_key is not None:
            mask = load_image(storage, job.mask_key, "mask")
    mix = load_mix(job, storage) if job.kind == "mix" else ()
    return RenderSpec(
        kind=job.kind,  # type: ignore[arg-type]  # the API only writes the four kinds
        # A mix's row holds its prompts (for moderation and display); the decoder conditions
        # a mix, like a variation of an image, on the empty caption.
        prompt="" if job.kind == "mix" else job.prompt,
        image_embedding=embedding,
        mix=mix,
        n=job.n,
        seed=used.seed,
        steps=StageSteps(
            prior=used.steps.prior, decoder=used.steps.decoder, upsampler=used.steps.upsampler
        ),
        sampler=used.sampler,
        prior_guidance=used.prior_guidance,
        decoder_guidance=used.decoder_guidance,
        image=image,
        mask=mask,
        size=side_of(used.native_size),  # the chain runs to it; the upsampler task resizes
    )
