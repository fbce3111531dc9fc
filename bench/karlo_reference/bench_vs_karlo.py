"""Whole renders side by side: our pipeline and kakaobrain/karlo's, same configs and weights.

Usage, from the repository root (needs the .karlo checkout, see README.md):
    .venv/bin/python -m bench.karlo_reference.bench_vs_karlo [--threads 2] [--repeats 5] \
        [--batches 1,4] [--steps 10,10,4] [--configs karlo-tiny,shapes] [--json OUT]

Two configs, each through both codes with the same weights, fp32, no autocast, the same
prompt, our CLIP on both sides (Karlo's CLIP wrapper needs OpenAI's `clip` package), DDPM
everywhere with Karlo's respacing ("N" steps), guidance 4 (prior) and 8 (decoder), one
prior sample per image (Karlo's n_samples = 1; ours set to prior_candidates = 1):

- "karlo-tiny": Karlo's layout at tiny sizes (vs_karlo_yaml: 32 px decoder, 32 -> 64 px
  improved-SR pair), seeded random weights. Karlo's side replays its T2ISampler.__call__:
  prior -> decoder -> clamp -> bicubic resize -> improved-SR loop (its forward() only
  allows 7 steps, so the loop it wraps is called directly). Ours: render() with Karlo's
  3-channel decoder ("ours-3ch", the equal-work column written to --json) and the same
  weights zero-padded to the service's 7-channel inpainting layout ("ours-7ch").
- "shapes": the shipped models/shapes networks in Karlo's classes, adapted as
  karlo_shapes.py says (7-channel v decoder wrapped for Karlo's eps diffusion, one-network
  x0 upsampler with scale-shift norm sampled by Karlo's p_sample_loop).

Runs alternate so machine load hits all alike; reports the median wall and process-CPU
seconds per image. --json writes {"rows": [{"config", "batch", "karlo_s_per_image",
"ours_s_per_image"}]} (wall seconds) plus "cpu_rows" in CPU seconds and the command.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import PIL.Image
import torch
import torchvision.transforms.functional as TVF
from torchvision.transforms import InterpolationMode

import bench.karlo_reference.karlo_tiny as karlo_tiny
from bench.karlo_reference.karlo_shapes import build_karlo_shapes
from bench.karlo_reference.karlo_tiny import REPO_ROOT, build_karlo_models, import_karlo, randomise_
from worker.unclip.clip_encoder import ClipEncoder
from worker.unclip.family import Family, FamilyDefaults, load_family
from worker.unclip.images import to_pil_images
from worker.unclip.karlo_configs import config_from_karlo_yaml
from worker.unclip.nets import DecoderNet, PriorNet, UpsamplerPair, pad_decoder_input_channels
from worker.unclip.reference_family import reference_configs
from worker.unclip.render import render
from worker.unclip.render_spec import RenderSpec, StageSteps, StepProgress

PROMPT = "a red cube on a blue ball"
CONFIGS = ("karlo-tiny", "shapes")
SHAPES_FAMILY = REPO_ROOT / "models/shapes"
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
    karlo["upsample"] = tiny_upsample(karlo.pop("upsampler"))
    return karlo, families[0], families[1]


@dataclass
class Config:
    """One compared config: Karlo's modules and our families (columns) with equal weights."""

    name: str
    karlo: dict[str, Any]
    ours: dict[str, Family]  # column name -> family; the first is the equal-work one
    final_size: int


def build_config(name: str, seed: int = 0) -> Config:
    """ "karlo-tiny" (Karlo's layout, random weights) or "shapes" (models/shapes, adapted)."""
    if name == "karlo-tiny":
        karlo, ours3, ours7 = build_both(seed)
        for ours in (ours3, ours7):
            ours.frozen_graphs_trace_after_calls = 0  # steady state: trace on first use
        return Config(name, karlo, {"ours-3ch": ours3, "ours-7ch": ours7}, SIZES[0])
    if name == "shapes":
        family = load_family(SHAPES_FAMILY)
        family.defaults = replace(family.defaults, prior_candidates=1)  # Karlo's n_samples 1
        family.frozen_graphs_trace_after_calls = 0  # steady state: trace on first use
        karlo = build_karlo_shapes(import_karlo(), family)
        return Config(name, karlo, {"ours": family}, family.final_size)
    raise SystemExit(f"unknown config {name!r}; allowed: {', '.join(CONFIGS)}")


def tiny_upsample(sr: Any) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """Karlo's improved-SR loop (its forward() only allows 7 steps, so the loop is called)."""

    def sample(up_in: torch.Tensor, steps: int) -> torch.Tensor:
        sample_fn = sr.get_sample_fn(str(steps))
        for out in sample_fn(
            sr.model_first_steps,
            sr.model_last_step,
            shape=up_in.shape,
            clip_denoised=True,
            model_kwargs={"low_res": up_in},
        ):
            final = out["sample"]
        return final

    return sample


