"""Request and response schemas of the HTTP API."""

from api.schemas.errors import ErrorBody, ErrorDetail
from api.schemas.jobs import (
    ImagePublic,
    JobCreate,
    JobError,
    JobPublic,
    JobsPublic,
    job_public,
)

__all__ = [
    "ErrorBody",
    "ErrorDetail",
    "ImagePublic",
    "JobCreate",
    "JobError",
    "JobPublic",
    "JobsPublic",
    "job_public",
]
