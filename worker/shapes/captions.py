"""Captions of scenes from varied templates, always true of the scene, and their parser."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from worker.shapes.scenes import Scene, SceneObject
from worker.shapes.vocabulary import BACKGROUNDS, COLOURS, SHAPES, Relation, article

# Canonical words first: canonical_caption() uses element 0 of each list.
SIZE_WORDS: dict[str, list[str]] = {
    "small": ["small", "little"],
    "medium": ["medium", "medium-sized"],
    "large": ["large", "big"],
}
POSITION_PHRASES: dict[str, list[str]] = {
    "top left": ["in the top left", "in the top left corner", "at the top left"],
    "top": ["at the top", "at the top of the image"],
    "top right": ["in the top right", "in the top right corner", "at the top right"],
    "left": ["on the left", "at the left side"],
    "center": ["in the center", "in the middle"],
    "right": ["on the right", "at the right side"],
    "bottom left": ["in the bottom left", "in the bottom left corner", "at the bottom left"],
    "bottom": ["at the bottom", "at the bottom of the image"],
    "bottom right": ["in the bottom right", "in the bottom right corner", "at the bottom right"],
}
RELATION_PHRASES: dict[Relation, list[str]] = {
    "left of": ["to the left of", "left of", "on the left of"],
    "right of": ["to the right of", "right of", "on the right of"],
    "above": ["above", "over"],
    "below": ["below", "under", "beneath"],
}
BACKGROUND_FORMS = ["on a {} background", "on {}", "against a {} background"]
PREFIXES = ["", "a picture of ", "an image of ", "a drawing of "]
P_SIZE, P_POSITION, P_BACKGROUND, P_PREFIX = 0.5, 0.6, 0.4, 0.25


@dataclass(frozen=True)
class ObjectFacts:
    """What a caption says of one object; None where it says nothing."""

    colour: str
    shape: str
    size: str | None = None
    position: str | None = None


@dataclass(frozen=True)
class CaptionFacts:
    """Everything a caption states about its scene."""

    objects: tuple[ObjectFacts, ...]
    relation: Relation | None = None
    background: str | None = None


def _choose(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _noun_phrase(obj: ObjectFacts, rng: np.random.Generator | None) -> str:
    words = [obj.colour, obj.shape]
    if obj.size is not None:
        sizes = SIZE_WORDS[obj.size]
        words.insert(0, sizes[0] if rng is None else _choose(rng, sizes))
    return f"{article(words[0])} {' '.join(words)}"


def write_caption(facts: CaptionFacts, rng: np.random.Generator | None = None) -> str:
    """Phrase `facts`: canonical wording without `rng`, a random template with one."""
    parts = [_noun_phrase(facts.objects[0], rng)]
    tails: list[str] = []
    if facts.relation is not None:
        phrases = RELATION_PHRASES[facts.relation]
        parts += [phrases[0] if rng is None else _choose(rng, phrases)]
        parts += [_noun_phrase(facts.objects[1], rng)]
    elif facts.objects[0].position is not None:
        phrases = POSITION_PHRASES[facts.objects[0].position]
        tails.append(phrases[0] if rng is None else _choose(rng, phrases))
    if facts.background is not None:
        form = BACKGROUND_FORMS[0] if rng is None else _choose(rng, BACKGROUND_FORMS)
        tails.append(form.format(facts.background))
    if rng is not None and len(tails) == 2 and rng.random() < 0.5:
        tails.reverse()
    prefix = _choose(rng, PREFIXES[1:]) if rng is not None and rng.random() < P_PREFIX else ""
    return prefix + " ".join(parts + tails)


def _object_facts(obj: SceneObject, rng: np.random.Generator, p_size: float) -> ObjectFacts:
    return ObjectFacts(obj.colour, obj.shape, obj.size if rng.random() < p_size else None)


def caption_scene(scene: Scene, rng: np.random.Generator) -> str:
    """A random true caption of `scene` (sizes, position and background stated at random)."""
    if len(scene.objects) == 1:
        facts = _object_facts(scene.objects[0], rng, P_SIZE)
        if rng.random() < P_POSITION:
            facts = ObjectFacts(facts.colour, facts.shape, facts.size, scene.objects[0].position)
        objects: tuple[ObjectFacts, ...] = (facts,)
    else:
        objects = tuple(_object_facts(o, rng, P_SIZE / 2) for o in scene.objects)
    background = scene.background if rng.random() < P_BACKGROUND else None
    return write_caption(CaptionFacts(objects, scene.relation, background), rng)


def _alternation(phrases: Iterable[list[str]]) -> str:
    every = sorted((p for ps in phrases for p in ps), key=len, reverse=True)
    return "|".join(re.escape(p) for p in every)


def _lookup(phrases: dict[str, list[str]], text: str | None) -> str | None:
    if text is None:
        return None
    return next(name for name, ps in phrases.items() if text in ps)


def _object(tag: str) -> str:
    return (
        rf"an? (?:(?P<size{tag}>{_alternation(SIZE_WORDS.values())}) )?"
        rf"(?P<colour{tag}>{'|'.join(COLOURS)}) (?P<shape{tag}>{'|'.join(SHAPES)})"
    )


_BACKGROUND = "|".join(
    form.format(f"(?P<bg{i}>{'|'.join(BACKGROUNDS)})") for i, form in enumerate(BACKGROUND_FORMS)
)
_PREFIX = f"(?:{'|'.join(re.escape(p) for p in PREFIXES[1:])})?"
_POSITION = _alternation(POSITION_PHRASES.values())
_ONE = re.compile(
    rf"^{_PREFIX}{_object('a')}(?: (?P<p1>{_POSITION}))?(?: (?:{_BACKGROUND}))?"
    rf"(?: (?P<p2>{_POSITION}))?$"
)
_TWO = re.compile(
    rf"^{_PREFIX}{_object('a')} (?P<rel>{_alternation(RELATION_PHRASES.values())}) {_object('b')}"
    rf"(?: (?:{_BACKGROUND}))?$"
)


def _background_group(match: re.Match[str]) -> str | None:
    return next((v for k, v in match.groupdict().items() if k.startswith("bg") and v), None)


def _matched_object(match: re.Match[str], tag: str, position: str | None) -> ObjectFacts:
    size = _lookup(SIZE_WORDS, match.group(f"size{tag}"))
    return ObjectFacts(match.group(f"colour{tag}"), match.group(f"shape{tag}"), size, position)


def parse_caption(text: str) -> CaptionFacts:
    """The facts a caption of this world states; raises ValueError on any other text."""
    text = text.strip().lower()
    one, two = _ONE.match(text), _TWO.match(text)
    if one is not None:
        position = _lookup(POSITION_PHRASES, one.group("p1") or one.group("p2"))
        return CaptionFacts((_matched_object(one, "a", position),), None, _background_group(one))
    if two is not None:
        objects = (_matched_object(two, "a", None), _matched_object(two, "b", None))
        relation = next(r for r, ps in RELATION_PHRASES.items() if two.group("rel") in ps)
        return CaptionFacts(objects, relation, _background_group(two))
    raise ValueError(
        f"caption {text!r} is not in the shapes world's grammar, e.g. 'a small blue square in "
        "the top left' or 'a red circle to the left of a blue square'"
    )


def describe_scene(scene: Scene) -> CaptionFacts:
    """Every fact of `scene` a caption can state (positions only for one object)."""
    if len(scene.objects) == 1:
        obj = scene.objects[0]
        objects: tuple[ObjectFacts, ...] = (
            ObjectFacts(obj.colour, obj.shape, obj.size, obj.position),
        )
    else:
        objects = tuple(ObjectFacts(o.colour, o.shape, o.size) for o in scene.objects)
    return CaptionFacts(objects, scene.relation, scene.background)
