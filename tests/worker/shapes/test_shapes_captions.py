"""Captions: varied, parse back, true of their scenes, and held-out templates stay out."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest

from worker.shapes.caption_parser import parse_caption
from worker.shapes.captions import (
    HELDOUT_TEMPLATES,
    NOUN_FORMS,
    ONE_OBJECT_FORMS,
    TWO_OBJECT_FORMS,
    CaptionFacts,
    ObjectFacts,
    Phrasing,
    all_templates,
    caption_scene,
    draw_caption,
    phrase,
    rephrase,
    training_templates,
    write_caption,
)
from worker.shapes.scenes import sample_scene
from worker.training.family_configs import CONTEXT_LENGTH


def test_captions_parse_back_to_facts_true_of_the_scene() -> None:
    rng = np.random.default_rng(11)
    captions = set()
    for i in range(600):
        scene = sample_scene(rng, n_objects=1 + i % 2)
        caption = caption_scene(scene, rng)
        captions.add(caption)
        facts = parse_caption(caption)
        assert len(facts.objects) == len(scene.objects)
        assert facts.relation == scene.relation
        assert facts.background in (None, scene.background)
        for stated, obj in zip(facts.objects, scene.objects, strict=True):
            assert (stated.colour, stated.shape) == (obj.colour, obj.shape)
            assert stated.size in (None, obj.size)
            assert stated.position in (None, obj.position)
    assert len(captions) > 500  # templates and synonyms vary


def test_training_draws_every_training_template_and_no_held_out_one() -> None:
    rng = np.random.default_rng(3)
    drawn = set()
    two_placed = two_sized = 0
    for i in range(1500):
        caption = draw_caption(sample_scene(rng, n_objects=1 + i % 2), rng)
        drawn.add(caption.phrasing.template)
        objects = caption.facts.objects
        if len(objects) == 2:
            two_placed += all(o.position is not None for o in objects)
            two_sized += any(o.size is not None for o in objects)
    assert drawn == set(training_templates(1)) | set(training_templates(2))
    assert not drawn & HELDOUT_TEMPLATES
    assert two_placed > 100 and two_sized > 100  # two-object captions state places or sizes


def test_every_form_is_still_seen_in_training_with_some_partner() -> None:
    seen = set(training_templates(1)) | set(training_templates(2))
    assert {s for s, _ in seen} == set(ONE_OBJECT_FORMS) | set(TWO_OBJECT_FORMS)
    assert {n for _, n in seen} == set(NOUN_FORMS)
    every = set(all_templates(1)) | set(all_templates(2))
    assert HELDOUT_TEMPLATES.issubset(every) and every != HELDOUT_TEMPLATES


def test_every_template_parses_back_and_fits_clip_context() -> None:
    tokenizer = open_clip.get_tokenizer("RN50")
    rng = np.random.default_rng(5)
    longest = 0
    for i in range(400):
        scene = sample_scene(rng, n_objects=1 + i % 2)
        caption = draw_caption(scene, rng)
        longest = max(longest, len(tokenizer.encode(caption.text)))
        for template in all_templates(len(scene.objects)):
            p = Phrasing(
                *template,
                caption.phrasing.words,
                caption.phrasing.tails_reversed,
                caption.phrasing.prefix,
            )
            if template[0] == "place_first" and caption.facts.objects[0].position is None:
                continue
            assert parse_caption(phrase(caption.facts, p)) == caption.facts
    assert longest <= CONTEXT_LENGTH - 2  # start and end tokens


@pytest.mark.parametrize(
    ("text", "facts"),
    [
        ("a red circle", CaptionFacts((ObjectFacts("red", "circle"),))),
        (
            "a small blue square in the top left",
            CaptionFacts((ObjectFacts("blue", "square", "small", "top left"),)),
        ),
        (
            "a large green star on a white background",
            CaptionFacts((ObjectFacts("green", "star", "large"),), None, "white"),
        ),
        (
            "a red circle to the left of a blue square",
            CaptionFacts((ObjectFacts("red", "circle"), ObjectFacts("blue", "square")), "left of"),
        ),
        (
            "an orange cross beneath a big white triangle on gray",
            CaptionFacts(
                (ObjectFacts("orange", "cross"), ObjectFacts("white", "triangle", "large")),
                "below",
                "gray",
            ),
        ),
        # issue 12's phrasings
        ("a circle that is red", CaptionFacts((ObjectFacts("red", "circle"),))),
        ("a tiny red-coloured star", CaptionFacts((ObjectFacts("red", "star", "small"),))),
        (
            "at the upper left, a big square that is blue on an orange background",
            CaptionFacts((ObjectFacts("blue", "square", "large", "top left"),), None, "orange"),
        ),
        (
            "there is a green cross in the middle",
            CaptionFacts((ObjectFacts("green", "cross", None, "center"),)),
        ),
        (
            "a red circle at the top, left of a blue square in the top right corner",
            CaptionFacts(
                (
                    ObjectFacts("red", "circle", None, "top"),
                    ObjectFacts("blue", "square", None, "top right"),
                ),
                "left of",
            ),
        ),
        (
            "a little circle that is white is above a huge star that is black",
            CaptionFacts(
                (ObjectFacts("white", "circle", "small"), ObjectFacts("black", "star", "large")),
                "above",
            ),
        ),
    ],
)
def test_issue_caption_forms(text: str, facts: CaptionFacts) -> None:
    assert parse_caption(text) == facts
    assert parse_caption(write_caption(facts)) == facts


def test_rephrase_changes_only_the_swapped_words() -> None:
    rng = np.random.default_rng(8)
    scene = sample_scene(rng, n_objects=2)
    caption = draw_caption(scene, rng)
    a, b = caption.facts.objects
    swapped = CaptionFacts(
        (
            ObjectFacts(b.colour, a.shape, a.size, a.position),
            ObjectFacts(a.colour, b.shape, b.size, b.position),
        ),
        caption.facts.relation,
        caption.facts.background,
    )
    twin = rephrase(caption, swapped)
    assert parse_caption(twin.text) == swapped
    words, twin_words = caption.text.split(), twin.text.split()
    assert len(words) == len(twin_words)
    changed = [(w, t) for w, t in zip(words, twin_words, strict=True) if w != t]
    if a.colour != b.colour:
        assert 1 <= len(changed) <= 2
        assert all(a.colour in w + t or b.colour in w + t for w, t in changed)


def test_unknown_text_is_refused_with_an_example() -> None:
    with pytest.raises(ValueError, match="'a pink elephant'.*e.g."):
        parse_caption("a pink elephant")
