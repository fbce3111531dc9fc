"""GET /v1/embeddings/{id}: a stored CLIP image embedding, as JSON or as a .npy file."""

from __future__ import annotations

import io
from typing import Annotated, Any, Literal, cast

import numpy as np
from fastapi import APIRouter, Query, Response
from safetensors.numpy import load as load_safetensors

from api.deps import PrincipalDep, SessionDep, StorageDep
from api.schemas.embeddings import EmbeddingPublic
from shared.db.embeddings import get_embedding
from shared.errors import NotFound

router = APIRouter(prefix="/v1", tags=["embeddings"])
TENSOR_KEY = "x"  # what worker/tasks/payloads.py names the stored tensor


def _vector(storage: StorageDep, key: str, row: int) -> Any:
    tensors = load_safetensors(storage.get_bytes(key))
    if TENSOR_KEY not in tensors or row >= tensors[TENSOR_KEY].shape[0]:
        raise NotFound(f"the stored embedding under {key!r} has no row {row}", param="id")
    return tensors[TENSOR_KEY][row].astype(np.float32)


@router.get(
    "/embeddings/{embedding_id}",
    response_model=EmbeddingPublic,
    responses={200: {"content": {"application/x-npy": {}}}},
)
def read_embedding(
    embedding_id: str,
    session: SessionDep,
    storage: StorageDep,
    principal: PrincipalDep,
    format: Annotated[Literal["json", "npy"], Query()] = "json",
) -> EmbeddingPublic | Response:
    """The vector, to the key that owns it (`?format=npy` for a NumPy .npy file)."""
    scope = None if principal.is_admin else principal.scope
    record = get_embedding(session, embedding_id, scope=scope, param="embedding_id")
    vector = _vector(storage, record.storage_key, record.row)
    if format == "npy":
        buffer = io.BytesIO()
        np.save(buffer, vector)
        return Response(buffer.getvalue(), media_type="application/x-npy", headers={
            "Content-Disposition": f'attachment; filename="{embedding_id}.npy"'})  # fmt: skip
    source = cast(Literal["output", "input"], record.source)
    return EmbeddingPublic(id=record.id, job_id=record.job_id, source=source,
                           index=record.index, dim=int(vector.shape[0]),
                           embedding=[float(v) for v in vector])  # fmt: skip
