"""Write tests/fixtures/karlo/karlo-tiny-sampler.safetensors: Karlo's own sampling loops.

Usage, from the repository root (after make_fixture.py's files exist):
    .venv/bin/python -m bench.karlo_reference.make_sampler_fixture [--karlo DIR]

Loads the tiny seeded weights of karlo-tiny-weights.safetensors into kakaobrain/karlo's own
networks (a local checkout, never committed), takes rows 0 and 1 of the conditioning inputs
of karlo-tiny-io.safetensors, and runs Karlo's `create_gaussian_diffusion` with Karlo's
respacing strings and its `p_sample_loop` (DDPM), `ddim_sample_loop` (DDIM) and the
improved-SR loop (`p_sample_loop_progressive_for_improved_sr`, last step on the second
network) on each stage. No guidance: the sampler loop is what is compared.

Noise: every row i has its own `torch.Generator` seeded SEEDS[i]. The start noise is drawn
from them first (our `randn_rows`), and Karlo's per-step `torch.randn_like(x)` is replaced,
for the length of a loop, by a draw of the same shape from the same generators, so that our
samplers, which draw from those generators in the same order, see the same noise. Karlo's
DDIM with eta 0 also draws (and multiplies by 0); that cannot change its output.

The fixture holds the start noise (to check the generators still give it) and the final
samples of each case, ~40 kB; tests/worker/unclip/diffusion/test_karlo_sampler_parity.py
runs our loops on our networks with the same weights and compares.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torchvision.transforms.functional as TVF
from safetensors.torch import load_file, save_file
from torchvision.transforms import InterpolationMode

from bench.karlo_reference.karlo_tiny import (
    DEFAULT_CHECKOUT,
    REPO_ROOT,
    TINY_YAML,
    UPSAMPLER_SIZES,
    build_karlo_models,
    import_karlo,
    unpack_weights,
)
from bench.karlo_reference.make_fixture import _commit
from worker.unclip.diffusion.samplers import randn_rows

FIXTURE_DIR = REPO_ROOT / "tests/fixtures/karlo"
OUT_NAME = "karlo-tiny-sampler.safetensors"
ROWS = 2  # rows 0 and 1 of karlo-tiny-io's conditioning
SEEDS = (11, 12)  # one generator per row
# (case name, stage, Karlo loop, Karlo timestep_respacing, eta). Karlo's own wrappers pick
# DDIM for "ddim*" and "fast*" spacings and DDPM otherwise; the SR pair always runs "7".
CASES: tuple[tuple[str, str, str, str, float], ...] = (
    ("prior.ddpm.6", "prior", "ddpm", "6", 0.0),
    ("prior.ddim.ddim5", "prior", "ddim", "ddim5", 0.0),
    ("prior.ddim.fast27", "prior", "ddim", "fast27", 0.0),
    ("decoder.ddpm.6", "decoder", "ddpm", "6", 0.0),
    ("decoder.ddpm.2,2,2", "decoder", "ddpm", "2,2,2", 0.0),
    ("decoder.ddim.ddim5", "decoder", "ddim", "ddim5", 0.0),
    ("decoder.ddim.fast27", "decoder", "ddim", "fast27", 0.0),
    ("decoder.ddim_eta1.ddim10", "decoder", "ddim", "ddim10", 1.0),
    ("upsampler.improved_sr.7", "upsampler", "improved_sr", "7", 0.0),
)


@contextlib.contextmanager
def noise_from(generators: list[torch.Generator]) -> Iterator[None]:
    """Karlo's torch.randn_like(x) draws row i from generators[i] (as randn_rows does)."""
    original = torch.randn_like

    def randn_like(x: torch.Tensor, **_: Any) -> torch.Tensor:
        return randn_rows(x.shape, generators, x.device, x.dtype)

    torch.randn_like = randn_like  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.randn_like = original  # type: ignore[assignment]


