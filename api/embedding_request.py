"""The embedding-level fields of POST /v1/jobs, checked at the edge: a variation's `embedding_id`
and a mix's entries (prompt, embedding_id or base64 image, each with a weight).

Whether an embedding id exists and belongs to the caller is checked at submit, with the
database at hand (api/embedding_inputs.py): an unknown or another key's id is a 404.
"""

from __future__ import annotations

from dataclasses import dataclass

from api.schemas.jobs import JobCreate
from api.uploads import UploadedImage, check_square, decode_base64, sniff_image
from shared.errors import InvalidInput
from shared.job_params import MAX_MIX, MIN_MIX
from shared.settings import Limits
from shared.storable import check_storable

# A mix job's row keeps its prompts joined by this (moderation and display read the row's
# prompt); the decoder conditions a mix on the empty caption.
MIX_PROMPT_SEPARATOR = " | "


@dataclass(frozen=True)
class EmbeddingRef:
    """An embedding input: a stored embedding's id, copied into the job's storage at submit;
    a replay passes the original job's own copy (`payload`) instead."""

    embedding_id: str | None
    param: str
    payload: bytes | None = None


@dataclass(frozen=True)
class MixInput:
    """One checked mix entry: exactly one of prompt, embedding or image."""

    weight: float
    prompt: str | None = None
    embedding: EmbeddingRef | None = None
    image: UploadedImage | None = None


@dataclass(frozen=True)
class EmbeddingFields:
    """What the embedding-level fields of a request ask for."""

    embedding: EmbeddingRef | None = None
    mix: tuple[MixInput, ...] = ()

    @property
    def replaces_uploads(self) -> bool:
        """True when the inputs are not the request's image/mask uploads."""
        return self.embedding is not None or bool(self.mix)

    def mix_prompt(self) -> str:
        return MIX_PROMPT_SEPARATOR.join(m.prompt for m in self.mix if m.prompt is not None)


def _mix_entry(job_in: JobCreate, j: int, limits: Limits) -> MixInput:
    assert job_in.mix is not None
    entry = job_in.mix[j]
    param = f"mix.{j}"
    if entry.prompt is not None:
        prompt = check_storable(entry.prompt, param=f"{param}.prompt")
        if not prompt.strip():
            raise InvalidInput(
                f"{param}.prompt is blank; give 1 to {limits.max_prompt_chars} characters",
                param=f"{param}.prompt",
            )
        return MixInput(weight=entry.weight, prompt=prompt)
    if entry.embedding_id is not None:
        embedding_id = check_storable(entry.embedding_id, param=f"{param}.embedding_id")
        ref = EmbeddingRef(embedding_id=embedding_id, param=f"{param}.embedding_id")
        return MixInput(weight=entry.weight, embedding=ref)
    assert entry.image is not None  # MixEntry checks exactly one is given
    data = decode_base64(entry.image, param=f"{param}.image", limits=limits)
    image = sniff_image(data, param=f"{param}.image", limits=limits)
    check_square(image, param=f"{param}.image")
    return MixInput(weight=entry.weight, image=image)


def _check_mix(job_in: JobCreate, uploads: dict[str, bytes], limits: Limits) -> EmbeddingFields:
    if job_in.mix is None or not MIN_MIX <= len(job_in.mix) <= MAX_MIX:
        got = "none" if job_in.mix is None else f"{len(job_in.mix)}"
        raise InvalidInput(
            f"kind=mix needs {MIN_MIX} to {MAX_MIX} mix entries, got {got}", param="mix"
        )
    if uploads:
        name = sorted(uploads)[0]
        raise InvalidInput(
            f"kind=mix takes no {name}; give images as mix entries "
            '({"image": base64, "weight": w})',
            param=name,
        )
    if job_in.prompt:
        raise InvalidInput(
            "kind=mix takes its prompts in mix entries "
            '({"prompt": ..., "weight": w}), not in prompt',
            param="prompt",
        )
    fields = EmbeddingFields(
        mix=tuple(_mix_entry(job_in, j, limits) for j in range(len(job_in.mix)))
    )
    joined = fields.mix_prompt()
    if len(joined) > limits.max_prompt_chars:
        raise InvalidInput(
            f"the mix prompts have {len(joined)} characters together (joined by "
            f"{MIX_PROMPT_SEPARATOR!r}); at most {limits.max_prompt_chars} are allowed",
            param="mix",
        )
    return fields


def check_embedding_fields(
    job_in: JobCreate, uploads: dict[str, bytes], limits: Limits
) -> EmbeddingFields:
    """The checked embedding_id and mix of a request; 400 naming the field otherwise."""
    if job_in.mix is not None and job_in.kind != "mix":
        raise InvalidInput(f"mix is only for kind=mix, got kind={job_in.kind}", param="mix")
    if job_in.embedding_id is not None and job_in.kind != "variation":
        raise InvalidInput(
            f"embedding_id is only for kind=variation, got kind={job_in.kind}; "
            'a mix takes {"embedding_id": ...} entries',
            param="embedding_id",
        )
    if job_in.kind == "mix":
        return _check_mix(job_in, uploads, limits)
    if job_in.embedding_id is None:
        return EmbeddingFields()
    if uploads:
        raise InvalidInput(
            "kind=variation takes an image or an embedding_id, not both", param=sorted(uploads)[0]
        )
    embedding_id = check_storable(job_in.embedding_id, param="embedding_id")
    return EmbeddingFields(embedding=EmbeddingRef(embedding_id=embedding_id, param="embedding_id"))
