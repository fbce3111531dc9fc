"""What one render request asks of the model library: kind, prompt, n, seed, steps, guidance."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar, get_args

import PIL.Image

In = TypeVar("In")
Out = TypeVar("Out")

Kind = Literal["generate", "variation", "edit", "mix"]
Stage = Literal["prior", "decoder", "upsampler"]
KINDS: tuple[str, ...] = get_args(Kind)
MAX_MIX = 4


@dataclass(frozen=True)
class StageSteps:
    """Sampling steps for each stage."""

    prior: int = 10
    decoder: int = 10
    upsampler: int = 4

    def __post_init__(self) -> None:
        for name in ("prior", "decoder", "upsampler"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} steps must be a positive integer, got {value!r}")

    @classmethod
    def parse(cls, text: str) -> StageSteps:
        """Parse "PRIOR,DECODER,UPSAMPLER", for example "10,10,4"."""
        parts = text.split(",")
        if len(parts) != 3 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(
                f"steps must be three positive integers PRIOR,DECODER,UPSAMPLER "
                f"such as 10,10,4, got {text!r}"
            )
        prior, decoder, upsampler = (int(p) for p in parts)
        return cls(prior=prior, decoder=decoder, upsampler=upsampler)


@dataclass(frozen=True)
class MixPart:
    """One entry of a mix: a prompt (sampled by the prior), an image, or a given embedding."""

    weight: float
    prompt: str | None = None
    image: PIL.Image.Image | None = None
    embedding: Any = None  # a (D,) CLIP image embedding, e.g. a stored one by embedding_id

    def __post_init__(self) -> None:
        given = [x is not None for x in (self.prompt, self.image, self.embedding)]
        if sum(given) != 1:
            raise ValueError("a mix entry is exactly one of prompt, image or embedding")
        if not self.weight > 0:
            raise ValueError(f"a mix entry's weight must be positive, got {self.weight!r}")


@dataclass(frozen=True)
class RenderSpec:
    """One request: n images of one kind from one prompt and seed."""

    kind: Kind
    prompt: str
    n: int
    seed: int
    steps: StageSteps = field(default_factory=StageSteps)
    sampler: str = "ddim"
    prior_guidance: float = 4.0
    decoder_guidance: float = 8.0
    image: PIL.Image.Image | None = None
    mask: PIL.Image.Image | None = None
    # A variation of a stored CLIP image embedding (D,) instead of an image.
    image_embedding: Any = None
    # kind "mix": 2 to 4 entries whose embeddings are spherically mixed, then decoded.
    mix: tuple[MixPart, ...] = ()
    # True: bytes independent of what the request is batched with (CPU; batch_invariance.py),
    # at a cost in speed; False: full speed; None: the family's mode (Family.reproducible).
    reproducible: bool | None = None
    # The output side wanted: the upsampler chain runs up to Family.output_side(size), the
    # smallest native side >= size (the largest when none is); None: the first upsampler's.
    size: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"n must be a positive integer, got {self.n!r}")
        if self.kind == "edit" and self.image is None:
            raise ValueError("an edit needs an input image, got image=None")
        if self.kind == "variation" and (self.image is None) == (self.image_embedding is None):
            raise ValueError("a variation needs exactly one of an input image or an embedding")
        if (self.kind == "mix") != bool(self.mix) or not 0 <= len(self.mix) <= MAX_MIX:
            raise ValueError(f"kind 'mix' (and only it) takes 2 to {MAX_MIX} mix entries, got "
                             f"{len(self.mix)} for kind {self.kind!r}")  # fmt: skip
        if self.kind == "mix" and len(self.mix) < 2:
            raise ValueError(f"a mix needs 2 to {MAX_MIX} entries, got {len(self.mix)}")
        if self.kind != "edit" and self.mask is not None:
            raise ValueError(f"only an edit takes a mask, got a mask for kind {self.kind!r}")
        for name in ("prior_guidance", "decoder_guidance"):
            if not getattr(self, name) >= 0.0:
                raise ValueError(f"{name} must be a number >= 0, got {getattr(self, name)!r}")
        if self.size is not None and not (isinstance(self.size, int) and self.size > 0):
            raise ValueError(f"size must be a positive integer (pixels) or None, got {self.size!r}")


@dataclass(frozen=True)
class StepProgress:
    """One finished sampling step; step counts from 1 to total."""

    stage: str
    step: int
    total: int


ProgressCallback = Callable[[StepProgress], None]


def stage_steps(spec: RenderSpec, stage: Stage) -> int:
    """The spec's step count for `stage`."""
    return int(getattr(spec.steps, stage))


def with_mode(specs: Sequence[RenderSpec], default: bool) -> list[RenderSpec]:
    """`specs` with reproducible=None replaced by `default` (the family's mode)."""
    return [spec if spec.reproducible is not None else replace(spec, reproducible=default)
            for spec in specs]  # fmt: skip


def sampler_groups(specs: Sequence[RenderSpec], stage: Stage) -> list[tuple[int, str, list[int]]]:
    """(steps, sampler, indices into specs) for each distinct (steps, sampler, mode) of a stage.

    A stage runs one sampler call per group: normally every spec shares them, so the whole
    batch goes through one call. Reproducible and full-speed specs never share a call.
    """
    groups: dict[tuple[int, str, bool], list[int]] = {}
    for index, spec in enumerate(specs):
        key = (stage_steps(spec, stage), spec.sampler, bool(spec.reproducible))
        groups.setdefault(key, []).append(index)
    return [(steps, sampler, members) for (steps, sampler, _), members in groups.items()]


def run_grouped(
    specs: Sequence[RenderSpec],
    inputs: Sequence[In],
    stage: Stage,
    callback: ProgressCallback | None,
    sample_group: Callable[[list[RenderSpec], list[In], int, str, StepCounter], list[Out]],
) -> list[Out]:
    """Call `sample_group` once per (steps, sampler) group; results come back in spec order.

    Progress counts over all the groups of the stage, so a caller sees one bar per stage.
    """
    groups = sampler_groups(specs, stage)
    counter = StepCounter(stage, sum(steps for steps, _, _ in groups), callback)
    out: dict[int, Out] = {}
    for steps, sampler, members in groups:
        results = sample_group(
            [specs[m] for m in members], [inputs[m] for m in members], steps, sampler, counter
        )
        out.update(zip(members, results, strict=True))
    return [out[i] for i in range(len(specs))]


class StepCounter:
    """Turns the sampler's per-call steps into StepProgress over all calls of one stage."""

    def __init__(self, stage: str, total: int, callback: ProgressCallback | None) -> None:
        self.stage, self.total, self.callback = stage, total, callback
        self.done = 0

    def sampler_callback(self) -> Callable[[Any], None] | None:
        """A sampler callback (StepInfo) reporting to the stage callback; None without one."""
        if self.callback is None:
            return None
        callback = self.callback

        def report(_info: Any) -> None:
            self.done += 1
            callback(StepProgress(stage=self.stage, step=self.done, total=self.total))

        return report
