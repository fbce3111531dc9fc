"""Job parameters, defined once: kinds, samplers, sizes, the eleven fields and their limits.

Everything that carries a job's parameters derives from here: the request schemas of both
APIs (api/schemas/jobs.py, the OpenAI routes), the row (shared/db/models/job.py,
shared/db/jobs.py NewJob), the public object and the worker's spec (worker/tasks/job_spec.py).

A job records None for what the client left out (size, sampler, steps, guidance); the worker
fills those from the family's `defaults` in family.json and records what ran (`ParamsUsed`).
The seed is the exception: when the client sends none the API draws one at submit and the
row keeps it, so a replay of the same job is the same image.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Protocol, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

Kind = Literal["generate", "variation", "edit", "mix"]
Sampler = Literal["ddpm", "ddim", "dpmpp_2m"]
Size = Literal["64x64", "128x128", "256x256", "512x512", "1024x1024"]
StageName = Literal["prior", "decoder", "upsampler"]

KINDS: tuple[Kind, ...] = get_args(Kind)
SAMPLERS: tuple[Sampler, ...] = get_args(Sampler)
SIZES: tuple[Size, ...] = get_args(Size)
STAGES: tuple[StageName, ...] = get_args(StageName)

# Ceilings of the schema. Settings (shared/settings.py Limits) narrow them per deployment; the
# request check (api/job_request.py) applies the configured range and names it.
MAX_SEED = 2**32 - 1
MAX_N = 10  # OpenAI's DALL-E 2 limit too
MAX_PROMPT_CHARS = 4000
MAX_STEPS = 1000  # every stage's diffusion has 1000 timesteps; respacing cannot add more
MAX_GUIDANCE = 100.0
# The largest value of an Integer column (PostgreSQL's int4): integer path and query
# parameters are range-checked against it, so none reaches the database as an overflow.
MAX_DB_INT = 2**31 - 1
# Column widths the row needs for the option sets above.
KIND_LENGTH = SAMPLER_LENGTH = SIZE_LENGTH = 16

# kind "mix": 2 to 4 weighted entries (issue 15); an embedding id is "emb_" + 32 hex digits.
MIN_MIX, MAX_MIX = 2, 4
MAX_MIX_WEIGHT = 1000.0
EMBEDDING_ID_LENGTH = 64

# The row's flat columns for the eleven fields, in the order the issue lists them.
STEP_COLUMNS: dict[StageName, str] = {stage: f"steps_{stage}" for stage in STAGES}
PARAM_COLUMNS: tuple[str, ...] = (
    "kind", "prompt", "n", "size", "seed", "sampler", *STEP_COLUMNS.values(),
    "prior_guidance", "decoder_guidance",
)  # fmt: skip
# Those a job leaves None when the client leaves them out (the family fills them).
FAMILY_FILLED_COLUMNS: tuple[str, ...] = (
    "size", "sampler", *STEP_COLUMNS.values(), "prior_guidance", "decoder_guidance",
)  # fmt: skip

def _not_a_boolean(value: object) -> object:
    """true is no count: pydantic would read it as 1 (and "2" from a form stays a number)."""
    if isinstance(value, bool):
        raise ValueError("give a number, not true or false")
    return value


Count = Annotated[int, BeforeValidator(_not_a_boolean)]
Number = Annotated[float, BeforeValidator(_not_a_boolean)]
_STEP = Field(default=None, ge=1, le=MAX_STEPS)
_GUIDANCE = Field(default=None, ge=0.0, le=MAX_GUIDANCE, allow_inf_nan=False)


class StepsParams(BaseModel):
    """Diffusion steps per stage; None leaves the stage to the family's default."""

    model_config = ConfigDict(extra="forbid")

    prior: Count | None = _STEP
    decoder: Count | None = _STEP
    upsampler: Count | None = _STEP


class JobParams(BaseModel):
    """What a client asks of a job: the one definition of the eleven fields."""

    model_config = ConfigDict(extra="forbid")

    kind: Kind = "generate"
    prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    n: Count = Field(default=1, ge=1, le=MAX_N)
    size: Size | None = None
    seed: Count | None = Field(default=None, ge=0, le=MAX_SEED)
    sampler: Sampler | None = None
    steps: StepsParams | None = None
    prior_guidance: Number | None = _GUIDANCE
    decoder_guidance: Number | None = _GUIDANCE

    def step(self, stage: StageName) -> int | None:
        """The requested steps of `stage` (None: the family's default)."""
        return None if self.steps is None else getattr(self.steps, stage)

    def row_values(self) -> dict[str, Any]:
        """The row's columns for these parameters; the seed must be drawn by now."""
        if self.seed is None:
            raise ValueError("a job row needs a seed; draw one before storing the job")
        values: dict[str, Any] = {
            "kind": self.kind,
            "prompt": self.prompt or "",
            "n": self.n,
            "size": self.size,
            "seed": self.seed,
            "sampler": self.sampler,
            "prior_guidance": self.prior_guidance,
            "decoder_guidance": self.decoder_guidance,
        }
        values.update({column: self.step(stage) for stage, column in STEP_COLUMNS.items()})
        return values


