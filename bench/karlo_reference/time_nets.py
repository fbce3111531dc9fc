"""Time one network call per stage: our nets against kakaobrain/karlo's, same weights and inputs.

Usage, from the repository root (needs the .karlo checkout, see README.md):
    .venv/bin/python -m bench.karlo_reference.time_nets [--size tiny|small] [--steps 10]

Each stage runs `--steps` calls at batch 2 (a conditional and an unconditional row, as
classifier-free guidance does). Our decoder builds its context (projections and every
attention block's context keys/values) once and reuses it at every step, as our samplers
do; Karlo's recomputes it at each call. Calls alternate between the two; reports the median
milliseconds per call.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from bench.karlo_reference.karlo_tiny import TINY_YAML, build_karlo_models, import_karlo, randomise_
from worker.unclip.karlo_configs import config_from_karlo_yaml
from worker.unclip.nets import DecoderNet, PriorNet, UpsamplerPair, resize_low_res

SMALL = {  # a 64 px decoder and 32 -> 64 px upsampler, closer to a usable small model
    "prior": {"text_ctx": 77, "xf_width": 256, "xf_layers": 4, "xf_heads": 4, "clip_dim": 64},
    "decoder": {
        "image_size": 64,
        "num_channels": 64,
        "num_res_blocks": 2,
        "channel_mult": "1,2,3,4",
        "attention_resolutions": "32,16,8",
        "num_head_channels": 32,
        "clip_dim": 64,
        "text_ctx": 77,
        "xf_width": 256,
    },
    "upsampler": {"channels": 32, "depth": 2, "channels_multiple": [1, 2, 2]},
}


def _yaml(size: str) -> tuple[dict[str, Any], tuple[int, int]]:
    data = copy.deepcopy(TINY_YAML)
    if size == "tiny":
        return data, (16, 8)
    for stage, hp in SMALL.items():
        data[stage]["model"]["hparams"].update(hp)
    return data, (64, 32)


def _median_steps(
    ours: Callable[[], Any], theirs: Callable[[], Any], steps: int
) -> tuple[float, float]:
    """Median seconds per call of each, calls interleaved so machine load hits both alike."""
    ours(), theirs()  # warm-up
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(steps):
        for fn, out in ((ours, times[0]), (theirs, times[1])):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


@torch.no_grad()
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("tiny", "small"), default="tiny")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import bench.karlo_reference.karlo_tiny as kt

    yaml, sizes = _yaml(args.size)
    kt.TINY_YAML = yaml  # build Karlo's wrappers at the chosen sizes
    clip_dim = yaml["prior"]["model"]["hparams"]["clip_dim"]
    karlo = build_karlo_models(import_karlo(), clip_dim=clip_dim)
    for i, model in enumerate(karlo.values()):
        randomise_(model, torch.Generator().manual_seed(i))
        model.eval()
    prior = PriorNet(config_from_karlo_yaml(yaml["prior"])).eval()
    prior.load_state_dict({k[6:]: v for k, v in karlo["prior"].state_dict().items()})
    decoder = DecoderNet(config_from_karlo_yaml(yaml["decoder"], decoder_in_channels=3)).eval()
    decoder.load_state_dict({k[6:]: v for k, v in karlo["decoder"].state_dict().items()})
    ups = UpsamplerPair(config_from_karlo_yaml(yaml["upsampler"], upsampler_sizes=sizes)).eval()
    ups.load_state_dict(karlo["upsampler"].state_dict())

    g = torch.Generator().manual_seed(0)
    ctx = yaml["prior"]["model"]["hparams"]["text_ctx"]
    b, t = 2, torch.tensor([500, 500])
    emb, img = torch.randn(b, clip_dim, generator=g), torch.randn(b, clip_dim, generator=g)
    tokens, mask = torch.randn(b, ctx, clip_dim, generator=g), torch.ones(b, ctx, dtype=torch.bool)
    mask[:, 10:] = False
    dsize = yaml["decoder"]["model"]["hparams"]["image_size"]
    x64, x_up = torch.randn(b, 3, dsize, dsize), torch.randn(b, 3, sizes[0], sizes[0])
    low = resize_low_res(torch.rand(b, 3, sizes[1], sizes[1]) * 2 - 1, sizes[0])
    kp, kd, ku = karlo["prior"], karlo["decoder"].model, karlo["upsampler"].model_first_steps
    dctx = decoder.encode_context(image_emb=img, text_emb=emb, text_tokens=tokens, text_mask=mask)
    runs = {
        "prior": (
            lambda: prior(img, t, text_emb=emb, text_tokens=tokens, text_mask=mask),
            lambda: kp.model(
                img, t, text_emb=emb, text_enc=tokens, mask=mask, causal_mask=kp.causal_mask
            ),
        ),
        "decoder": (
            lambda: decoder.denoise(x64, t, dctx),
            lambda: kd(x64, t, txt_feat=emb, txt_feat_seq=tokens, mask=mask, y=img),
        ),
        "upsampler": (
            lambda: ups.model_first_steps(x_up, t, low_res=low),
            lambda: ku(x_up, t, low_res=low),
        ),
    }
    print(f"size={args.size} threads={args.threads} batch={b} steps={args.steps}")
    for stage, (ours, theirs) in runs.items():
        a, k = _median_steps(ours, theirs, args.steps)
        print(f"{stage:<10} ours {a * 1e3:8.2f} ms  karlo {k * 1e3:8.2f} ms  speed-up {k / a:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
