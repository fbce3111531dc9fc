"""Captions: varied, parse back, and true of their scenes."""

from __future__ import annotations

import numpy as np
import pytest

from worker.shapes.captions import (
    CaptionFacts,
    ObjectFacts,
    caption_scene,
    parse_caption,
    write_caption,
)
from worker.shapes.scenes import sample_scene


def test_captions_parse_back_to_facts_true_of_the_scene() -> None:
    rng = np.random.default_rng(11)
    captions = set()
    for i in range(400):
        scene = sample_scene(rng, n_objects=1 + i % 2)
        caption = caption_scene(scene, rng)
        captions.add(caption.split(" ")[0] + caption.split(" ")[-1])
        facts = parse_caption(caption)
        assert len(facts.objects) == len(scene.objects)
        assert facts.relation == scene.relation
        assert facts.background in (None, scene.background)
        for stated, obj in zip(facts.objects, scene.objects, strict=True):
            assert (stated.colour, stated.shape) == (obj.colour, obj.shape)
            assert stated.size in (None, obj.size)
            assert stated.position in (None, obj.position)
    assert len(captions) > 20  # templates vary


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
    ],
)
def test_issue_caption_forms(text: str, facts: CaptionFacts) -> None:
    assert parse_caption(text) == facts
    assert parse_caption(write_caption(facts)) == facts


def test_unknown_text_is_refused_with_an_example() -> None:
    with pytest.raises(ValueError, match="'a pink elephant'.*e.g."):
        parse_caption("a pink elephant")
