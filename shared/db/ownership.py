"""Whose jobs a caller may see: its own (by API key, or the keyless ones) or, for an admin, all."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, true
from sqlalchemy.orm import Session

from shared.db.jobs import get_job
from shared.db.models import Job
from shared.errors import NotFound


@dataclass(frozen=True)
class Owner:
    """A reader's scope. `everyone` (admins) sees every job; otherwise only the jobs whose
    api_key_id equals `api_key_id`, where None means the keyless (local) principal's jobs."""

    api_key_id: str | None
    everyone: bool = False

    def allows(self, job: Job) -> bool:
        """Whether this reader may see `job` (others answer 404, never 403)."""
        return self.everyone or job.api_key_id == self.api_key_id

    def clause(self) -> ColumnElement[bool]:
        """The WHERE clause on jobs for this reader."""
        if self.everyone:
            return true()
        if self.api_key_id is None:
            return Job.api_key_id.is_(None)
        return Job.api_key_id == self.api_key_id


EVERYONE = Owner(api_key_id=None, everyone=True)


def get_owned_job(*, session: Session, job_id: str, owner: Owner) -> Job:
    """The job `job_id` if `owner` may see it; NotFound (never a 403) otherwise."""
    job = get_job(session=session, job_id=job_id)
    if not owner.allows(job):
        raise NotFound(f"no job with id {job_id!r}", param="job_id")
    return job
