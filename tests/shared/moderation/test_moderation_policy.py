"""The policy file: the shipped one validates; each kind of mistake names its field and value."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.moderation.policy import REQUIRED_CATEGORIES, PolicyError, load_policy, parse_policy
from shared.moderation.verdict import Decision

DEFAULT = Path(__file__).resolve().parents[3] / "policies" / "default.yaml"


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT.read_text(encoding="utf-8"))


def test_default_policy_loads_with_every_required_category() -> None:
    policy = load_policy(DEFAULT)
    assert set(REQUIRED_CATEGORIES) <= set(policy.categories)
    assert policy.categories["sexual/minors"].action is Decision.BLOCK
    assert policy.version
    assert all(c.exemplars for c in policy.categories.values())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(format="v9"), "format: 'v9' is not the supported"),
        (lambda d: d["categories"].pop("hate"), "missing required categories ['hate']"),
        (
            lambda d: d["categories"]["hate"].update(action="blok"),
            "categories.hate.action: 'blok' is not one of allow, hold, block",
        ),
        (
            lambda d: d["categories"]["hate"]["thresholds"].update(semantic=1.5),
            "categories.hate.thresholds.semantic: 1.5 is not a number in [-1.0, 1.0]",
        ),
        (lambda d: d["categories"]["hate"]["terms"].append("re:(unclosed"), "does not compile"),
        (
            lambda d: d["categories"]["hate"]["terms"].append("two words~"),
            "the typo mark ~ is allowed only after one plain word",
        ),
        (lambda d: d["categories"]["hate"].update(colour="red"), "unknown keys ['colour']"),
        (
            lambda d: d["image"]["concepts"].append(
                {"text": "x", "category": "nope", "thresholds": {"default": 0.2}}
            ),
            "'nope' is not one of",
        ),
        (lambda d: d.update(cancel_queued_on_block="yes"), "expected true or false, got 'yes'"),
        (
            lambda d: d["enforcement"].update(suspend_after_blocks=0),
            "enforcement.suspend_after_blocks: 0 is not a number in [1, 10000]",
        ),
        (lambda d: d["enforcement"].update(ban=True), "enforcement: unknown keys ['ban']"),
        (
            lambda d: d["categories"]["hate"]["decisive_terms"].append("a b~"),
            "categories.hate.decisive_terms: 'a b~'",
        ),
        (lambda d: d["semantic"].update(head=""), "semantic.head: expected a file name"),
    ],
)
def test_bad_policy_is_refused_with_a_clear_message(
    raw: dict[str, Any], mutate: Any, message: str
) -> None:
    data = copy.deepcopy(raw)
    mutate(data)
    with pytest.raises(PolicyError, match=None) as info:
        parse_policy(data)
    assert message in str(info.value)


def test_the_default_policy_names_its_head_enforcement_and_decisive_terms() -> None:
    policy = load_policy(DEFAULT)
    assert policy.semantic_head == DEFAULT.parent / "default.head.json"  # beside the policy
    assert policy.semantic_head.is_file()
    assert policy.enforcement.cancel_queued_on_block and policy.enforcement.suspend_after_blocks
    assert "gas the jews" in policy.categories["hate"].decisive_terms
    assert "nude" in policy.categories["sexual"].terms  # ambiguous: judged in context


def test_load_policy_names_the_file_and_the_problem(tmp_path: Path) -> None:
    missing = tmp_path / "none.yaml"
    with pytest.raises(PolicyError, match="none.yaml: cannot read"):
        load_policy(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("categories: [unclosed", encoding="utf-8")
    with pytest.raises(PolicyError, match="broken.yaml: not valid YAML"):
        load_policy(broken)
    with pytest.raises(PolicyError, match="use .yaml, .yml or .json"):
        load_policy(tmp_path / "policy.toml")
