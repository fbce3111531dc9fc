"""/v1/models: the served model families in OpenAI's list shape (the dall-e-2 alias included)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api.deps import SettingsDep
from api.schemas.images import MAX_MODEL_CHARS, ModelPublic, ModelsPublic
from api.served_families import DALL_E_2, OWNED_BY, model_names, served_family
from shared.errors import NotFound
from shared.settings import Settings

router = APIRouter(prefix="/v1", tags=["openai"])


def _models(settings: Settings) -> list[ModelPublic]:
    family = served_family(settings)
    return [
        ModelPublic(id=name, created=family.created, owned_by=OWNED_BY)
        for name in (family.name, DALL_E_2)
    ]


@router.get("/models", response_model=ModelsPublic)
def list_models(settings: SettingsDep) -> ModelsPublic:
    """The families `model` may name; dall-e-2 is an alias of the served family."""
    return ModelsPublic(data=_models(settings))


@router.get("/models/{model_id}", response_model=ModelPublic)
def read_model(
    model_id: Annotated[str, Path(max_length=MAX_MODEL_CHARS)], settings: SettingsDep
) -> ModelPublic:
    """One served family (or the dall-e-2 alias); 404 naming the served ones otherwise."""
    for model in _models(settings):
        if model.id == model_id:
            return model
    raise NotFound(
        f"model {model_id!r} is not served here; served: {list(model_names(settings))}",
        param="model",
        code="model_not_found",
    )
