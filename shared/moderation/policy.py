"""The versioned moderation policy file: load, validate with clear errors, typed result."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from shared.moderation.verdict import Decision

POLICY_FORMAT = "unclip-policy/1"
REQUIRED_CATEGORIES = (
    "sexual",
    "sexual/minors",
    "hate",
    "harassment",
    "violence",
    "violence/graphic",
    "self-harm",
    "illicit",
)
_ACTIONS = tuple(d.value for d in Decision)
_TOP_KEYS = {
    "format",
    "version",
    "description",
    "cancel_queued_on_block",
    "matching",
    "allow_phrases",
    "semantic",
    "image",
    "categories",
    "enforcement",
}
_CATEGORY_KEYS = {
    "action",
    "description",
    "decisive_terms",
    "terms",
    "combos",
    "exemplars",
    "thresholds",
}


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the field, the value and the rule."""


@dataclass(frozen=True)
class Thresholds:
    """Per-category thresholds; a semantic score in [hold, semantic) holds for review."""

    lexical: float = 1.0
    semantic: float = 0.6
    semantic_hold: float | None = None


@dataclass(frozen=True)
class Category:
    """One harm category: how it is recognised and what happens when it is."""

    name: str
    action: Decision
    description: str
    terms: tuple[str, ...]  # ambiguous: a match is handed to the semantic stage
    combos: tuple[tuple[tuple[str, ...], ...], ...]  # each: term lists that must all match
    exemplars: tuple[str, ...]
    thresholds: Thresholds
    decisive_terms: tuple[str, ...] = ()  # unambiguous: a match decides at the lexical stage


@dataclass(frozen=True)
class ImageConcept:
    """A concept written as text; CLIP image embeddings near it are flagged (per CLIP model)."""

    text: str
    category: str
    thresholds: Mapping[str, float]  # CLIP model name (or "default") -> cosine threshold


@dataclass(frozen=True)
class Enforcement:
    """What a hard block does to the key that sent it."""

    cancel_queued_on_block: bool = False
    suspend_after_blocks: int | None = None  # N hard blocks within the window suspend the key
    suspend_window_s: float = 86400.0


@dataclass(frozen=True)
class Policy:
    """A validated policy; `version` goes into every verdict row."""

    version: str
    categories: Mapping[str, Category]
    allow_phrases: tuple[str, ...]
    fuzzy_min_length: int
    benign_exemplars: tuple[str, ...]
    semantic_margin: float
    semantic_calibrated_for: tuple[str, ...]  # text encoder names the thresholds were set for
    semantic_when_uncalibrated: Decision
    image_concepts: tuple[ImageConcept, ...]
    image_when_uncalibrated: Decision
    cancel_queued_on_block: bool
    source: str
    semantic_head: Path | None = None  # the classifier head file (resolved beside the policy)
    enforcement: Enforcement = Enforcement()


def _fail(where: str, message: str) -> PolicyError:
    return PolicyError(f"{where}: {message}")


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(where, f"expected a mapping, got {type(value).__name__} {value!r:.60}")
    return value


def _strings(value: Any, where: str, *, allow_empty: bool = True) -> tuple[str, ...]:
    if value is None:
        value = []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _fail(where, f"expected a list of non-empty strings, got {value!r:.80}")
    if not allow_empty and not value:
        raise _fail(where, "must not be empty")
    return tuple(v.strip() for v in value)


