"""Scene probes: an auxiliary CLIP training loss that reads the scene back from the embedding.

Contrastive learning on a 2-core CPU budget learns colour first and shape and position late:
after 236 steps (20 minutes) a linear probe on the image embedding read colour 99.7% right but
shape 31% and position 12% (chance: 20% and 11%), so the decoder, which sees only that
embedding, could not learn them either. The probes are linear heads on the normalised image
embedding that predict, for each cell of the 3x3 position grid, the colour, shape and size of
the object centred there (or "none") and its exact centre and extent, plus the background.
Their loss is added to open_clip's contrastive loss while training and the heads are then
thrown away: the exported CLIP is a plain open_clip model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from worker.shapes.scenes import Scene
from worker.shapes.vocabulary import BACKGROUNDS, COLOURS, POSITIONS, SHAPES, SIZES

CELLS: tuple[str, ...] = tuple(POSITIONS)
# Per cell, each categorical head has one extra class, index 0, for "no object here".
CELL_HEADS: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLOURS), "shape": SHAPES, "size": tuple(SIZES),
}
GEOMETRY = 3  # cx, cy, extent of the object in the cell, fractions of the side
# The heads read the unit-norm embedding times this: at scale 1 their logits start near zero
# and grow slowly (measured: a position probe still at 22% after 400 steps).
INPUT_SCALE = 16.0


def _cell_index(scene_object_position: str) -> int:
    return CELLS.index(scene_object_position)


def scene_targets(scenes: Sequence[Scene], device: torch.device | str = "cpu") -> dict[str, Tensor]:
    """Targets of the probes for a batch of scenes.

    Returns "background" (B,), "<attr>" (B, 9) class ids (0 = no object in the cell),
    "geometry" (B, 9, 3) and "occupied" (B, 9) bool. When two objects share a cell, the
    larger one is the cell's target.
    """
    b, n = len(scenes), len(CELLS)
    out = {name: torch.zeros(b, n, dtype=torch.long) for name in CELL_HEADS}
    geometry = torch.zeros(b, n, GEOMETRY)
    occupied = torch.zeros(b, n, dtype=torch.bool)
    background = torch.zeros(b, dtype=torch.long)
    backgrounds = tuple(BACKGROUNDS)
    for i, scene in enumerate(scenes):
        background[i] = backgrounds.index(scene.background)
        for obj in sorted(scene.objects, key=lambda o: o.extent):  # larger one written last
            c = _cell_index(obj.position)
            for name, words in CELL_HEADS.items():
                out[name][i, c] = words.index(getattr(obj, name)) + 1
            geometry[i, c] = torch.tensor([obj.cx, obj.cy, obj.extent])
            occupied[i, c] = True
    targets = {**out, "geometry": geometry, "occupied": occupied, "background": background}
    return {k: v.to(device) for k, v in targets.items()}


class SceneProbes(nn.Module):
    """Linear heads from a (scaled, unit-norm) CLIP image embedding (B, D) to every target."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        n = len(CELLS)
        self.background = nn.Linear(embed_dim, len(BACKGROUNDS))
        self.cells = nn.ModuleDict(
            {name: nn.Linear(embed_dim, n * (len(words) + 1)) for name, words in CELL_HEADS.items()}
        )
        self.geometry = nn.Linear(embed_dim, n * GEOMETRY)

    def forward(self, embedding: Tensor) -> dict[str, Tensor]:
        b, n = embedding.shape[0], len(CELLS)
        out = {"background": self.background(embedding)}
        for name, head in self.cells.items():
            out[name] = head(embedding).view(b, n, -1)  # (B, 9, classes + 1)
        out["geometry"] = self.geometry(embedding).view(b, n, GEOMETRY)
        return out

    def loss(
        self, embedding: Tensor, targets: dict[str, Tensor]
    ) -> tuple[Tensor, dict[str, float]]:
        """Mean cross-entropy over every head plus the geometry error of occupied cells;
        also each head's accuracy, for the training log."""
        pred = self.forward(INPUT_SCALE * embedding.float())
        ce = nn.functional.cross_entropy
        total = ce(pred["background"], targets["background"])
        metrics = {}
        for name in CELL_HEADS:
            logits = pred[name]
            total = total + ce(logits.flatten(0, 1), targets[name].flatten())
            right = logits.argmax(-1) == targets[name]
            metrics[f"probe_{name}"] = float(right.all(dim=1).float().mean())
        occupied = targets["occupied"]
        if bool(occupied.any()):
            err = (pred["geometry"] - targets["geometry"])[occupied]
            total = total + 10.0 * err.pow(2).mean()
        return total, metrics


class ClipWithProbes(nn.Module):
    """The open_clip model being trained together with its probe heads (one optimizer, one EMA).

    Its state dict holds "clip.*" (the open_clip model) and "probes.*".
    """

    def __init__(self, clip: nn.Module, embed_dim: int) -> None:
        super().__init__()
        self.clip = clip
        self.probes = SceneProbes(embed_dim)


def clip_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The open_clip part of a ClipWithProbes state dict (or a plain open_clip one, unchanged)."""
    if not any(k.startswith("clip.") for k in state):
        return state
    return {k.removeprefix("clip."): v for k, v in state.items() if k.startswith("clip.")}