class MixEntry(BaseModel):
    """One entry of a mix as a client sends it: a prompt, a stored embedding or an image
    (base64), with a positive weight; the entries' embeddings are spherically mixed."""

    model_config = ConfigDict(extra="forbid")

    weight: float = Field(gt=0.0, le=MAX_MIX_WEIGHT, allow_inf_nan=False)
    prompt: str | None = Field(default=None, min_length=1, max_length=MAX_PROMPT_CHARS)
    embedding_id: str | None = Field(default=None, min_length=1, max_length=EMBEDDING_ID_LENGTH)
    image: str | None = Field(default=None, description="base64 (or a data: URL) of an image")

    @model_validator(mode="after")
    def _exactly_one(self) -> MixEntry:
        given = [name for name in ("prompt", "embedding_id", "image") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError(
                f"a mix entry takes exactly one of prompt, embedding_id or image, got "
                f"{given or 'none'}"
            )
        return self


class StoredMixEntry(BaseModel):
    """A mix entry as the job row keeps it (jobs.mix): images and embeddings copied to the
    job's own storage keys, so the job does not depend on where they came from."""

    weight: float
    prompt: str | None = None
    embedding_id: str | None = None  # where a copied embedding came from (for the record)
    embedding_key: str | None = None  # the job's own copy of it (a (1, D) safetensors payload)
    image_key: str | None = None  # the job's own copy of an image entry (PNG)


class ParamsRow(Protocol):
    """Anything with the row's parameter columns (the ORM Job)."""

    kind: str
    prompt: str
    n: int
    size: str | None
    seed: int
    sampler: str | None
    steps_prior: int | None
    steps_decoder: int | None
    steps_upsampler: int | None
    prior_guidance: float | None
    decoder_guidance: float | None


def params_from_row(row: ParamsRow) -> JobParams:
    """The parameters a stored job asked for (validated again: the row is read back)."""
    steps = {stage: getattr(row, column) for stage, column in STEP_COLUMNS.items()}
    return JobParams.model_validate(
        {
            "kind": row.kind,
            "prompt": row.prompt,
            "n": row.n,
            "size": row.size,
            "seed": row.seed,
            "sampler": row.sampler,
            "steps": steps,
            "prior_guidance": row.prior_guidance,
            "decoder_guidance": row.decoder_guidance,
        }
    )


class Steps(BaseModel):
    """Diffusion steps per stage, all known."""

    prior: int = Field(ge=1, le=MAX_STEPS)
    decoder: int = Field(ge=1, le=MAX_STEPS)
    upsampler: int = Field(ge=1, le=MAX_STEPS)


class SamplingDefaults(BaseModel):
    """A family's `defaults` in family.json: what a job gets for what it leaves out."""

    steps: Steps
    sampler: Sampler
    prior_guidance: float = Field(ge=0.0, allow_inf_nan=False)
    decoder_guidance: float = Field(ge=0.0, allow_inf_nan=False)


class ParamsUsed(BaseModel):
    """What a job ran with: its request with every None filled from the family."""

    family: str
    native_size: str  # what the family's upsampler makes, e.g. "64x64"
    size: Size
    seed: int = Field(ge=0, le=MAX_SEED)
    sampler: Sampler
    steps: Steps
    prior_guidance: float
    decoder_guidance: float

    @property
    def resized(self) -> bool:
        """True when the images are resized from the family's native size."""
        return self.size != self.native_size


def native_as_size(native_size: str) -> Size:
    """The native size as a job size; a family whose native size is no job size falls back
    to the nearest larger one (the images are resized, and say so)."""
    if native_size in SIZES:
        return native_size
    side = int(native_size.partition("x")[0])
    return next((s for s in SIZES if int(s.partition("x")[0]) >= side), SIZES[-1])


def fill_params(
    params: JobParams, *, family: str, native_size: str, defaults: SamplingDefaults
) -> ParamsUsed:
    """The parameters a job runs with: what it asked for, the family's defaults for the rest."""
    if params.seed is None:
        raise ValueError("a job runs with a seed; the API draws one at submit")
    steps = {stage: params.step(stage) or getattr(defaults.steps, stage) for stage in STAGES}
    return ParamsUsed(
        family=family,
        native_size=native_size,
        size=params.size or native_as_size(native_size),
        seed=params.seed,
        sampler=params.sampler or defaults.sampler,
        steps=Steps.model_validate(steps),
        prior_guidance=(
            defaults.prior_guidance if params.prior_guidance is None else params.prior_guidance
        ),
        decoder_guidance=(
            defaults.decoder_guidance
            if params.decoder_guidance is None
            else params.decoder_guidance
        ),
    )
