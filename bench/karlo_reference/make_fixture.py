"""Write tests/fixtures/karlo/karlo-tiny-*.safetensors: Karlo's own outputs on tiny networks.

Usage, from the repository root:
    .venv/bin/python -m bench.karlo_reference.make_fixture [--karlo DIR] [--out DIR]

Builds kakaobrain/karlo's prior, decoder and improved-SR upsampler from a local checkout
at tiny sizes (karlo_tiny.TINY_YAML), fills them with seeded random weights exact in int8 * 2**k,
runs fixed seeded inputs through each and saves weights (int8 + scale, Karlo checkpoint key
names) plus inputs and outputs (fp32). tests/worker/unclip/test_karlo_numeric.py loads
the weights strictly into our networks and checks they give the same outputs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any

import torch
import torchvision.transforms.functional as TVF
from safetensors.torch import save_file
from torchvision.transforms import InterpolationMode

from bench.karlo_reference.karlo_tiny import (
    DEFAULT_CHECKOUT,
    REPO_ROOT,
    TINY_YAML,
    UPSAMPLER_SIZES,
    build_karlo_models,
    import_karlo,
    randomise_,
)

BATCH = 3
TIMESTEPS = [0, 417, 999]
TEXT_LENGTHS = [8, 5, 2]  # real tokens per row; the rest is padding (mask False)
KEEP_IMAGE_EMB = [True, True, False]  # the last decoder row uses the null embedding cf_param


def _inputs(gen: torch.Generator, clip_dim: int, text_ctx: int) -> dict[str, torch.Tensor]:
    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen)

    mask = torch.arange(text_ctx)[None] < torch.tensor(TEXT_LENGTHS)[:, None]
    size, low = UPSAMPLER_SIZES
    return {
        "t": torch.tensor(TIMESTEPS),
        "text_emb": randn(BATCH, clip_dim),
        "text_tokens": randn(BATCH, text_ctx, clip_dim),
        "text_mask": mask,
        "prior.x_t": randn(BATCH, clip_dim),
        "decoder.x": randn(BATCH, 3, 16, 16),
        "decoder.image_emb": randn(BATCH, clip_dim),
        "decoder.keep_image_emb": torch.tensor(KEEP_IMAGE_EMB),
        "upsampler.x": randn(BATCH, 3, size, size),
        "upsampler.low_res": torch.rand(BATCH, 3, low, low, generator=gen) * 2 - 1,
    }


@torch.no_grad()
def _outputs(models: dict[str, Any], io: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Run Karlo's networks exactly as its samplers call them."""
    prior, decoder, sr = models["prior"], models["decoder"], models["upsampler"]
    t, mask = io["t"], io["text_mask"]
    out = {}
    out["prior.out"] = prior.model(
        io["prior.x_t"],
        t,
        text_emb=io["text_emb"],
        text_enc=io["text_tokens"],
        mask=mask,
        causal_mask=prior.causal_mask,
    )
    keep = io["decoder.keep_image_emb"][:, None]
    y = torch.where(keep, io["decoder.image_emb"], decoder.model.cf_param[None])
    out["decoder.out"] = decoder.model(
        io["decoder.x"],
        t,
        txt_feat=io["text_emb"],
        txt_feat_seq=io["text_tokens"],
        mask=mask,
        y=y,
    )
    # karlo/sampler/t2i.py: resize once with torchvision, bicubic + antialias, then SR.
    size = io["upsampler.x"].shape[-1]
    low_res = TVF.resize(
        io["upsampler.low_res"],
        [size, size],
        interpolation=InterpolationMode.BICUBIC,
        antialias=True,
    )
    out["upsampler.low_res_resized"] = low_res
    out["upsampler.first_out"] = sr.model_first_steps(io["upsampler.x"], t, low_res=low_res)
    out["upsampler.last_out"] = sr.model_last_step(io["upsampler.x"], t, low_res=low_res)
    return out


def _commit(checkout: Path) -> str:
    stamp = checkout / "KARLO_COMMIT"
    if stamp.is_file():
        return stamp.read_text().strip()
    try:
        return subprocess.check_output(
            ["git", "-C", str(checkout), "rev-parse", "HEAD"], text=True
        ).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--karlo", type=Path, default=DEFAULT_CHECKOUT, help="Karlo checkout")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "tests/fixtures/karlo")
    args = parser.parse_args()
    karlo = import_karlo(args.karlo)
    torch.manual_seed(0)  # Karlo's constructors draw from the global generator
    models = build_karlo_models(karlo)
    weights: dict[str, torch.Tensor] = {}
    for i, (stage, model) in enumerate(models.items()):
        packed = randomise_(model, torch.Generator().manual_seed(1000 + i))
        model.eval()
        if set(model.state_dict()) != {k for k in packed if not k.endswith("#scale")}:
            raise RuntimeError(f"{stage}: state dict holds more than parameters")
        weights.update({f"{stage}/{key}": value for key, value in packed.items()})
    hp = TINY_YAML["prior"]["model"]["hparams"]
    io = _inputs(torch.Generator().manual_seed(7), hp["clip_dim"], hp["text_ctx"])
    io.update(_outputs(models, io))
    meta = {
        "karlo_commit": _commit(args.karlo),
        "yaml": json.dumps(TINY_YAML),
        "upsampler_sizes": json.dumps(UPSAMPLER_SIZES),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    save_file(weights, args.out / "karlo-tiny-weights.safetensors", metadata=meta)
    save_file(
        {k: v.contiguous() for k, v in io.items()},
        args.out / "karlo-tiny-io.safetensors",
        metadata=meta,
    )
    for name in ("karlo-tiny-weights.safetensors", "karlo-tiny-io.safetensors"):
        print(f"{args.out / name}: {(args.out / name).stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
