"""Benchmark of the shapes world: batch speed, analyser accuracy on clean and soft renders.

Run: .venv/bin/python bench/shapeeval_analyser.py [--scenes 300]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from worker.shapes.analyser import AnalysedScene, analyse_image, relation_of
from worker.shapes.dataset import make_batch
from worker.shapes.rendering import render_scene
from worker.shapes.scenes import Scene, sample_scene

DEGRADATIONS = ((0.0, 0.0), (0.7, 0.0), (1.2, 0.0), (0.0, 8.0), (0.8, 8.0), (1.2, 12.0))


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (edge padding) of an (H, W, 3) image."""
    if sigma <= 0:
        return image.astype(np.float32)
    radius = int(np.ceil(3 * sigma))
    x = np.arange(-radius, radius + 1)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k /= k.sum()
    pad = np.pad(image.astype(np.float32), ((radius, radius), (radius, radius), (0, 0)), "edge")
    h, w = image.shape[:2]
    rows = sum(k[i] * pad[i : i + h] for i in range(len(k)))
    return np.asarray(sum(k[i] * rows[:, i : i + w] for i in range(len(k))))


def exactly_right(scene: Scene, found: AnalysedScene) -> bool:
    """Background, every object's four attributes and the relation all recovered."""
    want = sorted((o.colour, o.shape, o.size, o.position) for o in scene.objects)
    got = sorted((o.colour, o.shape, o.size, o.position) for o in found.objects)
    if found.background != scene.background or want != got:
        return False
    if scene.relation is None:
        return True
    first = (scene.objects[0].colour, scene.objects[0].shape)
    a, b = found.objects
    if (a.colour, a.shape) != first:
        a, b = b, a
    return relation_of(a, b) == scene.relation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenes", type=int, default=300, help="scenes per setting")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    make_batch(rng, 64)
    make_batch(rng, 64, size=32, sizes=(64,))
    for label, kwargs in (("64 px", {}), ("32 + 64 px", {"size": 32, "sizes": (64,)})):
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(20):
            make_batch(rng, 64, **kwargs)  # type: ignore[arg-type]
        print(
            f"make_batch(64 scenes, {label}): {(time.process_time() - cpu) / 20 * 1000:.1f} ms "
            f"CPU ({(time.perf_counter() - wall) / 20 * 1000:.1f} ms wall)"
        )
    for size in (64, 32):
        for sigma, noise in DEGRADATIONS if size == 64 else DEGRADATIONS[:1]:
            rng = np.random.default_rng(1)
            right, start = 0, time.process_time()
            for i in range(args.scenes):
                scene = sample_scene(rng, n_objects=1 + i % 2)
                image = blur(render_scene(scene, size), sigma) + rng.normal(
                    0, noise, (size, size, 3)
                )
                right += exactly_right(scene, analyse_image(np.clip(image, 0, 255)))
            ms = (time.process_time() - start) / args.scenes * 1000
            print(
                f"analyser {size} px, blur sigma {sigma}, noise sigma {noise}: "
                f"{right}/{args.scenes} scenes exactly right ({ms:.1f} ms CPU per scene)"
            )


if __name__ == "__main__":
    main()
