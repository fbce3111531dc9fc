"""Captions of scenes from many templates and synonyms, always true of the scene.

A caption is its facts (what it states) written with a phrasing (how it says it): a template,
that is a sentence form and a noun-phrase form, and uniform draws that pick each synonym. The
same phrasing writes other facts the same way, so a caption and its colour-swapped twin differ
in the swapped words only (worker/training/hard_negatives.py). Some templates are held out
of training (HELDOUT_TEMPLATES) so that ShapeEval can measure prompts phrased unlike any
training caption; the parser is worker/shapes/caption_parser.py.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from worker.shapes.scenes import Scene, SceneObject
from worker.shapes.vocabulary import Relation, article

# Canonical words first: the canonical phrasing uses element 0 of each list.
SIZE_WORDS: dict[str, list[str]] = {
    "small": ["small", "little", "tiny"],
    "medium": ["medium", "medium-sized", "mid-sized"],
    "large": ["large", "big", "huge"],
}
POSITION_PHRASES: dict[str, list[str]] = {
    "top left": [
        "in the top left",
        "in the top left corner",
        "at the top left",
        "at the upper left",
        "in the upper left corner",
    ],
    "top": ["at the top", "at the top of the image", "near the top"],
    "top right": [
        "in the top right",
        "in the top right corner",
        "at the top right",
        "at the upper right",
        "in the upper right corner",
    ],
    "left": ["on the left", "at the left side", "on the left side"],
    "center": ["in the center", "in the middle", "in the centre", "at the center"],
    "right": ["on the right", "at the right side", "on the right side"],
    "bottom left": [
        "in the bottom left",
        "in the bottom left corner",
        "at the bottom left",
        "at the lower left",
        "in the lower left corner",
    ],
    "bottom": ["at the bottom", "at the bottom of the image", "near the bottom"],
    "bottom right": [
        "in the bottom right",
        "in the bottom right corner",
        "at the bottom right",
        "at the lower right",
        "in the lower right corner",
    ],
}
RELATION_PHRASES: dict[Relation, list[str]] = {
    "left of": ["to the left of", "left of", "on the left of"],
    "right of": ["to the right of", "right of", "on the right of"],
    "above": ["above", "over", "higher than"],
    "below": ["below", "under", "beneath"],
}
BACKGROUND_FORMS = ["on a {} background", "on {}", "against a {} background"]
PREFIXES = ["", "a picture of ", "an image of ", "a drawing of "]

# Noun-phrase forms: "a small red circle", "a small circle that is red", "a small red-coloured
# circle". Sentence forms, for one object: "<object> <place>", "<place>, <object>",
# "there is <object> <place>"; for two: "<a> <relation> <b>", "there is <a> <relation> <b>",
# "<a> is <relation> <b>". Each object may carry its own place in two-object captions.
NOUN_FORMS: tuple[str, ...] = ("plain", "that_is", "coloured")
ONE_OBJECT_FORMS: tuple[str, ...] = ("object_first", "place_first", "there_is")
TWO_OBJECT_FORMS: tuple[str, ...] = ("relation", "there_is_relation", "is_relation")
Template = tuple[str, str]  # (sentence form, noun form)
# Never used in training; every sentence form and noun form is still seen with other partners.
HELDOUT_TEMPLATES: frozenset[Template] = frozenset(
    {
        ("place_first", "that_is"),
        ("there_is", "coloured"),
        ("there_is_relation", "that_is"),
        ("is_relation", "coloured"),
    }
)
P_SIZE, P_POSITION, P_BACKGROUND, P_PREFIX = 0.5, 0.6, 0.4, 0.25
P_TWO_POSITIONS = 0.25  # two-object captions that also place each object
WORD_SLOTS = 6  # synonym draws: size of each object, place of each object, relation, background


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


@dataclass(frozen=True)
class Phrasing:
    """How a caption is worded, apart from its facts: template, synonyms, order, prefix."""

    sentence: str
    noun: str
    words: tuple[float, ...] = (0.0,) * WORD_SLOTS  # each in [0, 1): picks options[int(u*n)]
    tails_reversed: bool = False  # background before the place (one object, object_first)
    prefix: int = 0  # index into PREFIXES

    @property
    def template(self) -> Template:
        return (self.sentence, self.noun)


@dataclass(frozen=True)
class Caption:
    """A caption's text with the facts it states and the phrasing that wrote it."""

    text: str
    facts: CaptionFacts
    phrasing: Phrasing


def all_templates(n_objects: int) -> tuple[Template, ...]:
    """Every (sentence form, noun form) of captions of `n_objects` objects."""
    forms = ONE_OBJECT_FORMS if n_objects == 1 else TWO_OBJECT_FORMS
    return tuple((s, n) for s in forms for n in NOUN_FORMS)


def training_templates(n_objects: int) -> tuple[Template, ...]:
    """The templates training captions are drawn from (all but the held-out ones)."""
    return tuple(t for t in all_templates(n_objects) if t not in HELDOUT_TEMPLATES)


def fits(template: Template, facts: CaptionFacts) -> bool:
    """Whether `template` can state `facts` (place_first needs the object's place)."""
    sentence = template[0]
    if len(facts.objects) == 2:
        return sentence in TWO_OBJECT_FORMS
    return sentence in ONE_OBJECT_FORMS and (
        sentence != "place_first" or facts.objects[0].position is not None
    )


def canonical_phrasing(n_objects: int) -> Phrasing:
    return Phrasing("object_first" if n_objects == 1 else "relation", "plain")


