"""Parse captions of the shapes world back into their facts, for every template."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from worker.shapes.captions import (
    BACKGROUND_FORMS,
    NOUN_FORMS,
    ONE_OBJECT_FORMS,
    POSITION_PHRASES,
    PREFIXES,
    RELATION_PHRASES,
    SIZE_WORDS,
    TWO_OBJECT_FORMS,
    CaptionFacts,
    ObjectFacts,
)
from worker.shapes.vocabulary import BACKGROUNDS, COLOURS, SHAPES


def _alternation(phrases: Iterable[list[str]]) -> str:
    every = sorted((p for ps in phrases for p in ps), key=len, reverse=True)
    return "|".join(re.escape(p) for p in every)


_SIZE = _alternation(SIZE_WORDS.values())
_COLOUR, _SHAPE = "|".join(COLOURS), "|".join(SHAPES)
_POSITION = _alternation(POSITION_PHRASES.values())
_RELATION = _alternation(RELATION_PHRASES.values())
_PREFIX = f"(?:{'|'.join(re.escape(p) for p in PREFIXES[1:])})?"
_BACKGROUND = (
    "(?: (?:"
    + "|".join(
        form.replace("a {}", "an? {}").format(f"(?P<bg{i}>{'|'.join(BACKGROUNDS)})")
        for i, form in enumerate(BACKGROUND_FORMS)
    )
    + "))?"
)


def _noun(tag: str, form: str) -> str:
    size, colour, shape = (
        rf"(?P<{k}{tag}>{v})" for k, v in (("size", _SIZE), ("colour", _COLOUR), ("shape", _SHAPE))
    )
    body = {
        "plain": f"{colour} {shape}",
        "that_is": f"{shape} that is {colour}",
        "coloured": f"{colour}-coloured {shape}",
    }[form]
    return rf"an? (?:{size} )?{body}"


def _place(tag: str) -> str:
    return rf"(?P<pos{tag}>{_POSITION})"


def _one_object(sentence: str, noun: str) -> str:
    obj = _noun("a", noun)
    if sentence == "place_first":
        return rf"{_place('a')}, {obj}{_BACKGROUND}"
    tails = rf"(?: {_place('a')})?{_BACKGROUND}(?: {_place('z')})?"
    head = "there is " if sentence == "there_is" else _PREFIX
    return head + obj + tails


def _two_objects(sentence: str, noun: str) -> str:
    comma = "" if sentence == "is_relation" else ","
    first = rf"{_noun('a', noun)}(?: {_place('a')}{comma})?"
    second = rf"{_noun('b', noun)}(?: {_place('b')})?"
    relation = rf"(?P<rel>{_RELATION})"
    body = {
        "relation": f"{_PREFIX}{first} {relation}",
        "there_is_relation": f"there is {first} {relation}",
        "is_relation": f"{first} is {relation}",
    }[sentence]
    return f"{body} {second}{_BACKGROUND}"


@lru_cache(maxsize=1)
def _grammar() -> tuple[re.Pattern[str], ...]:
    one = [_one_object(s, n) for s in ONE_OBJECT_FORMS for n in NOUN_FORMS]
    two = [_two_objects(s, n) for s in TWO_OBJECT_FORMS for n in NOUN_FORMS]
    return tuple(re.compile(f"^{p}$") for p in one + two)


def _lookup(phrases: dict[str, list[str]], text: str | None) -> str | None:
    if text is None:
        return None
    return next(name for name, ps in phrases.items() if text in ps)


def _group(match: re.Match[str], name: str) -> str | None:
    return match.groupdict().get(name)


def _object(match: re.Match[str], tag: str, place: str | None) -> ObjectFacts:
    size = _lookup(SIZE_WORDS, _group(match, f"size{tag}"))
    return ObjectFacts(
        match[f"colour{tag}"], match[f"shape{tag}"], size, _lookup(POSITION_PHRASES, place)
    )


def _facts(match: re.Match[str]) -> CaptionFacts:
    background = next((v for k, v in match.groupdict().items() if k.startswith("bg") and v), None)
    if _group(match, "rel") is None:
        place = _group(match, "posa") or _group(match, "posz")
        return CaptionFacts((_object(match, "a", place),), None, background)
    objects = (
        _object(match, "a", _group(match, "posa")),
        _object(match, "b", _group(match, "posb")),
    )
    relation = next(r for r, ps in RELATION_PHRASES.items() if match["rel"] in ps)
    return CaptionFacts(objects, relation, background)


def parse_caption(text: str) -> CaptionFacts:
    """The facts a caption of this world states; raises ValueError on any other text."""
    text = text.strip().lower()
    for pattern in _grammar():
        match = pattern.match(text)
        if match is not None:
            return _facts(match)
    raise ValueError(
        f"caption {text!r} is not in the shapes world's grammar, e.g. 'a small blue square in "
        "the top left' or 'a red circle to the left of a blue square'"
    )
