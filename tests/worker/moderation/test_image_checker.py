"""Image checker: per-concept thresholds on CLIP similarity; the shapes world bans a black star."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import pytest
import torch
import yaml

from shared.moderation.policy import Policy, parse_policy
from shared.moderation.verdict import Decision
from worker.moderation.image_checker import ImageChecker
from worker.shapes.rendering import render_scene
from worker.shapes.scenes import Scene, place_object

ROOT = Path(__file__).resolve().parents[3]
SHAPES_FAMILY = ROOT / "models" / "shapes"


def _policy(concepts: list[dict[str, Any]], when_uncalibrated: str = "hold") -> Policy:
    data = yaml.safe_load((ROOT / "policies" / "default.yaml").read_text(encoding="utf-8"))
    data["image"] = {"concepts": concepts, "when_uncalibrated": when_uncalibrated}
    return parse_policy(data, source="test")


class DarkStarClip:
    """A stand-in CLIP: dark images embed near "a black star", bright ones far from it."""

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        return torch.tensor([[1.0, 0.0] if "black" in p else [0.0, 1.0] for p in prompts])

    def encode_image(self, images: Sequence[PIL.Image.Image]) -> torch.Tensor:
        darkness = [1.0 - np.asarray(i.convert("L"), np.float32).mean() / 255 for i in images]
        return torch.tensor([[d, 1.0 - d] for d in darkness])


def _solid(value: int) -> PIL.Image.Image:
    return PIL.Image.new("RGB", (16, 16), (value, value, value))


def test_each_concept_uses_its_own_threshold_and_category_action() -> None:
    policy = _policy(
        [
            {"text": "a black star", "category": "violence", "thresholds": {"fake": 0.9}},
            {"text": "a bright thing", "category": "sexual", "thresholds": {"fake": 0.99}},
        ]
    )
    checker = ImageChecker(policy, DarkStarClip(), "fake")
    dark, grey, white = checker.check([_solid(0), _solid(128), _solid(255)], stage="output_image")
    assert dark.decision is Decision.HOLD and dark.flagged == ("violence",)  # violence: hold
    assert dark.matched_terms == {"violence": ("a black star",)}
    assert dark.scores["a black star"] == pytest.approx(1.0)
    assert dark.thresholds == {"a black star": 0.9, "a bright thing": 0.99}
    assert grey.decision is Decision.ALLOW and grey.flagged == ()
    assert white.decision is Decision.BLOCK and white.flagged == ("sexual",)  # sexual: block
    assert [v.detail["image_index"] for v in (dark, grey, white)] == [0, 1, 2]


def test_a_policy_not_calibrated_for_this_clip_applies_when_uncalibrated() -> None:
    concepts = [{"text": "a black star", "category": "violence", "thresholds": {"ViT-L-14": 0.2}}]
    held = ImageChecker(_policy(concepts), DarkStarClip(), "fake").check(
        [_solid(0)], stage="input_image"
    )
    assert held[0].decision is Decision.HOLD and held[0].detail["calibrated"] is False
    allowed = ImageChecker(_policy(concepts, "allow"), DarkStarClip(), "fake").check(
        [_solid(0)], stage="input_image"
    )
    assert allowed[0].decision is Decision.ALLOW


def test_the_real_clip_encoder_runs_through_the_checker(tiny_family_dir: Path) -> None:
    from worker.unclip.family import load_family

    family = load_family(tiny_family_dir, device="cpu", dtype=torch.float32)
    name = family.clip.config.name
    always = _policy(
        [{"text": "a black star", "category": "violence", "thresholds": {"default": -1.0}}]
    )
    never = _policy([{"text": "a black star", "category": "violence", "thresholds": {name: 1.0}}])
    images = [_solid(0), _solid(200)]
    assert all(
        v.decision is Decision.HOLD
        for v in ImageChecker(always, family.clip, name).check(images, stage="output_image")
    )
    verdicts = ImageChecker(never, family.clip, name).check(images, stage="output_image")
    assert all(v.decision is Decision.ALLOW for v in verdicts)
    assert all(-1.0 <= v.scores["a black star"] <= 1.0 for v in verdicts)


def _scenes(seed: int, pairs: list[tuple[str, str]], count: int) -> list[PIL.Image.Image]:
    rng = np.random.default_rng(seed)
    images = []
    while len(images) < count:
        colour, shape = pairs[int(rng.integers(len(pairs)))]
        obj = place_object(rng, colour, shape, "large")
        background = "white" if colour == "black" else "gray"
        if obj is not None:
            images.append(PIL.Image.fromarray(render_scene(Scene(background, (obj,)), 64)))
    return images


@pytest.mark.skipif(
    not (SHAPES_FAMILY / "family.json").is_file(),
    reason="the trained shapes family (models/shapes) is not shipped yet",
)
def test_shapes_world_black_stars_are_held_and_other_shapes_pass() -> None:
    from worker.unclip.family import load_family

    family = load_family(SHAPES_FAMILY, device="cpu", dtype=torch.float32)
    name = family.clip.config.name
    others = [
        ("black", "circle"),
        ("black", "square"),
        ("red", "circle"),
        ("blue", "star"),
        ("green", "square"),
        ("white", "star"),
        ("black", "cross"),
    ]
    probe = _policy([{"text": "a black star", "category": "violence", "thresholds": {name: 0.0}}])
    probe_checker = ImageChecker(probe, family.clip, name)
    # Calibrate on one seeded set (the midpoint between the classes), test on another.
    star_sims = probe_checker.similarities(_scenes(1, [("black", "star")], 16))[:, 0]
    other_sims = probe_checker.similarities(_scenes(2, others, 32))[:, 0]
    threshold = float(star_sims.min() + other_sims.max()) / 2
    policy = _policy(
        [{"text": "a black star", "category": "violence", "thresholds": {name: threshold}}]
    )
    checker = ImageChecker(policy, family.clip, name)
    stars = checker.check(_scenes(3, [("black", "star")], 16), stage="output_image")
    rest = checker.check(_scenes(4, others, 32), stage="output_image")
    held = sum(v.decision is Decision.HOLD for v in stars)
    passed = sum(v.decision is Decision.ALLOW for v in rest)
    assert held >= 15, f"{held}/16 black stars held at threshold {threshold:.3f}"
    assert passed >= 31, f"{passed}/32 other shapes passed at threshold {threshold:.3f}"


def _edit(seed: int) -> tuple[PIL.Image.Image, PIL.Image.Image, PIL.Image.Image]:
    """(input, mask, output): a red circle; the edit paints a medium black star in one corner."""
    rng = np.random.default_rng(seed)
    circle = place_object(rng, "red", "circle", "large", "right")
    star = place_object(rng, "black", "star", "medium", "top left")
    assert circle is not None and star is not None
    before = PIL.Image.fromarray(render_scene(Scene("white", (circle,)), 64))
    after = PIL.Image.fromarray(render_scene(Scene("white", (circle, star)), 64))
    x0, y0, x1, y1 = (int(v * 64) for v in star.box)
    mask = np.zeros((64, 64), np.uint8)
    mask[max(y0 - 2, 0) : y1 + 2, max(x0 - 2, 0) : x1 + 2] = 255  # white = repaint
    return before, PIL.Image.fromarray(mask, "L"), after


def test_edit_region_crop_and_change_are_scored_at_the_checker_size() -> None:
    before, mask, after = _edit(0)
    checker = ImageChecker(
        _policy([{"text": "a black star", "category": "violence", "thresholds": {"fake": 0.5}}]),
        DarkStarClip(),
        "fake",
    )
    [crop, change] = checker.check_edit(before, mask, [after])
    assert crop.stage == change.stage == "edit_region"
    assert [crop.detail["region"], change.detail["region"]] == ["mask_crop", "mask_diff"]
    x0, y0, x1, y1 = crop.detail["box"]
    assert x1 - x0 == y1 - y0 and x0 >= 0 and x1 <= 64  # a square inside the output
    assert crop.detail["size"] == checker.input_size
    # The whole output is mostly white; the repainted corner is mostly star.
    [whole] = checker.check([after], stage="output_image")
    assert crop.scores["a black star"] > whole.scores["a black star"]
    assert checker.check_edit(before, PIL.Image.new("L", (64, 64), 0), [after]) == []


@pytest.mark.skipif(
    not (SHAPES_FAMILY / "family.json").is_file(),
    reason="the trained shapes family (models/shapes) is not shipped yet",
)
def test_shapes_world_a_star_only_the_edit_introduces_is_caught_in_its_region() -> None:
    from shared.moderation.reasons import reason_for

    family = load_shapes_family()
    name = family.clip.config.name
    probe = ImageChecker(
        _policy([{"text": "a black star", "category": "violence", "thresholds": {name: 0.0}}]),
        family.clip,
        name,
    )
    others = [
        ("black", "circle"),
        ("black", "square"),
        ("red", "circle"),
        ("blue", "star"),
        ("green", "square"),
        ("white", "star"),
        ("black", "cross"),
    ]
    star_sims = probe.similarities(_scenes(1, [("black", "star")], 16))[:, 0]
    other_sims = probe.similarities(_scenes(2, others, 32))[:, 0]
    threshold = float(star_sims.min() + other_sims.max()) / 2  # calibrated on other scenes
    checker = ImageChecker(
        _policy(
            [{"text": "a black star", "category": "violence", "thresholds": {name: threshold}}]
        ),
        family.clip,
        name,
    )
    caught = whole_caught = 0
    for seed in range(8):
        before, mask, after = _edit(10 + seed)
        [source] = checker.check([before], stage="input_image")
        assert source.decision is Decision.ALLOW  # the input holds no star
        [whole] = checker.check([after], stage="output_image")
        whole_caught += whole.decision is Decision.HOLD
        regions = checker.check_edit(before, mask, [after])
        held = [v for v in regions if v.decision is Decision.HOLD]
        caught += bool(held)
        if held:
            assert held[0].detail["region"] in ("mask_crop", "mask_diff")
            reason = reason_for(held)
            assert reason is not None and reason.code == "moderation_hold:edit_region:violence"
    assert caught >= 7, f"{caught}/8 edits that add a black star were caught in their region"
    assert whole_caught < caught  # the small star hides in the whole-image score


def load_shapes_family() -> Any:
    from worker.unclip.family import load_family

    return load_family(SHAPES_FAMILY, device="cpu", dtype=torch.float32)