def _conditioning(io: dict[str, torch.Tensor], models: dict[str, Any]) -> dict[str, Any]:
    """model_kwargs of each stage's network, as Karlo's wrappers pass them."""
    rows = slice(0, ROWS)
    size = UPSAMPLER_SIZES[0]
    low_res = TVF.resize(
        io["upsampler.low_res"][rows],
        [size, size],
        interpolation=InterpolationMode.BICUBIC,
        antialias=True,
    )
    text = {"text_emb": io["text_emb"][rows], "mask": io["text_mask"][rows]}
    return {
        "prior": {
            **text,
            "text_enc": io["text_tokens"][rows],
            "causal_mask": models["prior"].causal_mask,
        },
        "decoder": {
            "txt_feat": text["text_emb"],
            "txt_feat_seq": io["text_tokens"][rows],
            "mask": text["mask"],
            "y": io["decoder.image_emb"][rows],
        },
        "upsampler": {"low_res": low_res},
    }


def _shape(stage: str) -> tuple[int, ...]:
    if stage == "prior":
        return (ROWS, TINY_YAML["prior"]["model"]["hparams"]["clip_dim"])
    side = TINY_YAML["decoder"]["model"]["hparams"]["image_size"]
    return (ROWS, 3, side, side) if stage == "decoder" else (ROWS, 3, *UPSAMPLER_SIZES[:1] * 2)


@torch.no_grad()
def _run_case(
    karlo: Any, models: dict[str, Any], cond: dict[str, Any], case: tuple[Any, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(start noise, Karlo's final sample) of one case."""
    _, stage, loop, spacing, eta = case
    kwargs = dict(models[stage]._diffusion_kwargs, timestep_respacing=spacing)
    diffusion = karlo.create_gaussian_diffusion(**kwargs)
    generators = [torch.Generator().manual_seed(s) for s in SEEDS]
    noise = randn_rows(_shape(stage), generators, "cpu", torch.float32)
    common: dict[str, Any] = {"noise": noise.clone(), "model_kwargs": cond[stage]}
    if stage == "prior":  # Karlo's prior: no [-1, 1] clip, its x0 clamped to [-10, 10]
        common.update(clip_denoised=False, denoised_fn=lambda x: x.clamp(-10, 10))
    else:
        common.update(clip_denoised=True)
    with noise_from(generators):
        if loop == "improved_sr":
            sr = models["upsampler"]
            final = None
            for out in diffusion.p_sample_loop_progressive_for_improved_sr(
                sr.model_first_steps, sr.model_last_step, shape=noise.shape, **common
            ):
                final = out["sample"]
        elif loop == "ddim":
            final = diffusion.ddim_sample_loop(models[stage].model, noise.shape, eta=eta, **common)
        else:
            final = diffusion.p_sample_loop(models[stage].model, noise.shape, **common)
    return noise, final


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--karlo", type=Path, default=DEFAULT_CHECKOUT, help="Karlo checkout")
    parser.add_argument("--out", type=Path, default=FIXTURE_DIR / OUT_NAME)
    args = parser.parse_args()
    karlo_ns = import_karlo(args.karlo)
    import karlo.modules as karlo_modules  # type: ignore[import-not-found]

    torch.manual_seed(0)  # Karlo's constructors draw from the global generator
    models = build_karlo_models(karlo_ns)
    weights = unpack_weights(load_file(FIXTURE_DIR / "karlo-tiny-weights.safetensors"))
    for stage, model in models.items():
        prefix = f"{stage}/"
        model.load_state_dict(
            {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}, strict=True
        )
        model.eval()
    io = load_file(FIXTURE_DIR / "karlo-tiny-io.safetensors")
    cond = _conditioning(io, models)
    out: dict[str, torch.Tensor] = {}
    for case in CASES:
        noise, final = _run_case(karlo_modules, models, cond, case)
        out[f"start/{case[1]}"] = noise
        out[f"final/{case[0]}"] = final.float().contiguous()
        print(f"{case[0]}: |final| max {final.abs().max():.3f}")
    meta = {
        "karlo_commit": _commit(args.karlo),
        "cases": json.dumps(CASES),
        "seeds": json.dumps(SEEDS),
        "rows": str(ROWS),
    }
    save_file(out, args.out, metadata=meta)
    print(f"{args.out}: {args.out.stat().st_size / 1e3:.1f} kB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
