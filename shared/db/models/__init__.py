"""Typed table models; importing this package registers every table on Base.metadata."""

from shared.db.models.api_key import ApiKey
from shared.db.models.appeal import ModerationAppeal
from shared.db.models.embedding import Embedding
from shared.db.models.idempotency_record import IdempotencyRecord
from shared.db.models.image import JobImage
from shared.db.models.job import Job
from shared.db.models.job_event import JobEvent
from shared.db.models.moderation_action import ModerationAction
from shared.db.models.outbox import OutboxMessage
from shared.db.models.rate_limit_window import RateLimitWindow
from shared.db.models.review import ModerationReview
from shared.db.models.stage_attempt import StageAttempt
from shared.db.models.verdict import ModerationVerdict
from shared.db.models.webhook_delivery import WebhookAttempt, WebhookDelivery
from shared.db.models.worker import Worker

__all__ = [
    "ApiKey",
    "Embedding",
    "IdempotencyRecord",
    "Job",
    "JobEvent",
    "JobImage",
    "ModerationAction",
    "ModerationAppeal",
    "ModerationReview",
    "ModerationVerdict",
    "OutboxMessage",
    "RateLimitWindow",
    "StageAttempt",
    "WebhookAttempt",
    "WebhookDelivery",
    "Worker",
]
