"""Generated images of a ShapeEval run on disk, with what the analyser read in each."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image

from worker.evaluation.prompts import EvalPrompt
from worker.shapes.analyser import analyse_image


def _reading(prompt: EvalPrompt, image: np.ndarray) -> dict[str, Any]:
    scene = analyse_image(image)
    objects = [
        {
            "colour": o.colour,
            "shape": o.shape,
            "size": o.size,
            "position": o.position,
            "fit_error": round(o.fit_error, 3),
        }
        for o in scene.objects
    ]
    return {
        "index": prompt.index,
        "prompt": prompt.text,
        "group": prompt.group,
        "split": prompt.split,
        "background": scene.background,
        "objects": objects,
    }


def _grid(images: Sequence[np.ndarray], columns: int) -> np.ndarray:
    size = images[0].shape[0]
    rows = -(-len(images) // columns)
    grid = np.full((rows * size, columns * size, 3), 255, dtype=np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        grid[r * size : (r + 1) * size, c * size : (c + 1) * size] = image
    return grid


def save_samples(
    folder: str | Path,
    prompts: Sequence[EvalPrompt],
    images: Sequence[np.ndarray],
    *,
    grid_columns: int = 16,
) -> Path:
    """Write NNN.png per prompt, readings.jsonl, and grid.png of all images in prompt order."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    with (root / "readings.jsonl").open("w") as lines:
        for prompt, image in zip(prompts, images, strict=True):
            PIL.Image.fromarray(image).save(root / f"{prompt.index:03d}.png")
            lines.write(json.dumps(_reading(prompt, image)) + "\n")
    if images:
        PIL.Image.fromarray(_grid(images, grid_columns)).save(root / "grid.png")
    return root
