"""Typed table models; importing this package registers every table on Base.metadata."""

from shared.db.models.api_key import ApiKey
from shared.db.models.image import JobImage
from shared.db.models.job import Job
from shared.db.models.review import ModerationReview
from shared.db.models.stage_attempt import StageAttempt
from shared.db.models.verdict import ModerationVerdict

__all__ = ["ApiKey", "Job", "JobImage", "ModerationReview", "ModerationVerdict", "StageAttempt"]
