"""/v1/admin/keys: create, list and revoke API keys (admin keys only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from api.auth import require_admin_principal
from api.deps import SessionDep, SettingsDep
from api.schemas.keys import KeyCreate, KeyCreated, KeyPublic, KeysPublic, key_public
from shared.db import api_keys as key_store
from shared.db.models.api_key import NAME_LENGTH

router = APIRouter(
    prefix="/v1/admin/keys", tags=["admin"], dependencies=[Depends(require_admin_principal)]
)
KeyName = Annotated[str, Path(min_length=1, max_length=NAME_LENGTH)]


@router.post("", status_code=201, response_model=KeyCreated)
def create_key(body: KeyCreate, session: SessionDep, settings: SettingsDep) -> KeyCreated:
    """A new key; its secret is in this answer only (the server keeps a keyed hash)."""
    created = key_store.create_key(
        session=session,
        server_secret=settings.api_key_secret.get_secret_value(),
        name=body.name,
        rpm=body.rpm,
        max_active_jobs=body.max_active_jobs,
        is_admin=body.is_admin,
    )
    session.commit()
    return KeyCreated(**key_public(created.row).model_dump(), key=created.secret)


@router.get("", response_model=KeysPublic)
def list_keys(session: SessionDep) -> KeysPublic:
    """Every key (revoked ones too), oldest first, without secrets."""
    return KeysPublic(data=[key_public(row) for row in key_store.list_keys(session=session)])


@router.delete("/{name}", response_model=KeyPublic)
def revoke_key(name: KeyName, session: SessionDep) -> KeyPublic:
    """Revoke the key called `name`: it answers 401 invalid_api_key from now on."""
    row = key_store.revoke_key(session=session, name=name)
    session.commit()
    return key_public(row)
