"""The model families this API serves, by name, and how an OpenAI `model` field picks one.

The name comes from the family's family.json (shared/family_info.py, no torch), the
directory's name when this host holds no family. `dall-e-2` is accepted as an alias of the
served family, as OpenAI clients send it.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import InvalidInput
from shared.family_info import family_info
from shared.settings import Settings

DALL_E_2 = "dall-e-2"
OWNED_BY = "unclip-farm"


@dataclass(frozen=True)
class ServedFamily:
    """A family clients can name in `model`."""

    name: str
    native_size: str | None  # e.g. "64x64"; None when this host holds no family.json
    created: int  # unix seconds: family.json's modification time (0 if unknown)


def served_family(settings: Settings) -> ServedFamily:
    """The family settings.family names."""
    path = settings.family.expanduser().resolve()
    info = family_info(path)
    if info is None:
        # An API host without the weights (workers hold them): the directory names it.
        return ServedFamily(name=path.name, native_size=None, created=0)
    created = int((path / "family.json").stat().st_mtime)
    return ServedFamily(name=info.name, native_size=info.native_size, created=created)


def model_names(settings: Settings) -> tuple[str, ...]:
    """What `model` may be: the served family's name and the dall-e-2 alias."""
    return (served_family(settings).name, DALL_E_2)


def resolve_model(settings: Settings, model: str | None) -> ServedFamily:
    """The family a request's `model` picks (absent or dall-e-2: the served one), else 400."""
    family = served_family(settings)
    if model is None or model in (DALL_E_2, family.name):
        return family
    raise InvalidInput(
        f"model {model!r} is not served here; use one of {list(model_names(settings))} "
        "(or leave model out)",
        param="model",
        code="model_not_found",
    )