def karlo_render(
    karlo: dict[str, Any],
    clip: ClipEncoder,
    batch: int,
    steps: StageSteps,
    size: int,
    marks: list[float] | None = None,
) -> list[PIL.Image.Image]:
    """Karlo's T2ISampler.__call__ on CPU without autocast, our CLIP in place of its own.

    karlo: {"prior", "decoder": Karlo's wrapper modules, "upsample": fn(up_in, steps)}.
    marks: if given, gets perf_counter() at the end of each stage (CLIP + prior, decoder).
    """
    prompts = [PROMPT] * batch + [""] * batch  # conditional rows, then unconditional
    enc = clip.encode_text(prompts)
    tokens, _ = clip.tokenize(prompts)
    prior_scales, decoder_scales = torch.full((batch,), 4.0), torch.full((batch,), 8.0)
    img_feat = karlo["prior"](
        enc.pooled, enc.tokens, enc.mask, prior_scales, timestep_respacing=str(steps.prior)
    )
    if marks is not None:
        marks.append(time.perf_counter())
    low = karlo["decoder"](
        enc.pooled,
        enc.tokens,
        tokens,
        enc.mask,
        img_feat,
        cf_guidance_scales=decoder_scales,
        timestep_respacing=str(steps.decoder),
    ).clamp(-1, 1)
    if marks is not None:
        marks.append(time.perf_counter())
    up_in = TVF.resize(low, [size, size], InterpolationMode.BICUBIC, antialias=True)
    return to_pil_images(karlo["upsample"](up_in, steps.upsampler).clamp(-1, 1))


def ours_render(family: Family, batch: int, steps: StageSteps) -> Callable[[], Any]:
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


def _rows(
    config: Config, batch: int, steps: StageSteps, repeats: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Median (wall, CPU) seconds per image of Karlo and each of our columns at `batch`."""
    first = next(iter(config.ours.values()))
    runs = {
        "karlo": lambda: karlo_render(config.karlo, first.clip, batch, steps, config.final_size)
    }
    runs.update({col: ours_render(family, batch, steps) for col, family in config.ours.items()})
    wall, cpu = medians(runs, repeats)
    per_wall = {name: statistics.median(t) / batch for name, t in wall.items()}
    per_cpu = {name: statistics.median(t) / batch for name, t in cpu.items()}
    return per_wall, per_cpu


def stage_seconds(
    config: Config, batch: int, steps: StageSteps, repeats: int
) -> dict[str, dict[str, float]]:
    """Median seconds per image of each stage, Karlo's and each of our columns, interleaved.

    A stage ends at its last step (ours: the progress callback; Karlo's: after its call);
    the prior stage includes encoding the prompts with CLIP.
    """
    first = next(iter(config.ours.values()))
    spec = RenderSpec(kind="generate", prompt=PROMPT, n=batch, seed=0, steps=steps,
                      sampler="ddpm", prior_guidance=4.0, decoder_guidance=8.0)  # fmt: skip
    stages = ("prior", "decoder", "upsampler")

    def karlo() -> list[float]:
        marks = [time.perf_counter()]
        karlo_render(config.karlo, first.clip, batch, steps, config.final_size, marks)
        return [*marks, time.perf_counter()]

    def ours(family: Family) -> list[float]:
        last: dict[str, float] = {}

        def note(progress: StepProgress) -> None:
            last[progress.stage] = time.perf_counter()

        start = time.perf_counter()
        render(family, [spec], callback=note)
        return [start, last["prior"], last["decoder"], time.perf_counter()]

    runs: dict[str, Callable[[], list[float]]] = {"karlo": karlo}
    runs.update({col: (lambda f=family: ours(f)) for col, family in config.ours.items()})
    for fn in runs.values():
        fn()
    samples: dict[str, list[list[float]]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            marks = fn()
            samples[name].append([b - a for a, b in zip(marks, marks[1:], strict=False)])
    return {
        name: {
            stage: round(statistics.median(row[i] for row in rows) / batch, 4)
            for i, stage in enumerate(stages)
        }
        for name, rows in samples.items()
    }


@torch.inference_mode()
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--steps", default="10,10,4", type=StageSteps.parse)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--json", type=Path, default=None, help="write the rows to this file")
    parser.add_argument("--stages", action="store_true", help="also time each stage")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = [build_config(name) for name in args.configs.split(",")]
    print(
        f"threads {torch.get_num_threads()}, steps {args.steps}, ddpm, guidance 4/8, fp32, "
        f"one prior sample; load {os.getloadavg()[0]:.1f}; median seconds per image"
    )
    rows: list[dict[str, Any]] = []
    cpu_rows: list[dict[str, Any]] = []
    stage_rows: list[dict[str, Any]] = []
    for config in configs:
        for batch in (int(b) for b in args.batches.split(",")):
            wall, cpu = _rows(config, batch, args.steps, args.repeats)
            equal = next(iter(config.ours))  # the column whose work equals Karlo's
            for kind, per, out in (("wall", wall, rows), ("cpu", cpu, cpu_rows)):
                out.append(
                    {
                        "config": config.name,
                        "batch": batch,
                        "karlo_s_per_image": round(per["karlo"], 5),
                        "ours_s_per_image": round(per[equal], 5),
                    }
                )
                cols = "  ".join(f"{name} {value:.3f}" for name, value in per.items())
                ratios = ", ".join(
                    f"karlo/{name} {per['karlo'] / per[name]:.2f}x" for name in config.ours
                )
                print(f"{config.name} batch {batch} {kind:>4}: {cols} | {ratios}", flush=True)
            if args.stages:
                per_stage = stage_seconds(config, batch, args.steps, args.repeats)
                stage_rows.append({"config": config.name, "batch": batch, **per_stage})
                print(f"{config.name} batch {batch} wall s/image by stage: {per_stage}", flush=True)
    if args.json:
        result = {
            "rows": rows,
            "cpu_rows": cpu_rows,  # the same, in process CPU seconds per image
            **({"stages_wall_s_per_image": stage_rows} if args.stages else {}),
            "command": "python -m bench.karlo_reference.bench_vs_karlo " + " ".join(sys.argv[1:]),
            "threads": torch.get_num_threads(),
            "steps": [args.steps.prior, args.steps.decoder, args.steps.upsampler],
            "load_average_end": [round(v, 2) for v in os.getloadavg()],
            "torch": torch.__version__,
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
