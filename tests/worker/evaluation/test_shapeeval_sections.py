"""ShapeEval's sections score a perfect renderer perfectly and a blank one at zero."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import PIL.Image
import pytest

from worker.evaluation.cases import edit_cases, variation_cases
from worker.evaluation.prompts import prompt_set, template_pairs
from worker.evaluation.report import PSNR_CAP
from worker.evaluation.sections import (
    EvalSettings,
    run_edits,
    run_generation,
    run_steps,
    run_templates,
    run_variations,
)
from worker.shapes.analyser import analyse_image
from worker.shapes.caption_parser import parse_caption
from worker.shapes.captions import HELDOUT_TEMPLATES, draw_caption
from worker.shapes.grounding import scene_for
from worker.shapes.rendering import render_scene
from worker.shapes.scenes import Scene, SceneObject
from worker.unclip.render_spec import RenderSpec, StageSteps

SETTINGS = EvalSettings(StageSteps(), "ddim", 4.0, 8.0, batch_size=5)


def _edited(spec: RenderSpec) -> PIL.Image.Image:
    assert spec.image is not None and spec.mask is not None
    source = np.asarray(spec.image)
    old = analyse_image(source).objects[0]
    wanted = parse_caption(spec.prompt)
    new = SceneObject(
        wanted.objects[0].colour, wanted.objects[0].shape, old.size, old.cx, old.cy, old.extent
    )
    painted = render_scene(Scene(wanted.background or "white", (new,)), source.shape[0])
    keep = np.asarray(spec.mask) < 128
    painted[keep] = source[keep]
    return PIL.Image.fromarray(painted)


def oracle(specs: Sequence[RenderSpec]) -> list[list[PIL.Image.Image]]:
    """Does what each request asks, using the generator itself."""
    out = []
    for spec in specs:
        if spec.kind == "generate":
            scene = scene_for(np.random.default_rng(spec.seed), parse_caption(spec.prompt))
            out.append([PIL.Image.fromarray(render_scene(scene, 64))])
        elif spec.kind == "variation":
            assert spec.image is not None
            out.append([spec.image])
        else:
            out.append([_edited(spec)])
    return out


def blank(specs: Sequence[RenderSpec]) -> list[list[PIL.Image.Image]]:
    return [[PIL.Image.new("RGB", (64, 64), (128, 128, 128))] for _ in specs]


def test_perfect_renders_score_perfectly() -> None:
    prompts = prompt_set(24)
    done: list[int] = []
    result, images = run_generation(oracle, prompts, SETTINGS, progress=done.append)
    assert sum(done) == 24 and len(images) == 24
    for acc in (result.single_seen, result.single_heldout):
        assert acc.n > 0 and acc.colour == acc.shape == acc.size == acc.position == 1.0
    assert result.two_seen.all_right == result.two_heldout.all_right == 1.0
    variations = run_variations(oracle, variation_cases(3, 64), SETTINGS)
    assert variations.colour_and_shape == 1.0 and variations.n == 3
    edits = run_edits(oracle, edit_cases(4, 64), SETTINGS)
    assert edits.both_in_mask == 1.0 and edits.psnr_outside_min == PSNR_CAP


def test_blank_renders_score_zero() -> None:
    result, _ = run_generation(blank, prompt_set(8), SETTINGS)
    assert result.single_all.colour == result.single_all.shape == 0.0
    assert result.two_all.all_right == 0.0
    edits = run_edits(blank, edit_cases(2, 64), SETTINGS)
    assert edits.colour_in_mask == 0.0 and edits.psnr_outside_mean is not None
    assert edits.psnr_outside_mean < 20


def test_steps_rows_use_their_sampler() -> None:
    seen: list[tuple[str, int]] = []

    def spy(specs: Sequence[RenderSpec]) -> list[list[PIL.Image.Image]]:
        seen.extend((s.sampler, s.steps.decoder) for s in specs)
        return oracle(specs)

    prompts = [p for p in prompt_set(12) if p.group == "single"][:3]
    rows = [("dpmpp_2m", StageSteps(5, 5, 4)), ("ddpm", StageSteps(50, 50, 50))]
    results = run_steps(spy, prompts, SETTINGS, rows)
    assert [r.sampler for r in results] == ["dpmpp_2m", "ddpm"]
    assert results[1].steps == (50, 50, 50) and results[0].accuracy.all_right == 1.0
    assert seen == [("dpmpp_2m", 5)] * 3 + [("ddpm", 50)] * 3


def test_prompt_set_is_fixed_and_large_enough() -> None:
    prompts = prompt_set()
    assert len(prompts) >= 200 and prompts == prompt_set()
    assert {(p.group, p.split) for p in prompts} == {
        ("single", "seen"),
        ("single", "heldout"),
        ("two", "seen"),
        ("two", "heldout"),
    }
    assert all(parse_caption(p.text) == p.facts for p in prompts)
    assert len({p.text for p in prompts}) == len(prompts)
    with pytest.raises(ValueError, match="got 0"):
        prompt_set(0)


def test_another_prompt_seed_gives_other_prompts_of_the_same_make_up() -> None:
    from collections import Counter

    from worker.evaluation.prompts import prompt_set

    fixed, tuning = prompt_set(), prompt_set(seed=777)
    assert prompt_set() == fixed  # the ShapeEval set never changes
    assert Counter((p.group, p.split) for p in tuning) == Counter((p.group, p.split) for p in fixed)
    assert len({p.text for p in tuning} & {p.text for p in fixed}) < len(fixed) // 4


def test_template_pairs_word_the_same_facts_in_a_seen_and_an_unseen_template() -> None:
    prompts = prompt_set()
    pairs = template_pairs(prompts, 30)
    assert len(pairs) == 30 and sum(p.seen.group == "two" for p in pairs) == 10
    assert template_pairs(prompts, 30) == pairs  # fixed, like the prompt set
    rng = np.random.default_rng(0)
    trained = {
        draw_caption(scene_for(rng, p.seen.facts), rng).text for p in pairs for _ in range(3)
    }
    for pair in pairs:
        assert pair.seen.index == pair.unseen.index and pair.seen.facts == pair.unseen.facts
        assert parse_caption(pair.seen.text) == parse_caption(pair.unseen.text) == pair.seen.facts
        assert pair.seen.text != pair.unseen.text and pair.unseen.text not in trained
    unseen_starts = {p.unseen.text.split()[0] for p in pairs}
    assert "there" in unseen_starts or any("," in p.unseen.text for p in pairs)
    assert len(HELDOUT_TEMPLATES) >= 4


def test_template_section_scores_a_perfect_renderer_perfectly_and_a_blank_one_at_zero() -> None:
    pairs = template_pairs(prompt_set(), 9)
    done: list[int] = []
    result = run_templates(oracle, pairs, SETTINGS, progress=done.append)
    assert sum(done) == 18
    for acc in (result.seen_single, result.unseen_single):
        assert acc.n == 6 and acc.colour == acc.shape == acc.size == acc.position == 1.0
    assert result.seen_two.all_right == result.unseen_two.all_right == 1.0
    zero = run_templates(blank, pairs, SETTINGS)
    assert zero.unseen_single.colour == zero.unseen_two.all_right == 0.0
