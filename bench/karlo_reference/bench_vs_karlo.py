"""Whole renders side by side: our pipeline and kakaobrain/karlo's, same tiny configs and weights.

Usage, from the repository root (needs the .karlo checkout, see README.md):
    .venv/bin/python -m bench.karlo_reference.bench_vs_karlo [--threads 2] [--repeats 5] \
        [--batches 1,4] [--steps 10,10,4]

Both sides get the same tiny Karlo-layout networks (VS_KARLO_YAML: 32 px decoder, 32 -> 64 px
improved-SR pair) with the same seeded random weights, the same random tiny CLIP (ours, as
Karlo's CLIP wrapper needs OpenAI's `clip` package), the same prompts and step counts, DDPM
everywhere with Karlo's respacing, guidance 4 (prior) and 8 (decoder), one prior sample per
image (Karlo's n_samples = 1) and no autocast. Karlo's side replays its T2ISampler.__call__:
prior -> decoder -> clamp -> bicubic resize -> improved-SR loop (its forward() only allows
7 steps, so the loop it wraps is called directly). Ours is worker.unclip.render.render with a
3-channel decoder (Karlo's) and, as a third column, the 7-channel inpainting layout (the same
weights zero-padded) that the service runs. Runs alternate so machine load hits all alike;
reports the median wall and process-CPU seconds per image.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from typing import Any

import PIL.Image
import torch
import torchvision.transforms.functional as TVF
from torchvision.transforms import InterpolationMode

import bench.karlo_reference.karlo_tiny as karlo_tiny
from bench.karlo_reference.karlo_tiny import build_karlo_models, import_karlo, randomise_
from worker.unclip.clip_encoder import ClipEncoder
from worker.unclip.family import Family, FamilyDefaults
from worker.unclip.images import to_pil_images
from worker.unclip.karlo_configs import config_from_karlo_yaml
from worker.unclip.nets import DecoderNet, PriorNet, UpsamplerPair, pad_decoder_input_channels
from worker.unclip.reference_family import reference_configs
from worker.unclip.render import render
from worker.unclip.render_spec import RenderSpec, StageSteps

PROMPT = "a red cube on a blue ball"
SIZES = (64, 32)  # upsampler (image_size, low_res_size)
HPARAMS = {
    "prior": {"text_ctx": 77, "xf_width": 64, "xf_layers": 2, "xf_heads": 2, "clip_dim": 32},
    "decoder": {
        "image_size": 32,
        "num_channels": 32,
        "num_res_blocks": 1,
        "channel_mult": "1,1,1",  # Karlo needs 2 ** (levels + 2) == image_size
        "attention_resolutions": "16,8",
        "num_head_channels": 32,
        "clip_dim": 32,
        "text_ctx": 77,
        "xf_width": 64,
    },
    "upsampler": {"channels": 32, "depth": 1, "channels_multiple": [1, 1]},
}


def vs_karlo_yaml() -> dict[str, Any]:
    """Karlo's tiny YAML with the sizes above."""
    data = copy.deepcopy(karlo_tiny.TINY_YAML)
    for stage, hp in HPARAMS.items():
        data[stage]["model"]["hparams"].update(hp)
    return data


def build_both(seed: int) -> tuple[dict[str, Any], Family, Family]:
    """Karlo's three modules and our families (3- and 7-channel decoder) with equal weights."""
    yaml = vs_karlo_yaml()
    karlo_tiny.TINY_YAML = yaml  # build_karlo_models reads the module's TINY_YAML
    karlo = build_karlo_models(import_karlo(), clip_dim=32)
    for i, model in enumerate(karlo.values()):
        randomise_(model, torch.Generator().manual_seed(seed + i))
        model.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clip = ClipEncoder.build(reference_configs()[0])
    prior = PriorNet(config_from_karlo_yaml(yaml["prior"]))
    prior.load_state_dict({k[6:]: v for k, v in karlo["prior"].state_dict().items()})
    ups = UpsamplerPair(config_from_karlo_yaml(yaml["upsampler"], upsampler_sizes=SIZES))
    ups.load_state_dict(karlo["upsampler"].state_dict())
    families = []
    for channels in (3, 7):
        decoder = DecoderNet(config_from_karlo_yaml(yaml["decoder"], decoder_in_channels=channels))
        state = {k[6:]: v for k, v in karlo["decoder"].state_dict().items()}
        decoder.load_state_dict(pad_decoder_input_channels(state, channels))
        families.append(
            Family(
                name=f"vs-karlo-{channels}ch",
                clip=clip,
                prior=prior.eval(),
                prior_mean=karlo["prior"].clip_mean[0].clone(),
                prior_std=karlo["prior"].clip_std[0].clone(),
                decoder=decoder.eval(),
                upsampler=ups.eval(),
                defaults=FamilyDefaults(prior_candidates=1),
            )
        )
    return karlo, families[0], families[1]


