"""Prompt normalisation for term matching: NFKC, case, homoglyphs, leetspeak, split words."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from shared.moderation.confusables import HOMOGLYPHS, INVISIBLE, LEET, LEET_ALTERNATIVES

_INVISIBLE_TABLE = {ord(ch): None for ch in INVISIBLE}
_HOMOGLYPH_TABLE = str.maketrans(HOMOGLYPHS)
_LEET_SYMBOLS = "".join(ch for ch in LEET if not ch.isdigit())
# A run of letters, digits and leet symbols: a candidate word before leet decoding.
_RUN = re.compile(r"[a-z0-9" + re.escape(_LEET_SYMBOLS) + r"]+")
# Characters people put inside a word to break it up ("n.u.d.e", "k-i-l-l", "n*de").
_INNER_SEPARATORS = re.compile(r"(?<=[a-z0-9])[.\-_*'`~^:;,/\\]+(?=[a-z0-9])")
_NON_WORD = re.compile(r"[^a-z0-9]+")
# Three or more single characters in a row: "n a k e d" -> "naked".
_SPACED_LETTERS = re.compile(r"\b(?:[a-z0-9] ){2,}[a-z0-9]\b")
# A letter repeated three or more times: "kiiiill" -> "kill" as one more reading.
_LONG_REPEAT = re.compile(r"([a-z])\1{2,}")


@dataclass(frozen=True)
class NormalisedText:
    """A prompt as the matcher sees it: one canonical reading and every variant to try."""

    text: str  # canonical: words separated by single spaces, letters a-z and digits only
    variants: tuple[str, ...]  # includes `text`; each is matched independently


def fold_characters(raw: str) -> str:
    """Remove invisible characters, apply NFKC, casefold, map homoglyphs and strip accents."""
    text = unicodedata.normalize("NFKC", raw.translate(_INVISIBLE_TABLE)).casefold()
    text = text.translate(_HOMOGLYPH_TABLE)
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def decode_leet(text: str, table: dict[str, str] = LEET) -> str:
    """Read digits and symbols as letters inside words that have at least two letters."""
    return _RUN.sub(lambda match: _decode_run(match.group(0), table), text)


def _decode_run(run: str, table: dict[str, str]) -> str:
    core = run.rstrip(_LEET_SYMBOLS)  # "hi!" keeps its "!"; "sh!t" does not
    tail = run[len(core) :]
    letters = sum(ch.isalpha() for ch in core)
    if letters < 2 or letters == len(core):
        return run
    return "".join(table.get(ch, ch) for ch in core) + tail


def to_words(text: str, *, join_inner: bool) -> str:
    """Split into space-separated words; optionally first delete separators inside words."""
    if join_inner:
        text = _INNER_SEPARATORS.sub("", text)
    words = _NON_WORD.sub(" ", text).strip()
    return _SPACED_LETTERS.sub(lambda match: match.group(0).replace(" ", ""), words)


def squeeze_repeats(text: str, *, keep: int) -> str:
    """Collapse letters repeated three or more times to `keep` ("nuuude" -> "nude")."""
    return _LONG_REPEAT.sub(lambda match: match.group(1) * keep, text)


def normalise(raw: str) -> NormalisedText:
    """All readings of `raw` the term matcher should try, canonical one first."""
    folded = fold_characters(raw)
    readings = [decode_leet(folded)]
    alternative = {**LEET, **LEET_ALTERNATIVES}
    if any(ch in folded for ch in LEET_ALTERNATIVES):
        readings.append(decode_leet(folded, alternative))
    variants: list[str] = []
    for reading in readings:
        for join_inner in (False, True):
            words = to_words(reading, join_inner=join_inner)
            variants.append(words)
            if _LONG_REPEAT.search(words):
                variants.append(squeeze_repeats(words, keep=1))
                variants.append(squeeze_repeats(words, keep=2))
    unique = tuple(dict.fromkeys(variants))
    return NormalisedText(text=unique[0], variants=unique)
