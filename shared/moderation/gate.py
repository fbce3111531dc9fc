"""The API's prompt gate: the cached lexical checker for the configured policy file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from shared.moderation.lexical import LexicalChecker
from shared.moderation.policy import Policy, load_policy

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def resolve_policy_path(path: str | Path) -> Path:
    """`path` as given when it exists; a relative one is also looked up under the project root."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or candidate.exists():
        return candidate
    return PROJECT_ROOT / candidate


@lru_cache(maxsize=4)
def _policy(resolved: str) -> Policy:
    return load_policy(resolved)


def policy_for(path: str | Path) -> Policy:
    """The validated policy at `path`, loaded once per process (restart to pick up edits)."""
    return _policy(str(resolve_policy_path(path)))


@lru_cache(maxsize=4)
def _checker(resolved: str) -> LexicalChecker:
    return LexicalChecker(_policy(resolved))


def lexical_checker_for(path: str | Path) -> LexicalChecker:
    """The compiled lexical checker of the policy at `path`, built once per process."""
    return _checker(str(resolve_policy_path(path)))
