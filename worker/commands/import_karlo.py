"""`unclip import-karlo SRC_DIR DEST_DIR`: turn Karlo v1 alpha's files into a model family."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DTYPE_NAMES = ("fp16", "bf16", "fp32")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "src_dir",
        type=Path,
        help="folder with Karlo's prior*.ckpt, decoder*.ckpt, *sr*.ckpt, *stats*.th and ViT-*.pt",
    )
    parser.add_argument("dest_dir", type=Path, help="new model family folder (must not exist)")
    parser.add_argument(
        "--config-dir",
        type=Path,
        default=None,
        help="Karlo's configs/ folder (its YAML files); without it, sizes come from the "
        "checkpoints' tensor shapes",
    )
    parser.add_argument(
        "--dtype", choices=DTYPE_NAMES, default="fp16", help="stored weight type (default fp16)"
    )
    parser.add_argument(
        "--clip-config",
        type=Path,
        default=None,
        help="a clip.json (ClipConfig) when the CLIP file is not OpenAI ViT-L/14",
    )
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="load checkpoints that hold Python objects (they can run code: trusted files only)",
    )


def _check(args: argparse.Namespace) -> str | None:
    """The first problem with the arguments, naming the bad value, or None."""
    if not args.src_dir.is_dir():
        return f"SRC_DIR {args.src_dir} is not a folder"
    if args.dest_dir.exists():
        return f"DEST_DIR {args.dest_dir} already exists; give a new folder"
    if args.config_dir is not None and not args.config_dir.is_dir():
        return f"--config-dir {args.config_dir} is not a folder"
    if args.clip_config is not None and not args.clip_config.is_file():
        return f"--clip-config {args.clip_config} is not a file"
    return None


def run(args: argparse.Namespace) -> int:
    problem = _check(args)
    if problem is not None:
        print(f"unclip import-karlo: {problem}", file=sys.stderr)
        return 2
    from shared.console_progress import StepBar
    from worker.unclip.configs import ClipConfig, ConfigError
    from worker.unclip.karlo_import import DTYPES, IMPORT_PARTS, KarloImportError, import_karlo

    try:
        clip = None
        if args.clip_config is not None:
            clip = ClipConfig.from_dict(json.loads(args.clip_config.read_text()))
        with StepBar(len(IMPORT_PARTS), "import-karlo") as bar:
            dest = import_karlo(
                args.src_dir,
                args.dest_dir,
                config_dir=args.config_dir,
                dtype=DTYPES[args.dtype],
                clip_config=clip,
                allow_pickle=args.allow_pickle,
                on_part=bar.advance_to,
            )
    except (KarloImportError, ConfigError, json.JSONDecodeError) as exc:
        print(f"unclip import-karlo: {exc}", file=sys.stderr)
        return 1
    except (OSError, RuntimeError, EOFError) as exc:  # torch.load of a truncated download
        print(f"unclip import-karlo: a checkpoint in {args.src_dir} cannot be read ({exc}); "
              "is a file truncated (an interrupted download)?", file=sys.stderr)  # fmt: skip
        return 1
    print(f"wrote model family {dest}")
    return 0
