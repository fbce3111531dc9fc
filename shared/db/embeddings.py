"""Embedding records: ids for the CLIP image embeddings a job stored, and who may read them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from shared.db.models import Job
from shared.db.models.embedding import Embedding
from shared.errors import NotFound

LOCAL_SCOPE = "local"


def new_embedding_id() -> str:
    return f"emb_{uuid.uuid4().hex}"


def record_embeddings(
    session: Session, job: Job, *, storage_key: str, dim: int, variation_input: bool
) -> list[Embedding]:
    """Ids for the prior's stored (n, D) output: one per output image, and for a variation of
    an uploaded image also one for that input (every row holds its embedding)."""
    scope = job.api_key_id or LOCAL_SCOPE
    rows = [Embedding(id=new_embedding_id(), job_id=job.id, scope=scope, source="output",
                      index=i, storage_key=storage_key, row=i, dim=dim)
            for i in range(job.n)]  # fmt: skip
    if variation_input:
        rows.append(Embedding(id=new_embedding_id(), job_id=job.id, scope=scope, source="input",
                              index=0, storage_key=storage_key, row=0, dim=dim))  # fmt: skip
    session.add_all(rows)
    return rows


def replace_embeddings(
    session: Session, job: Job, *, storage_key: str, dim: int, variation_input: bool
) -> list[Embedding]:
    """record_embeddings for the output a stage completed with, dropping any earlier set of
    the job first, so a retried prior never leaves two (called in the completing transaction)."""
    session.execute(delete(Embedding).where(Embedding.job_id == job.id))
    return record_embeddings(
        session, job, storage_key=storage_key, dim=dim, variation_input=variation_input
    )


def embeddings_for_jobs(session: Session, job_ids: Sequence[str]) -> dict[str, list[Embedding]]:
    """Each job's embedding records, outputs by index, then its input."""
    found: dict[str, list[Embedding]] = {job_id: [] for job_id in job_ids}
    rows = session.scalars(
        select(Embedding).where(Embedding.job_id.in_(list(job_ids)))
        .order_by(Embedding.source.desc(), Embedding.index)
    ).all()  # fmt: skip
    for row in rows:
        found[row.job_id].append(row)
    return found


def get_embedding(
    session: Session, embedding_id: str, *, scope: str | None, param: str = "embedding_id"
) -> Embedding:
    """The record if `scope` owns it (None: an admin, any); NotFound otherwise, never 403."""
    row = session.get(Embedding, embedding_id)
    if row is None or (scope is not None and row.scope != scope):
        raise NotFound(f"no embedding with id {embedding_id!r}", param=param)
    return row
