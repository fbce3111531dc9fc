"""Initial schema: jobs, job_images, stage_attempts, moderation tables and api_keys.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision: str | None = None
branch_labels = None
depends_on = None

ID = sa.String(36)
KEY = sa.String(512)


def _ts(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _create_api_keys() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("key_hash", sa.String(128), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        _ts("created_at", nullable=False),
        _ts("revoked_at"),
        sa.Column("quota_images_per_day", sa.Integer),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )


def _create_jobs() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", ID, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("size", sa.String(16), nullable=False),
        sa.Column("seed", sa.BigInteger, nullable=False),
        sa.Column("sampler", sa.String(16), nullable=False),
        sa.Column("steps_prior", sa.Integer, nullable=False),
        sa.Column("steps_decoder", sa.Integer, nullable=False),
        sa.Column("steps_upsampler", sa.Integer, nullable=False),
        sa.Column("prior_guidance", sa.Float, nullable=False),
        sa.Column("decoder_guidance", sa.Float, nullable=False),
        sa.Column("input_image_key", KEY),
        sa.Column("mask_key", KEY),
        sa.Column("api_key_id", ID),
        sa.Column("idempotency_key", sa.String(255)),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("worker_id", sa.String(255)),
        _ts("heartbeat_at"),
        sa.Column("progress", sa.Float, nullable=False),
        sa.Column("progress_stage", sa.String(16)),
        sa.Column("progress_step", sa.Integer),
        sa.Column("progress_total", sa.Integer),
        sa.Column("prior_output_key", KEY),
        sa.Column("decoder_output_key", KEY),
        sa.Column("error_code", sa.String(64)),
        sa.Column("error_message", sa.Text),
        sa.Column("status_reason", sa.String(64)),
        sa.Column("webhook_url", sa.String(2048)),
        _ts("created_at", nullable=False),
        _ts("started_at"),
        _ts("finished_at"),
        _ts("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.ForeignKeyConstraint(
            ["api_key_id"], ["api_keys.id"], name="fk_jobs_api_key_id_api_keys"
        ),
        sa.UniqueConstraint("api_key_id", "idempotency_key", name="uq_jobs_api_key_idempotency"),
    )
    op.create_index("ix_jobs_status_created_at", "jobs", ["status", "created_at"])
    op.create_index("ix_jobs_created_at_id", "jobs", ["created_at", "id"])


def _create_job_children() -> None:
    op.create_table(
        "job_images",
        sa.Column("id", ID, nullable=False),
        sa.Column("job_id", ID, nullable=False),
        sa.Column("index", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("storage_key", KEY, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("published", sa.Boolean, nullable=False, server_default=sa.false()),
        _ts("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_job_images"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_job_images_job_id_jobs", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("job_id", "index", name="uq_job_images_job_id_index"),
    )
    op.create_index("ix_job_images_job_id", "job_images", ["job_id"])
    op.create_table(
        "stage_attempts",
        sa.Column("id", ID, nullable=False),
        sa.Column("job_id", ID, nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("worker_id", sa.String(255)),
        sa.Column("status", sa.String(16), nullable=False),
        _ts("started_at", nullable=False),
        _ts("finished_at"),
        sa.Column("error", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_stage_attempts"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_stage_attempts_job_id_jobs", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_stage_attempts_job_id", "stage_attempts", ["job_id"])


def _create_moderation() -> None:
    op.create_table(
        "moderation_verdicts",
        sa.Column("id", ID, nullable=False),
        sa.Column("job_id", ID),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("checker", sa.String(64), nullable=False),
        sa.Column("checker_version", sa.String(64), nullable=False),
        sa.Column("policy_version", sa.String(64), nullable=False),
        sa.Column("scores", sa.JSON, nullable=False),
        sa.Column("thresholds", sa.JSON, nullable=False),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("matched_terms", sa.JSON, nullable=False),
        _ts("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_moderation_verdicts"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_moderation_verdicts_job_id_jobs"),
    )
    op.create_index("ix_moderation_verdicts_job_id", "moderation_verdicts", ["job_id"])
    op.create_table(
        "moderation_reviews",
        sa.Column("id", ID, nullable=False),
        sa.Column("job_id", ID, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("reviewer", sa.String(128), nullable=False),
        _ts("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_moderation_reviews"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_moderation_reviews_job_id_jobs"),
    )
    op.create_index("ix_moderation_reviews_job_id", "moderation_reviews", ["job_id"])


def upgrade() -> None:
    _create_api_keys()
    _create_jobs()
    _create_job_children()
    _create_moderation()


def downgrade() -> None:
    for table in ("moderation_reviews", "moderation_verdicts", "stage_attempts", "job_images"):
        op.drop_table(table)
    op.drop_table("jobs")
    op.drop_table("api_keys")
