"""ShapeEval's fixed prompt set: single objects, two objects with relations, held-out pairs."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import zip_longest
from typing import Literal

import numpy as np

from worker.shapes.captions import (
    HELDOUT_TEMPLATES,
    CaptionFacts,
    ObjectFacts,
    Phrasing,
    Template,
    all_templates,
    draw_phrasing,
    fits,
    phrase,
    training_templates,
    write_caption,
)
from worker.shapes.scenes import HELDOUT_PAIR_LIST, SEEN_PAIRS
from worker.shapes.splits import HELDOUT_COMBINATIONS, is_heldout
from worker.shapes.vocabulary import BACKGROUNDS, POSITIONS, RELATIONS, SIZES, visible_on

Group = Literal["single", "two"]
SplitName = Literal["seen", "heldout"]
PROMPT_SEED = 20260401  # fixed: the prompt set must not change between runs
TEMPLATE_SEED = 20260403  # the phrasings of the template section, fixed likewise
COUNTS: dict[tuple[Group, SplitName], int] = {
    ("single", "seen"): 120,
    ("single", "heldout"): 40,
    ("two", "seen"): 60,
    ("two", "heldout"): 30,
}


@dataclass(frozen=True)
class EvalPrompt:
    """One prompt, what it states, and where it comes from."""

    index: int  # position in the full set; also the render seed
    text: str
    facts: CaptionFacts
    group: Group
    split: SplitName


def _background(rng: np.random.Generator, colours: list[str]) -> str | None:
    if rng.random() < 2 / 3:
        return None
    options = [b for b in BACKGROUNDS if all(visible_on(c, b) for c in colours)]
    return options[int(rng.integers(len(options)))]


def _single(rng: np.random.Generator, pair: tuple[str, str]) -> CaptionFacts:
    size = list(SIZES)[int(rng.integers(len(SIZES)))]
    position = list(POSITIONS)[int(rng.integers(len(POSITIONS)))]
    obj = ObjectFacts(pair[0], pair[1], size, position)
    return CaptionFacts((obj,), None, _background(rng, [pair[0]]))


def _two(rng: np.random.Generator, pairs: tuple[tuple[str, str], ...]) -> CaptionFacts:
    relation = RELATIONS[int(rng.integers(len(RELATIONS)))]
    objects = tuple(ObjectFacts(c, s) for c, s in pairs)
    return CaptionFacts(objects, relation, _background(rng, [c for c, _ in pairs]))


def _seen_two(rng: np.random.Generator) -> tuple[tuple[str, str], ...]:
    while True:
        a, b = (SEEN_PAIRS[int(i)] for i in rng.integers(len(SEEN_PAIRS), size=2))
        if a != b and not is_heldout([a, b]):
            return (a, b)


def _heldout_two(rng: np.random.Generator, i: int) -> tuple[tuple[str, str], ...]:
    combinations = sorted(tuple(sorted(c)) for c in HELDOUT_COMBINATIONS)
    if i % 2 == 0:
        pair = combinations[(i // 2) % len(combinations)]
    else:
        held = HELDOUT_PAIR_LIST[(i // 2) % len(HELDOUT_PAIR_LIST)]
        pair = (held, SEEN_PAIRS[int(rng.integers(len(SEEN_PAIRS)))])
    return pair if rng.random() < 0.5 else pair[::-1]


def _draw(rng: np.random.Generator, group: Group, split: SplitName, i: int) -> CaptionFacts:
    if group == "single":
        pairs = SEEN_PAIRS if split == "seen" else HELDOUT_PAIR_LIST
        # Walk the pairs in turn so every colour and shape is covered evenly.
        return _single(rng, pairs[i % len(pairs)])
    return _two(rng, _seen_two(rng) if split == "seen" else _heldout_two(rng, i))


def _facts(group: Group, split: SplitName, seed: int) -> list[CaptionFacts]:
    rng = np.random.default_rng([seed, list(COUNTS).index((group, split))])
    chosen: list[CaptionFacts] = []
    i = 0
    while len(chosen) < COUNTS[(group, split)]:
        facts = _draw(rng, group, split, i)
        i += 1
        if facts not in chosen:
            chosen.append(facts)
    return chosen


def prompt_set(limit: int | None = None, *, seed: int = PROMPT_SEED) -> list[EvalPrompt]:
    """The fixed prompts, interleaved across groups so that any prefix samples all of them.

    Another `seed` gives another set of the same make-up (for tuning sampler settings on
    prompts that ShapeEval does not score).
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of prompts, got {limit}")
    streams = [
        [(group, split, facts) for facts in _facts(group, split, seed)] for group, split in COUNTS
    ]
    flat = [item for row in zip_longest(*streams) for item in row if item is not None]
    prompts = [
        EvalPrompt(i, write_caption(facts), facts, group, split)
        for i, (group, split, facts) in enumerate(flat)
    ]
    return prompts if limit is None else prompts[:limit]


@dataclass(frozen=True)
class TemplatePair:
    """One prompt's facts worded with a training template and with a held-out one.

    Both share the synonyms, the prefix and the render seed (the source prompt's index), so
    the two scores differ by the template alone.
    """

    seen: EvalPrompt
    unseen: EvalPrompt


def _held_out(n_objects: int) -> tuple[Template, ...]:
    return tuple(t for t in all_templates(n_objects) if t in HELDOUT_TEMPLATES)


def _reworded(prompt: EvalPrompt, phrasing: Phrasing, template: Template) -> EvalPrompt:
    text = phrase(
        prompt.facts, Phrasing(*template, phrasing.words, phrasing.tails_reversed, phrasing.prefix)
    )
    return EvalPrompt(prompt.index, text, prompt.facts, prompt.group, prompt.split)


def template_pairs(
    prompts: list[EvalPrompt], count: int, *, seed: int = TEMPLATE_SEED
) -> list[TemplatePair]:
    """The first `count` prompts (two thirds one-object), each in a seen and an unseen template.

    Held-out templates are worker/shapes/captions.py's HELDOUT_TEMPLATES, never drawn for
    training captions; each uses only words and forms that training captions use elsewhere.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    singles = [p for p in prompts if p.group == "single"][: count - count // 3]
    twos = [p for p in prompts if p.group == "two"][: count // 3]
    rng = np.random.default_rng(seed)
    pairs = []
    for prompt in sorted(singles + twos, key=lambda p: p.index):
        n = len(prompt.facts.objects)
        seen = [t for t in training_templates(n) if fits(t, prompt.facts)]
        unseen = [t for t in _held_out(n) if fits(t, prompt.facts)]
        phrasing = draw_phrasing(rng, prompt.facts, tuple(seen))
        other = unseen[int(rng.integers(len(unseen)))]
        pairs.append(
            TemplatePair(
                _reworded(prompt, phrasing, phrasing.template), _reworded(prompt, phrasing, other)
            )
        )
    return pairs