def draw_phrasing(
    rng: np.random.Generator, facts: CaptionFacts, templates: tuple[Template, ...] | None = None
) -> Phrasing:
    """A random phrasing of `facts` from `templates` (default: the training templates)."""
    options = [t for t in templates or training_templates(len(facts.objects)) if fits(t, facts)]
    if not options:
        raise ValueError(f"none of the templates {templates} can state {facts}")
    sentence, noun = options[int(rng.integers(len(options)))]
    words = tuple(float(u) for u in rng.random(WORD_SLOTS))
    prefix = int(rng.integers(1, len(PREFIXES))) if rng.random() < P_PREFIX else 0
    return Phrasing(sentence, noun, words, bool(rng.random() < 0.5), prefix)


def _pick(options: list[str], u: float) -> str:
    return options[min(len(options) - 1, int(u * len(options)))]


def _noun_phrase(obj: ObjectFacts, noun: str, u_size: float) -> str:
    size = [] if obj.size is None else [_pick(SIZE_WORDS[obj.size], u_size)]
    if noun == "plain":
        words = [*size, obj.colour, obj.shape]
    elif noun == "that_is":
        words = [*size, obj.shape, "that is", obj.colour]
    elif noun == "coloured":
        words = [*size, f"{obj.colour}-coloured", obj.shape]
    else:
        raise ValueError(f"unknown noun form {noun!r}; allowed: {', '.join(NOUN_FORMS)}")
    return f"{article(words[0])} {' '.join(words)}"


def _place(obj: ObjectFacts, u: float) -> str | None:
    return None if obj.position is None else _pick(POSITION_PHRASES[obj.position], u)


def _one_object(facts: CaptionFacts, p: Phrasing, background: str | None) -> str:
    obj = facts.objects[0]
    noun, place = _noun_phrase(obj, p.noun, p.words[0]), _place(obj, p.words[2])
    if p.sentence == "place_first":
        assert place is not None, "fits() keeps place_first to placed objects"
        return " ".join([f"{place},", noun, *filter(None, [background])])
    tails = [t for t in (place, background) if t is not None]
    if p.tails_reversed:
        tails.reverse()
    head = "there is" if p.sentence == "there_is" else PREFIXES[p.prefix].strip()
    return " ".join(filter(None, [head, noun, *tails]))


def _two_objects(facts: CaptionFacts, p: Phrasing, background: str | None) -> str:
    assert facts.relation is not None, "two-object captions state their relation"
    a, b = facts.objects
    first = " ".join(filter(None, [_noun_phrase(a, p.noun, p.words[0]), _place(a, p.words[2])]))
    if a.position is not None and p.sentence != "is_relation":
        first += ","  # "a circle at the top, left of ..." is not "at the top left of"
    second = " ".join(filter(None, [_noun_phrase(b, p.noun, p.words[1]), _place(b, p.words[3])]))
    relation = _pick(RELATION_PHRASES[facts.relation], p.words[4])
    heads = {
        "relation": [PREFIXES[p.prefix].strip(), first],
        "there_is_relation": ["there is", first],
        "is_relation": [first, "is"],
    }
    if p.sentence not in heads:
        raise ValueError(f"{p.sentence!r} is no two-object form; allowed: {TWO_OBJECT_FORMS}")
    return " ".join(filter(None, [*heads[p.sentence], relation, second, background]))


def phrase(facts: CaptionFacts, phrasing: Phrasing) -> str:
    """The text of `facts` worded by `phrasing`."""
    if not fits(phrasing.template, facts):
        raise ValueError(f"template {phrasing.template} cannot state {facts}")
    background = None
    if facts.background is not None:
        form = _pick(BACKGROUND_FORMS, phrasing.words[5])
        background = form.replace("a {}", f"{article(facts.background)} {{}}").format(
            facts.background
        )
    if len(facts.objects) == 1:
        return _one_object(facts, phrasing, background)
    return _two_objects(facts, phrasing, background)


def write_caption(facts: CaptionFacts, rng: np.random.Generator | None = None) -> str:
    """Phrase `facts`: canonical wording without `rng`, a random training phrasing with one."""
    if rng is None:
        return phrase(facts, canonical_phrasing(len(facts.objects)))
    return phrase(facts, draw_phrasing(rng, facts))


def _object_facts(
    obj: SceneObject, rng: np.random.Generator, p_size: float, p_position: float
) -> ObjectFacts:
    size = obj.size if rng.random() < p_size else None
    return ObjectFacts(
        obj.colour, obj.shape, size, obj.position if rng.random() < p_position else None
    )


def draw_caption(scene: Scene, rng: np.random.Generator) -> Caption:
    """A random true caption of `scene`: which facts it states, and a training phrasing."""
    if len(scene.objects) == 1:
        objects: tuple[ObjectFacts, ...] = (
            _object_facts(scene.objects[0], rng, P_SIZE, P_POSITION),
        )
    else:
        # Places or sizes, not both, and then no background: captions fit CLIP's 32 tokens.
        placed = rng.random() < P_TWO_POSITIONS
        p_size, p_place = (0.0, 1.0) if placed else (P_SIZE / 2, 0.0)
        objects = tuple(_object_facts(o, rng, p_size, p_place) for o in scene.objects)
    placed_pair = len(objects) == 2 and objects[0].position is not None
    background = scene.background if not placed_pair and rng.random() < P_BACKGROUND else None
    facts = CaptionFacts(objects, scene.relation, background)
    phrasing = draw_phrasing(rng, facts)
    return Caption(phrase(facts, phrasing), facts, phrasing)


def caption_scene(scene: Scene, rng: np.random.Generator) -> str:
    """The text of a random true caption of `scene` (see draw_caption)."""
    return draw_caption(scene, rng).text


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


def rephrase(caption: Caption, facts: CaptionFacts) -> Caption:
    """Other facts worded exactly as `caption` is (same template, synonyms and order)."""
    return replace(caption, text=phrase(facts, caption.phrasing), facts=facts)