def _number(value: Any, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _fail(where, f"{value!r} is not a number in [{low}, {high}]")
    return float(value)


def _unknown_keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        raise _fail(where, f"unknown keys {extra}; allowed: {sorted(allowed)}")


def _check_term(term: str, where: str) -> None:
    if term.startswith("re:"):
        try:
            re.compile(term[3:])
        except re.error as exc:
            raise _fail(where, f"regular expression {term[3:]!r} does not compile: {exc}") from exc
    elif term.endswith("~") and (" " in term or not term[:-1].rstrip("*").isalnum()):
        raise _fail(where, f"{term!r}: the typo mark ~ is allowed only after one plain word")
    elif not all(word.rstrip("*").replace("'", "").isalnum() for word in term.rstrip("~").split()):
        raise _fail(
            where,
            f"{term!r}: plain terms are words of letters and digits, with an "
            "optional * at a word's end and ~ at the end; use re:... for anything else",
        )


def _parse_thresholds(value: Any, where: str) -> Thresholds:
    data = _mapping(value if value is not None else {}, where)
    _unknown_keys(data, {"lexical", "semantic", "semantic_hold"}, where)
    lexical = _number(data.get("lexical", 1.0), f"{where}.lexical", 0.0, 1.0)
    semantic = _number(data.get("semantic", 0.6), f"{where}.semantic", -1.0, 1.0)
    hold = data.get("semantic_hold")
    if hold is not None:
        hold = _number(hold, f"{where}.semantic_hold", -1.0, 1.0)
        if hold > semantic:
            raise _fail(where, f"semantic_hold {hold} must not exceed semantic {semantic}")
    return Thresholds(lexical=lexical, semantic=semantic, semantic_hold=hold)


def _parse_combos(value: Any, where: str) -> tuple[tuple[tuple[str, ...], ...], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _fail(where, f"expected a list of combos (lists of term lists), got {value!r:.80}")
    combos = []
    for i, combo in enumerate(value):
        if not isinstance(combo, list) or len(combo) < 2:
            raise _fail(f"{where}[{i}]", f"a combo is a list of >= 2 term lists, got {combo!r:.80}")
        combos.append(
            tuple(
                _strings(part, f"{where}[{i}][{j}]", allow_empty=False)
                for j, part in enumerate(combo)
            )
        )
    return tuple(combos)


def _parse_category(name: str, value: Any) -> Category:
    where = f"categories.{name}"
    data = _mapping(value, where)
    _unknown_keys(data, _CATEGORY_KEYS, where)
    action = data.get("action")
    if action not in _ACTIONS:
        raise _fail(f"{where}.action", f"{action!r} is not one of {', '.join(_ACTIONS)}")
    terms = _strings(data.get("terms"), f"{where}.terms")
    decisive = _strings(data.get("decisive_terms"), f"{where}.decisive_terms")
    combos = _parse_combos(data.get("combos"), f"{where}.combos")
    for term in decisive:
        _check_term(term, f"{where}.decisive_terms")
    for term in (*terms, *(t for combo in combos for part in combo for t in part)):
        _check_term(term, f"{where}.terms")
    return Category(
        name=name,
        action=Decision(action),
        description=str(data.get("description", "")),
        terms=terms,
        decisive_terms=decisive,
        combos=combos,
        exemplars=_strings(data.get("exemplars"), f"{where}.exemplars"),
        thresholds=_parse_thresholds(data.get("thresholds"), f"{where}.thresholds"),
    )


def _parse_concepts(value: Any, categories: Mapping[str, Category]) -> tuple[ImageConcept, ...]:
    if not isinstance(value, list):
        raise _fail("image.concepts", f"expected a list, got {value!r:.80}")
    concepts = []
    for i, item in enumerate(value):
        where = f"image.concepts[{i}]"
        data = _mapping(item, where)
        _unknown_keys(data, {"text", "category", "thresholds"}, where)
        text = data.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _fail(f"{where}.text", f"expected a non-empty string, got {text!r}")
        if data.get("category") not in categories:
            raise _fail(
                f"{where}.category", f"{data.get('category')!r} is not one of {sorted(categories)}"
            )
        raw = _mapping(data.get("thresholds"), f"{where}.thresholds")
        if not raw:
            raise _fail(f"{where}.thresholds", "name at least one CLIP model (or 'default')")
        thresholds = {
            str(k): _number(v, f"{where}.thresholds.{k}", -1.0, 1.0) for k, v in raw.items()
        }
        concepts.append(ImageConcept(text.strip(), str(data["category"]), thresholds))
    return tuple(concepts)


def _parse_head(value: Any, source: str) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _fail("semantic.head", f"expected a file name, got {value!r}")
    path = Path(value.strip())
    base = Path(source).parent if source and not source.startswith("<") else Path(".")
    return path if path.is_absolute() else base / path


def _parse_enforcement(data: Mapping[str, Any], cancel: bool) -> Enforcement:
    raw = _mapping(data.get("enforcement", {}), "enforcement")
    _unknown_keys(
        raw, {"cancel_queued_on_block", "suspend_after_blocks", "suspend_window_s"}, "enforcement"
    )
    cancel = raw.get("cancel_queued_on_block", cancel)
    if not isinstance(cancel, bool):
        raise _fail("enforcement.cancel_queued_on_block", f"expected true or false, got {cancel!r}")
    after = raw.get("suspend_after_blocks")
    if after is not None:
        after = int(_number(after, "enforcement.suspend_after_blocks", 1, 10_000))
    window = _number(raw.get("suspend_window_s", 86400), "enforcement.suspend_window_s", 1, 1e8)
    return Enforcement(
        cancel_queued_on_block=cancel, suspend_after_blocks=after, suspend_window_s=window
    )


def parse_policy(data: Any, *, source: str = "<policy>") -> Policy:
    """Validate a decoded policy document; raises PolicyError naming the first bad field."""
    data = _mapping(data, source)
    _unknown_keys(data, _TOP_KEYS, source)
    if data.get("format") != POLICY_FORMAT:
        raise _fail("format", f"{data.get('format')!r} is not the supported {POLICY_FORMAT!r}")
    version = data.get("version")
    if not isinstance(version, str | int | float) or not str(version).strip():
        raise _fail("version", f"expected a non-empty version string, got {version!r}")
    raw_categories = _mapping(data.get("categories"), "categories")
    missing = [c for c in REQUIRED_CATEGORIES if c not in raw_categories]
    if missing:
        raise _fail(
            "categories",
            f"missing required categories {missing}; "
            f"every policy names all of {list(REQUIRED_CATEGORIES)} (action may be allow)",
        )
    categories = {str(k): _parse_category(str(k), v) for k, v in raw_categories.items()}
    matching = _mapping(data.get("matching", {}), "matching")
    _unknown_keys(matching, {"fuzzy_min_length"}, "matching")
    semantic = _mapping(data.get("semantic", {}), "semantic")
    _unknown_keys(
        semantic,
        {"benign_exemplars", "margin", "calibrated_for", "when_uncalibrated", "head"},
        "semantic",
    )
    semantic_uncalibrated = semantic.get("when_uncalibrated", "hold")
    if semantic_uncalibrated not in _ACTIONS:
        raise _fail(
            "semantic.when_uncalibrated", f"{semantic_uncalibrated!r} is not one of {_ACTIONS}"
        )
    image = _mapping(data.get("image", {}), "image")
    _unknown_keys(image, {"concepts", "when_uncalibrated"}, "image")
    uncalibrated = image.get("when_uncalibrated", "hold")
    if uncalibrated not in _ACTIONS:
        raise _fail("image.when_uncalibrated", f"{uncalibrated!r} is not one of {_ACTIONS}")
    cancel = data.get("cancel_queued_on_block", False)
    if not isinstance(cancel, bool):
        raise _fail("cancel_queued_on_block", f"expected true or false, got {cancel!r}")
    enforcement = _parse_enforcement(data, cancel)
    return Policy(
        version=str(version).strip(),
        categories=categories,
        allow_phrases=_strings(data.get("allow_phrases"), "allow_phrases"),
        fuzzy_min_length=int(
            _number(matching.get("fuzzy_min_length", 5), "matching.fuzzy_min_length", 3, 100)
        ),
        benign_exemplars=_strings(semantic.get("benign_exemplars"), "semantic.benign_exemplars"),
        semantic_margin=_number(semantic.get("margin", 0.0), "semantic.margin", -2.0, 2.0),
        semantic_calibrated_for=_strings(
            semantic.get("calibrated_for"), "semantic.calibrated_for", allow_empty=False
        ),
        semantic_when_uncalibrated=Decision(semantic_uncalibrated),
        image_concepts=_parse_concepts(image.get("concepts", []), categories),
        image_when_uncalibrated=Decision(uncalibrated),
        cancel_queued_on_block=enforcement.cancel_queued_on_block,
        source=source,
        semantic_head=_parse_head(semantic.get("head"), source),
        enforcement=enforcement,
    )


def load_policy(path: str | Path) -> Policy:
    """Read and validate a YAML (.yaml/.yml) or JSON (.json) policy file."""
    path = Path(path)
    if path.suffix not in {".yaml", ".yml", ".json"}:
        raise PolicyError(
            f"{path}: unsupported policy file type {path.suffix!r}; use .yaml, .yml or .json"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the moderation policy ({exc.strerror})") from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise PolicyError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}") from exc
    try:
        return parse_policy(data, source=str(path))
    except PolicyError as exc:
        raise PolicyError(f"{path}: {exc}") from exc
