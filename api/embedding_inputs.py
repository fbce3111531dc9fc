"""At submit: copy a request's embedding inputs and mix images into the new job's own storage.

An embedding id must name an embedding the caller owns (an admin: any); an unknown or another
key's id is a 404 naming the field. The vector is copied (one (1, D) payload per input), so
the job does not depend on the source job staying around (retention, DELETE).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from api.auth import Principal
from api.embedding_request import EmbeddingRef
from api.job_request import JobRequest
from shared.db.embeddings import get_embedding
from shared.embedding_payload import read_row, vector_payload
from shared.errors import NotFound
from shared.job_params import StoredMixEntry
from shared.storage.base import Storage
from shared.storage.keys import input_key

PAYLOAD_TYPE = "application/x-safetensors"


@dataclass
class EmbeddingInputs:
    """The stored copies: the variation's embedding key, the mix entries as the row keeps
    them, and every key written (deleted again if the job is not created)."""

    input_embedding_key: str | None = None
    mix: list[dict[str, Any]] | None = None
    keys: list[str] = field(default_factory=list)


def _payload(session: Session, storage: Storage, ref: EmbeddingRef, scope: str | None) -> bytes:
    if ref.payload is not None:
        return ref.payload
    assert ref.embedding_id is not None  # a ref is an id or a payload
    record = get_embedding(session, ref.embedding_id, scope=scope, param=ref.param)
    try:
        return vector_payload(read_row(storage.get_bytes(record.storage_key), record.row))
    except (NotFound, ValueError) as exc:  # its job's files are gone (deleted or expired)
        raise NotFound(
            f"embedding {ref.embedding_id!r} is no longer stored", param=ref.param
        ) from exc


def _store(storage: Storage, found: EmbeddingInputs, key: str, data: bytes, kind: str) -> str:
    storage.put_bytes(key, data, kind)
    found.keys.append(key)
    return key


def store_embedding_inputs(
    factory: sessionmaker[Session],
    storage: Storage,
    job_id: str,
    checked: JobRequest,
    principal: Principal,
) -> EmbeddingInputs:
    """Resolve, check and copy the request's embedding inputs and mix images for `job_id`."""
    scope = None if principal.is_admin else principal.scope
    found = EmbeddingInputs()
    try:
        with factory() as session:
            if checked.embedding is not None:
                data = _payload(session, storage, checked.embedding, scope)
                key = input_key(job_id, "embedding.safetensors")
                found.input_embedding_key = _store(storage, found, key, data, PAYLOAD_TYPE)
            entries = []
            for j, part in enumerate(checked.mix):
                entry = StoredMixEntry(weight=part.weight, prompt=part.prompt)
                if part.embedding is not None:
                    data = _payload(session, storage, part.embedding, scope)
                    key = input_key(job_id, f"mix-{j}.safetensors")
                    entry.embedding_id = part.embedding.embedding_id
                    entry.embedding_key = _store(storage, found, key, data, PAYLOAD_TYPE)
                if part.image is not None:
                    key = input_key(job_id, f"mix-{j}.{part.image.extension}")
                    image = part.image
                    entry.image_key = _store(storage, found, key, image.data, image.content_type)
                entries.append(entry.model_dump(exclude_none=True))
            found.mix = entries or None
    except BaseException:
        for key in found.keys:
            storage.delete(key)
        raise
    return found
