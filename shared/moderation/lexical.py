"""Term matching over normalised prompts (exact, fuzzy, split words) -> a Verdict; no torch."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from shared.moderation.normalise import NormalisedText, fold_characters, normalise
from shared.moderation.policy import Policy
from shared.moderation.verdict import Decision, Stage, Verdict, strictest

CHECKER_VERSION = "lexical/2"
_BARRIER = " _ "  # replaces an allowed phrase so no term spans across it
_BEFORE, _AFTER = "(?<![a-z0-9])", "(?![a-z0-9])"


@dataclass(frozen=True)
class _Slot:
    """Where a term counts: a category's terms (part None), decisive or ambiguous, or one part
    of one combo (combos are ambiguous)."""

    category: str
    part: tuple[int, int] | None = None
    decisive: bool = False


def compile_term(term: str) -> str:
    """A policy term as a regex over normalised text: words, `*` any ending, `~` typos, re: raw."""
    if term.startswith("re:"):
        return term[3:]
    words = fold_characters(term.removesuffix("~")).split()
    # Words may also be run together ("whitepower") but never glued to a neighbouring word.
    body = r"\s*".join(re.escape(w).replace(r"\*", "[a-z0-9]*") for w in words)
    return f"{_BEFORE}{body}{_AFTER}"


def _deletions(word: str) -> Iterator[str]:
    return (word[:i] + word[i + 1 :] for i in range(len(word)))


def _transpositions(word: str) -> Iterator[str]:
    return (word[:i] + word[i + 1] + word[i] + word[i + 2 :] for i in range(len(word) - 1))


def _undoubled(word: str) -> Iterator[str]:
    return (word[:i] + word[i + 1 :] for i in range(len(word) - 1) if word[i] == word[i + 1])


class _FuzzyIndex:
    """Near-misses of single-word terms: a doubled letter ("nuude") for every term of four
    letters or more; one insertion, deletion or adjacent swap for terms marked `~` that are at
    least `min_length` long (marking is opt-in: "shota" is one letter from "shot")."""

    def __init__(self, words: set[str], typo_words: set[str], min_length: int) -> None:
        self.words = {w for w in words if len(w) >= 4}
        self.typo = {w for w in typo_words if len(w) >= min_length}
        self.by_deletion: dict[str, set[str]] = defaultdict(set)
        for word in self.typo:
            for shorter in _deletions(word):
                self.by_deletion[shorter].add(word)

    def lookup(self, token: str) -> set[str]:
        """Terms `token` is a near-miss of (empty when it is exact or far)."""
        if token in self.words or len(token) < 4:
            return set()
        found = {w for w in _undoubled(token) if w in self.words}
        found.update(self.by_deletion.get(token, ()))  # a letter left out
        found.update(w for w in _deletions(token) if w in self.typo)  # a letter added
        found.update(w for w in _transpositions(token) if w in self.typo)  # two swapped
        return found


_Phrase = tuple[_Slot, str, tuple[str, ...]]


class _PhraseIndex:
    """Plain terms looked up word by word (a dict probe per token instead of a regex scan)."""

    def __init__(self, slots: dict[_Slot, list[str]]) -> None:
        self.by_first: dict[str, list[_Phrase]] = defaultdict(list)
        self.wild_first: list[tuple[str, _Phrase]] = []
        for slot, terms in slots.items():
            for term in terms:
                if term.startswith("re:"):
                    continue
                words = tuple(fold_characters(term.removesuffix("~")).split())
                forms = [words]
                if len(words) > 1 and not any("*" in w for w in words):
                    forms.append(("".join(words),))  # run together: "whitepower"
                for form in forms:
                    phrase = (slot, term, form)
                    if form[0].endswith("*"):
                        self.wild_first.append((form[0][:-1], phrase))
                    else:
                        self.by_first[form[0]].append(phrase)

    @staticmethod
    def _word_matches(pattern: str, token: str) -> bool:
        return token.startswith(pattern[:-1]) if pattern.endswith("*") else token == pattern

    def find(self, tokens: list[str]) -> Iterator[tuple[_Slot, str]]:
        """(slot, term) for every term whose words appear consecutively in `tokens`."""
        for i, token in enumerate(tokens):
            candidates = list(self.by_first.get(token, ()))
            candidates += [p for stem, p in self.wild_first if token.startswith(stem)]
            for slot, term, words in candidates:
                following = tokens[i + 1 : i + len(words)]
                if len(following) == len(words) - 1 and all(
                    self._word_matches(w, t) for w, t in zip(words[1:], following, strict=True)
                ):
                    yield slot, term


class LexicalChecker:
    """Compiled once per policy; `check(prompt)` takes well under a millisecond."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        slots: dict[_Slot, list[str]] = defaultdict(list)
        for name, category in policy.categories.items():
            slots[_Slot(name)].extend(category.terms)
            slots[_Slot(name, decisive=True)].extend(category.decisive_terms)
            for i, combo in enumerate(category.combos):
                for j, part in enumerate(combo):
                    slots[_Slot(name, (i, j))].extend(part)
        raw = {slot: [t for t in terms if t.startswith("re:")] for slot, terms in slots.items()}
        self._regexes = {slot: self._compile(terms) for slot, terms in raw.items() if terms}
        self._terms = raw
        self._phrases = _PhraseIndex(slots)
        plain: dict[str, set[_Slot]] = defaultdict(set)
        typo: set[str] = set()
        for slot, terms in slots.items():
            for term in terms:
                word = fold_characters(term).removesuffix("~").rstrip("*")
                if not term.startswith("re:") and word.isalnum():
                    plain[word].add(slot)
                    if term.endswith("~"):
                        typo.add(word)
        self._plain = dict(plain)
        self._fuzzy = _FuzzyIndex(set(plain), typo, policy.fuzzy_min_length)
        # One pair of boundary checks around all the phrases, not one per phrase (speed).
        bodies = "|".join(
            compile_term(p)[len(_BEFORE) : -len(_AFTER)]
            for p in policy.allow_phrases
            if not p.startswith("re:")
        )
        self._allow = re.compile(f"{_BEFORE}(?:{bodies}){_AFTER}") if bodies else None

    @staticmethod
    def _compile(terms: list[str]) -> re.Pattern[str]:
        return re.compile("|".join(f"(?P<t{i}>{compile_term(t)})" for i, t in enumerate(terms)))

    def _exact_hits(self, text: str) -> Iterator[tuple[_Slot, str]]:
        yield from self._phrases.find(text.split())
        for slot, regex in self._regexes.items():
            for match in regex.finditer(text):
                index = int((match.lastgroup or "t0")[1:])
                yield slot, self._terms[slot][index]

    def _near_hits(self, text: str) -> Iterator[tuple[_Slot, str]]:
        tokens = [t for t in text.split() if t != "_"]
        for token in tokens:
            for word in self._fuzzy.lookup(token):
                for slot in self._plain[word]:
                    yield slot, f"{word}~{token}"
        for left, right in zip(tokens, tokens[1:], strict=False):
            joined = left + right
            if len(joined) >= self.policy.fuzzy_min_length and joined in self._plain:
                for slot in self._plain[joined]:
                    yield slot, f"{joined}~{left} {right}"

    def matches(self, normalised: NormalisedText) -> dict[_Slot, set[str]]:
        """Every slot hit by any reading of a prompt, with the terms (or near-misses) that hit."""
        hits: dict[_Slot, set[str]] = defaultdict(set)
        for variant in normalised.variants:
            text = self._allow.sub(_BARRIER, variant) if self._allow else variant
            for slot, term in (*self._exact_hits(text), *self._near_hits(text)):
                hits[slot].add(term)
        return hits

    def check(self, prompt: str, *, stage: Stage = "prompt") -> Verdict:
        """Score each category in [0, 1] (1 = a term or a whole combo matched).

        Only decisive terms decide here; a match of an ambiguous term or combo is handed to the
        semantic stage (`detail.referred`), which judges it in context.
        """
        normalised = normalise(prompt)
        hits = self.matches(normalised)
        scores: dict[str, float] = {}
        decisive: dict[str, float] = {}
        matched: dict[str, tuple[str, ...]] = {}
        for name, category in self.policy.categories.items():
            parts = [
                [hits.get(_Slot(name, (i, j)), set()) for j in range(len(combo))]
                for i, combo in enumerate(category.combos)
            ]
            decisive[name] = 1.0 if hits.get(_Slot(name, decisive=True)) else 0.0
            score = max(decisive[name], 1.0 if hits.get(_Slot(name)) else 0.0)
            for combo_hits in parts:
                score = max(score, sum(bool(h) for h in combo_hits) / len(combo_hits))
            scores[name] = score
            terms = set(hits.get(_Slot(name), set())).union(
                hits.get(_Slot(name, decisive=True), set()), *_flatten(parts)
            )
            if terms:
                matched[name] = tuple(sorted(terms))
        thresholds = {n: c.thresholds.lexical for n, c in self.policy.categories.items()}
        active = {n for n, c in self.policy.categories.items() if c.action is not Decision.ALLOW}
        flagged = tuple(
            n for n, s in decisive.items() if n in active and s > 0 and s >= thresholds[n]
        )
        referred = [
            n
            for n, s in scores.items()
            if n in active and n not in flagged and s > 0 and s >= thresholds[n]
        ]
        decision = strictest(self.policy.categories[n].action for n in flagged)
        return Verdict(
            stage=stage,
            checker="lexical",
            checker_version=CHECKER_VERSION,
            policy_version=self.policy.version,
            decision=decision if flagged else Decision.ALLOW,
            scores=scores,
            thresholds=thresholds,
            flagged=flagged,
            matched_terms=matched,
            detail={"normalised": normalised.text[:500], "referred": referred},
        )


def _flatten(parts: list[list[set[str]]]) -> Iterable[set[str]]:
    return (hit for combo in parts for hit in combo)