def karlo_render(
    karlo: dict[str, Any], clip: ClipEncoder, batch: int, steps: StageSteps
) -> list[PIL.Image.Image]:
    """Karlo's T2ISampler.__call__ on CPU without autocast, our CLIP in place of its own."""
    prompts = [PROMPT] * batch + [""] * batch  # conditional rows, then unconditional
    enc = clip.encode_text(prompts)
    tokens, _ = clip.tokenize(prompts)
    prior_scales, decoder_scales = torch.full((batch,), 4.0), torch.full((batch,), 8.0)
    img_feat = karlo["prior"](
        enc.pooled, enc.tokens, enc.mask, prior_scales, timestep_respacing=str(steps.prior)
    )
    low = karlo["decoder"](
        enc.pooled,
        enc.tokens,
        tokens,
        enc.mask,
        img_feat,
        cf_guidance_scales=decoder_scales,
        timestep_respacing=str(steps.decoder),
    ).clamp(-1, 1)
    up_in = TVF.resize(low, list(SIZES[:1] * 2), InterpolationMode.BICUBIC, antialias=True)
    sr = karlo["upsampler"]
    sample_fn = sr.get_sample_fn(str(steps.upsampler))
    for out in sample_fn(
        sr.model_first_steps,
        sr.model_last_step,
        shape=up_in.shape,
        clip_denoised=True,
        model_kwargs={"low_res": up_in},
    ):
        final = out["sample"]
    return to_pil_images(final.clamp(-1, 1))


def _ours(family: Family, batch: int, steps: StageSteps) -> Callable[[], Any]:
    spec = RenderSpec(
        kind="generate",
        prompt=PROMPT,
        n=batch,
        seed=0,
        steps=steps,
        sampler="ddpm",
        prior_guidance=4.0,
        decoder_guidance=8.0,
    )
    return lambda: render(family, [spec])


def medians(
    runs: dict[str, Callable[[], Any]], repeats: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """(wall seconds, process CPU seconds) of each run, interleaved, after one warm-up each.

    CPU seconds are what a run costs whatever else the machine runs; on a shared machine
    wall seconds mostly measure how long the scheduler kept the process waiting.
    """
    for fn in runs.values():
        fn()
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            cpu[name].append(time.process_time() - start_cpu)
            wall[name].append(time.perf_counter() - start)
    return wall, cpu


@torch.inference_mode()
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--steps", default="10,10,4", type=StageSteps.parse)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    karlo, ours3, ours7 = build_both(seed=0)
    print(
        f"threads {torch.get_num_threads()}, steps {args.steps}, ddpm, guidance 4/8, "
        f"32 px decoder, 32 -> 64 px upsampler; median seconds per image"
    )
    for batch in (int(b) for b in args.batches.split(",")):
        runs = {
            "karlo": lambda b=batch: karlo_render(karlo, ours3.clip, b, args.steps),
            "ours-3ch": _ours(ours3, batch, args.steps),
            "ours-7ch": _ours(ours7, batch, args.steps),
        }
        for kind, times in zip(("wall", "cpu"), medians(runs, args.repeats), strict=True):
            per = {name: statistics.median(t) / batch for name, t in times.items()}
            cols = "  ".join(f"{name} {value:.3f}" for name, value in per.items())
            print(
                f"batch {batch} {kind:>4} s/image: {cols}  | karlo/ours-3ch "
                f"{per['karlo'] / per['ours-3ch']:.2f}x, karlo/ours-7ch "
                f"{per['karlo'] / per['ours-7ch']:.2f}x",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
