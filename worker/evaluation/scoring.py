"""Scoring one analysed image against what its prompt states."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

from worker.shapes.analyser import AnalysedObject, AnalysedScene, relation_of
from worker.shapes.captions import CaptionFacts, ObjectFacts

ATTRIBUTES: tuple[str, ...] = ("colour", "shape", "size", "position")


@dataclass(frozen=True)
class SingleScore:
    """Each stated attribute right (None where the prompt does not state it)."""

    one_object: bool  # exactly one object was found
    colour: bool
    shape: bool
    size: bool | None
    position: bool | None
    background: bool | None

    @property
    def all_right(self) -> bool:
        checks = (self.colour, self.shape, self.size, self.position, self.background)
        return all(c is not False for c in checks)


@dataclass(frozen=True)
class TwoScore:
    """Two-object prompt: both objects found, and every stated attribute of both right."""

    two_objects: bool  # exactly two objects were found
    both_present: bool  # two found objects have the two stated colour-shape pairs
    relation: bool  # ... and stand in the stated relation
    background: bool | None
    all_right: bool  # exactly two objects, both right, relation right, background right


def _matches(found: AnalysedObject, stated: ObjectFacts) -> bool:
    return all(
        getattr(stated, name) is None or getattr(found, name) == getattr(stated, name)
        for name in ATTRIBUTES
    )


def score_single(facts: CaptionFacts, scene: AnalysedScene) -> SingleScore:
    """Score the largest object found against the prompt's one object."""
    stated = facts.objects[0]
    background = None if facts.background is None else scene.background == facts.background
    if not scene.objects:
        size = None if stated.size is None else False
        position = None if stated.position is None else False
        return SingleScore(False, False, False, size, position, background)
    found = scene.objects[0]
    return SingleScore(
        one_object=len(scene.objects) == 1,
        colour=found.colour == stated.colour,
        shape=found.shape == stated.shape,
        size=None if stated.size is None else found.size == stated.size,
        position=None if stated.position is None else found.position == stated.position,
        background=background,
    )


def score_two(facts: CaptionFacts, scene: AnalysedScene) -> TwoScore:
    """Score a two-object prompt: best assignment of found objects to the stated ones."""
    assert facts.relation is not None and len(facts.objects) == 2
    background = None if facts.background is None else scene.background == facts.background
    present = relation = False
    for a, b in permutations(scene.objects, 2):
        if _matches(a, facts.objects[0]) and _matches(b, facts.objects[1]):
            present = True
            if relation_of(a, b) == facts.relation:
                relation = True
                break
    two = len(scene.objects) == 2
    return TwoScore(
        two, present, relation, background, two and relation and background is not False
    )


@dataclass(frozen=True)
class SingleAccuracy:
    """Share of one-object prompts with each attribute right (None: no prompt stated it)."""

    n: int
    colour: float | None
    shape: float | None
    size: float | None
    position: float | None
    background: float | None
    all_right: float | None
    one_object: float | None


@dataclass(frozen=True)
class TwoAccuracy:
    """Share of two-object prompts right, in full and in parts."""

    n: int
    all_right: float | None
    both_present: float | None
    relation: float | None
    two_objects: float | None


def _share(values: list[bool | None]) -> float | None:
    stated = [v for v in values if v is not None]
    return None if not stated else sum(stated) / len(stated)


def summarise_single(scores: list[SingleScore]) -> SingleAccuracy:
    """Per-attribute accuracy over `scores`."""
    return SingleAccuracy(
        n=len(scores),
        colour=_share([s.colour for s in scores]),
        shape=_share([s.shape for s in scores]),
        size=_share([s.size for s in scores]),
        position=_share([s.position for s in scores]),
        background=_share([s.background for s in scores]),
        all_right=_share([s.all_right for s in scores]),
        one_object=_share([s.one_object for s in scores]),
    )


def summarise_two(scores: list[TwoScore]) -> TwoAccuracy:
    """Accuracy over two-object `scores`."""
    return TwoAccuracy(
        n=len(scores),
        all_right=_share([s.all_right for s in scores]),
        both_present=_share([s.both_present for s in scores]),
        relation=_share([s.relation for s in scores]),
        two_objects=_share([s.two_objects for s in scores]),
    )
