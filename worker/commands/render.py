"""`unclip render PROMPT -o OUT.png`: text -> image, variation or edit in this process."""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.unclip.family import Family
    from worker.unclip.render_spec import StageSteps

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
SAMPLERS = ("ddpm", "ddim", "dpmpp_2m")  # worker.unclip.diffusion.SAMPLER_NAMES


def _steps(text: str) -> StageSteps:
    from worker.unclip.render_spec import StageSteps

    try:
        return StageSteps.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", help='the prompt ("" for a variation without text)')
    parser.add_argument("-o", "--output", required=True, type=Path, help="output PNG path")
    parser.add_argument(
        "--family",
        type=Path,
        default=None,
        help="model family directory (default: the configured one, models/shapes, if "
        "present; else the random-weight reference family)",
    )
    parser.add_argument(
        "--image", type=Path, help="input image: a variation, or with --mask an edit"
    )
    parser.add_argument(
        "--mask", type=Path, help="edit mask (RGBA: alpha 0 = repaint; grey: white)"
    )
    parser.add_argument("-n", type=_positive, default=1, help="images to render (default 1)")
    parser.add_argument("--seed", type=int, default=None, help="seed (default: random, printed)")
    parser.add_argument(
        "--steps", type=_steps, default=None, help="PRIOR,DECODER,UPSAMPLER steps, e.g. 10,10,4"
    )
    parser.add_argument("--sampler", choices=SAMPLERS, default=None, help="sampler")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="device")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32", help="weights dtype")
    parser.add_argument(
        "--reproducible", action="store_true", default=None,
        help="batch-invariant mode: an image's bytes do not depend on -n (image 0 of -n 2 is "
        "the -n 1 image), at a cost in speed (default: UNCLIP_REPRODUCIBLE, else full speed)",
    )
    parser.add_argument(
        "--size", type=_positive, default=None, metavar="SIDE",
        help="wanted side in px: the upsampler chain runs to the family's smallest native size "
        ">= SIDE, or its largest (no resize here); default: the largest, as the API's default",
    )


def _output_paths(output: Path, n: int) -> list[Path]:
    """OUT.png for one image; OUT-0.png, OUT-1.png, ... for more."""
    if n == 1:
        return [output]
    suffix = output.suffix or ".png"
    return [output.with_name(f"{output.stem}-{i}{suffix}") for i in range(n)]


def run(args: argparse.Namespace) -> int:
    from safetensors import SafetensorError

    from worker.unclip.family import FamilyError

    try:
        return _render(args)
    except (ValueError, FileNotFoundError, OSError, FamilyError) as exc:
        print(f"unclip render: error: {exc}", file=sys.stderr)
        return 2
    except SafetensorError as exc:  # a truncated or corrupt weights file of the family
        print(f"unclip render: error: a weights file of the family cannot be read ({exc}); "
              "re-export or re-copy the family", file=sys.stderr)  # fmt: skip
        return 2


def _render(args: argparse.Namespace) -> int:
    import PIL.Image

    from worker.unclip.render import render
    from worker.unclip.render_spec import RenderSpec

    if args.mask is not None and args.image is None:
        raise ValueError("--mask needs --image (the image to edit)")
    family = _load_family(args)
    image = PIL.Image.open(args.image) if args.image else None
    mask = PIL.Image.open(args.mask) if args.mask else None
    seed = secrets.randbelow(2**31) if args.seed is None else args.seed
    defaults = family.defaults
    spec = RenderSpec(
        kind="edit" if mask is not None else "variation" if image is not None else "generate",
        prompt=args.prompt,
        n=args.n,
        seed=seed,
        steps=args.steps or defaults.steps,
        sampler=args.sampler or defaults.sampler,
        prior_guidance=defaults.prior_guidance,
        decoder_guidance=defaults.decoder_guidance,
        image=image,
        mask=mask,
        size=args.size or max(family.native_sides),
        reproducible=args.reproducible,
    )
    st = spec.steps
    print(
        f"{spec.kind}: seed {seed}, steps {st.prior},{st.decoder},{st.upsampler}, "
        f"sampler {spec.sampler}",
        file=sys.stderr,
    )
    (images,) = render(family, [spec])
    for path, picture in zip(_output_paths(args.output, args.n), images, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        picture.save(path, format="PNG")
        print(path)
    return 0


def _load_family(args: argparse.Namespace) -> Family:
    import torch

    from shared.settings import get_settings
    from worker.unclip.family import FamilyError, check_family_dir, load_family
    from worker.unclip.reference_family import make_reference_family

    settings = get_settings()
    device = args.device or settings.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: this machine has no CUDA device torch can use; "
                         "use --device cpu")  # fmt: skip
    dtype = getattr(torch, DTYPES[args.dtype])
    path = args.family
    if path is None:
        try:
            path = check_family_dir(settings.family)
        except FamilyError:
            print(
                f"no model family at {settings.family}: using the random-weight reference "
                "family (images are noise-like)",
                file=sys.stderr,
            )
            reference = make_reference_family(0, device=device, dtype=dtype)
            reference.reproducible = settings.reproducible
            return reference
    print(f"model family: {path}", file=sys.stderr)
    family = load_family(path, device=device, dtype=dtype)
    # UNCLIP_REPRODUCIBLE is the default mode here as in the worker (--reproducible overrides).
    family.reproducible = settings.reproducible
    return family
