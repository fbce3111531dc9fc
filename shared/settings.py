"""The one settings object (environment prefix UNCLIP_), validated at start-up and cached."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.job_params import MAX_GUIDANCE, MAX_N, MAX_PROMPT_CHARS, MAX_STEPS, SAMPLERS, SIZES

PLACEHOLDER_SECRETS = frozenset({"", "change-me", "changeme", "admin", "secret", "password"})
MIN_PRODUCTION_SECRET_CHARS = 16


# Job limits (issue 14, H-params): the options and ceilings are shared/job_params.py's; these
# narrow them per deployment. What a job leaves out comes from the family's family.json
# defaults (filled by the worker), not from settings.
class Range(BaseModel):
    """An inclusive numeric range."""

    min: float = Field(ge=0.0)
    max: float = Field(le=MAX_GUIDANCE)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.min <= self.max:
            raise ValueError(f"range needs min <= max, got {self.min} / {self.max}")
        return self


class StepLimits(BaseModel):
    """The most diffusion steps a job may ask of each stage."""

    max_prior: int = Field(default=100, ge=1, le=MAX_STEPS)
    max_decoder: int = Field(default=250, ge=1, le=MAX_STEPS)
    max_upsampler: int = Field(default=50, ge=1, le=MAX_STEPS)


class Limits(BaseModel):
    """What a request may ask for. Environment: UNCLIP_LIMITS__<FIELD> (UNCLIP_LIMITS__MAX_N)."""

    max_prompt_chars: int = Field(default=1000, ge=1, le=MAX_PROMPT_CHARS)
    min_n: int = Field(default=1, ge=1)
    max_n: int = Field(default=10, ge=1, le=MAX_N)
    sizes: tuple[str, ...] = SIZES
    max_upload_bytes: int = Field(default=4 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(default=2048 * 2048, ge=1)
    steps: StepLimits = StepLimits()
    prior_guidance: Range = Range(min=0.0, max=20.0)
    decoder_guidance: Range = Range(min=0.0, max=20.0)
    samplers: tuple[str, ...] = SAMPLERS

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.min_n > self.max_n:
            raise ValueError(f"min_n={self.min_n} exceeds max_n={self.max_n}")
        for name, allowed in (("sizes", SIZES), ("samplers", SAMPLERS)):
            chosen = getattr(self, name)
            if not chosen or any(value not in allowed for value in chosen):
                raise ValueError(
                    f"{name} {list(chosen)} must be a non-empty subset of {list(allowed)}"
                )
        return self


# Fleet view, metrics and logs (issue 10, H-observability). Environment: UNCLIP_FLEET__<FIELD>.
class Fleet(BaseModel):
    """The worker registry and `GET /v1/fleet`; workers reuse heartbeat_interval_s/_stale_s."""

    # Throughput per stage counts stage attempts finished within this window.
    throughput_window_s: float = Field(default=300.0, gt=0)
    # Registry rows of workers stopped or lost longer ago than this are deleted.
    retention_s: float = Field(default=24 * 3600.0, gt=0)
    # Each worker serves Prometheus /metrics on this port (None, "" or "off": no endpoint; 0: any
    # free port).
    metrics_port: int | None = Field(default=9808, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    # Worker log lines: one JSON object each, or structlog's console renderer for humans.
    log_format: Literal["json", "console"] = "json"

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _port_off(cls, value: object) -> object:
        """An empty value or "off" turns the worker endpoint off (environments hold strings)."""
        return None if isinstance(value, str) and value.strip().lower() in ("", "off") else value


class Sweeper(BaseModel):
    """The sweeper (shared/sweeper.py). Environment: UNCLIP_SWEEPER__<FIELD>.

    Every `interval_s` it re-publishes jobs that should be moving but have no message or claim:
    queued or between stages with no claim for `stuck_after_s`, claims whose heartbeat went
    stale (heartbeat_stale_s), and stage messages recorded in the outbox but never published.
    """

    stuck_after_s: float = Field(default=300.0, gt=0)
    interval_s: float = Field(default=15.0, gt=0)


# Dynamic batching (issue 10, H-throughput; worker/tasks/batching.py).
class Batch(BaseModel):
    """Environment: UNCLIP_BATCH__<FIELD>. A stage worker that picks up a job also claims up
    to `max` - 1 compatible jobs waiting in the database (same stage, steps, sampler and size),
    looking for them for up to `wait_ms`, and runs them as one batch of the model library.
    `max` = 1 (the default) renders every job alone."""

    max: int = Field(default=1, ge=1, le=64)
    wait_ms: int = Field(default=0, ge=0, le=60_000)


# Webhooks and job events (issue 15). Environment: UNCLIP_WEBHOOKS__<FIELD>.
class Webhooks(BaseModel):
    """Signed webhook deliveries (Standard Webhooks), sent from the outbox by a dispatcher."""

    # Private, loopback and link-local targets: None means allowed outside production only.
    allow_private_targets: bool | None = None
    # Seconds a receiver has to answer one delivery attempt.
    timeout_s: float = Field(default=10.0, gt=0)
    # How often the dispatcher looks for due deliveries.
    poll_interval_s: float = Field(default=0.5, gt=0)


# Retention (issue 15). Environment: UNCLIP_RETENTION__<FIELD>; None keeps things forever.
class Retention(BaseModel):
    """How long a finished job keeps its files; the cleanup runs in the sweeper's loop."""

    # After this many seconds from finishing, a job's inputs, images and embeddings are
    # deleted from storage and the job is `expired` (its images answer 410).
    job_s: float | None = Field(default=None, gt=0)
    # Inputs (uploaded image and mask) may go earlier than the outputs.
    inputs_s: float | None = Field(default=None, gt=0)


class Settings(BaseSettings):
    """Everything the API, the workers and the commands are configured by."""

    model_config = SettingsConfigDict(
        env_prefix="UNCLIP_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    env: Literal["development", "production"] = "development"
    data_dir: Path = Path("var")
    # Empty means "the embedded default under data_dir", filled in by _fill_defaults.
    database_url: str = ""
    broker_url: str = "filesystem://"
    storage_url: str = ""
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    family: Path = Path("models/shapes")
    device: Literal["cpu", "cuda", "auto"] = "auto"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    # UNCLIP_REPRODUCIBLE: render in batch-invariant mode, so a job's bytes do not depend on
    # what it is batched with (CPU workers; slower). False (default): full speed, and batched
    # images agree with unbatched ones within float tolerance (worker/unclip/batch_invariance.py).
    reproducible: bool = False
    # UNCLIP_FROZEN_GRAPHS: run the decoder and upsampler calls as frozen TorchScript graphs
    # on CPU (the eager bytes, 10-25% less CPU per call; worker/unclip/frozen_graphs.py).
    frozen_graphs: bool = True
    # UNCLIP_FROZEN_GRAPHS_TRACE_AFTER_CALLS: eager calls of a batch shape before its graph is
    # traced (0: on first use; unset: the library's default, TRACE_AFTER_CALLS).
    frozen_graphs_trace_after_calls: int | None = Field(default=None, ge=0)
    # Base of image URLs in responses; None means the URL the request came in on.
    public_base_url: str | None = None
    limits: Limits = Limits()
    task_soft_time_limit_s: int = Field(default=600, ge=1)
    task_time_limit_s: int = Field(default=660, ge=1)
    visibility_timeout_s: int = Field(default=3600, ge=1)
    max_attempts: int = Field(default=3, ge=1)
    progress_interval_s: float = Field(default=1.0, gt=0)
    # How often a running stage reads its job's status to see a cancel (0: every step).
    cancel_check_interval_s: float = Field(default=0.25, ge=0)
    heartbeat_interval_s: float = Field(default=10.0, gt=0)
    heartbeat_stale_s: float = Field(default=120.0, gt=0)
    broker_retry_after_s: int = Field(default=30, ge=1)
    # UNCLIP_PIPELINE: pool processes per worker that take turns on its device (`unclip worker
    # --concurrency` defaults to it; worker/tasks/device_turns.py). With 2, one process's stage
    # runs the model while the other claims, moderates, stores and hands off beside it; the
    # model still runs one stage at a time. 1 (the default): one process, no turns taken.
    pipeline: int = Field(default=1, ge=1, le=8)
    # Fleet reliability (issue 10, H-reliability): the sweeper, graceful drain, timeouts.
    sweeper: Sweeper = Sweeper()
    # SIGTERM: a running stage may go on for this long less the exit's reserve (1 s,
    # worker/tasks/drain.py), else it stops at a step boundary and hands its job back; the
    # worker is then gone about when this runs out (measured within 1 s past it, loaded 2-core
    # machine, docs/benchmarks.md). Compose's stop_grace_period must exceed it.
    drain_timeout_s: float = Field(default=60.0, ge=0)
    # Dependencies fail fast: connect and statement/socket timeouts on PostgreSQL and Redis, so
    # a server that is down or hung answers 503 within about a second (shared/db/engine.py,
    # shared/queue/celery_app.py). Opening a database connection (a client-side deadline):
    db_connect_timeout_s: float = Field(default=1.0, gt=0)
    # The pool's liveness check of a pooled connection before each use (a live server answers
    # in milliseconds; a check that runs out costs only a reconnect):
    db_ping_timeout_s: float = Field(default=0.25, gt=0)
    # Waiting for a free pooled connection when all are in use:
    db_pool_timeout_s: float = Field(default=1.0, gt=0)
    db_statement_timeout_s: float = Field(default=5.0, gt=0)
    # Each Redis command (a publish, a rate-limit count, the readiness ping), and each connect:
    broker_socket_timeout_s: float = Field(default=1.0, gt=0)
    broker_connect_timeout_s: float = Field(default=1.0, gt=0)
    moderation_policy: Path = Path("policies/default.yaml")
    moderation_text_encoder: Literal["minilm", "clip"] = "minilm"
    admin_token: SecretStr = SecretStr("change-me")
    # API keys, rate limits, quotas, idempotency (issue 14, H-auth; api/auth.py).
    # require_api_keys defaults to true in production: keyless requests then get a 401.
    require_api_keys: bool = Field(default_factory=lambda data: data.get("env") == "production")
    # Server secret of the keyed hash (HMAC-SHA256) under which API keys are stored.
    api_key_secret: SecretStr = SecretStr("change-me")
    # Defaults for keys that set no rpm / max_active_jobs of their own (create endpoints).
    key_default_rpm: int = Field(default=60, ge=1)
    key_default_max_active_jobs: int = Field(default=8, ge=1)
    # OpenAI-compatible images (issue 14, H-openai; api/routes/images.py, shared/image_urls.py).
    # How long POST /v1/images/* waits for its job before answering 504 (code "timeout").
    sync_timeout_s: float = Field(default=300.0, gt=0)
    # Image URLs in responses are signed (HMAC-SHA256 with url_signing_secret) and expire
    # image_url_ttl_s after they are made; built on public_base_url, required in production.
    image_url_ttl_s: int = Field(default=3600, ge=1)
    url_signing_secret: SecretStr = SecretStr("change-me")
    # Fleet view, worker /metrics and structured logs (issue 10, H-observability).
    fleet: Fleet = Fleet()
    # Webhook deliveries and their dispatcher (issue 15).
    webhooks: Webhooks = Webhooks()
    retention: Retention = Retention()
    # Dynamic batching of compatible jobs (issue 10, H-throughput).
    batch: Batch = Batch()
    # Moderation round 2 (issue 13, H-moderation): on PostgreSQL `unclip migrate` connects
    # with this owner URL (it owns the tables and the ledger's triggers) and grants the role of
    # database_url (the API's and the workers') only INSERT and SELECT on the ledger. Empty:
    # migrate with database_url itself (one role; the ledger's owner can bypass its triggers).
    migration_database_url: str = ""

    @field_validator("storage_url")
    @classmethod
    def _storage_scheme(cls, value: str) -> str:
        if value and not (value.startswith("file:///") or value.startswith("s3://")):
            raise ValueError(
                f"storage_url {value!r} must be file:///absolute/path or s3://bucket/prefix"
            )
        if value.startswith("s3://") and not value[len("s3://") :].split("/")[0]:
            raise ValueError(f"storage_url {value!r} names no bucket; use s3://bucket/prefix")
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str) -> str:
        allowed = ("filesystem://", "redis://", "rediss://", "memory://")
        if not value.startswith(allowed):
            raise ValueError(f"broker_url {value!r} must start with one of {allowed}")
        return value

    @model_validator(mode="after")
    def _fill_defaults(self) -> Self:
        data_dir = self.data_dir.expanduser().resolve()
        # The model is frozen; defaults derived from data_dir are filled in once, here.
        object.__setattr__(self, "data_dir", data_dir)
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{data_dir / 'unclip.db'}")
        if not self.storage_url:
            object.__setattr__(self, "storage_url", (data_dir / "storage").as_uri())
        return self

    @model_validator(mode="after")
    def _time_limits(self) -> Self:
        if self.task_soft_time_limit_s >= self.task_time_limit_s:
            raise ValueError(
                f"task_soft_time_limit_s={self.task_soft_time_limit_s} must be below "
                f"task_time_limit_s={self.task_time_limit_s}"
            )
        if self.visibility_timeout_s < 2 * self.task_time_limit_s:
            raise ValueError(
                f"visibility_timeout_s={self.visibility_timeout_s} must be at least twice "
                f"task_time_limit_s={self.task_time_limit_s} (>= {2 * self.task_time_limit_s}), "
                "or a running task is delivered again"
            )
        if self.heartbeat_stale_s <= 2 * self.heartbeat_interval_s:
            raise ValueError(
                f"heartbeat_stale_s={self.heartbeat_stale_s} must exceed twice "
                f"heartbeat_interval_s={self.heartbeat_interval_s}"
            )
        return self

    @model_validator(mode="after")
    def _production_safe(self) -> Self:
        if self.env != "production":
            return self
        token = self.admin_token.get_secret_value()
        if token.lower() in PLACEHOLDER_SECRETS or len(token) < MIN_PRODUCTION_SECRET_CHARS:
            raise ValueError(
                "admin_token is a placeholder or shorter than "
                f"{MIN_PRODUCTION_SECRET_CHARS} characters; set UNCLIP_ADMIN_TOKEN to a real "
                "secret in production"
            )
        if self.database_url.startswith("sqlite"):
            raise ValueError(
                f"database_url {self.database_url!r} is SQLite; production needs "
                "postgresql+psycopg://... (UNCLIP_DATABASE_URL)"
            )
        return self

    @model_validator(mode="after")
    def _api_keys_safe(self) -> Self:
        key_secret = self.api_key_secret.get_secret_value()
        if self.env == "production" and (
            key_secret.lower() in PLACEHOLDER_SECRETS
            or len(key_secret) < MIN_PRODUCTION_SECRET_CHARS
        ):
            raise ValueError(
                "api_key_secret is a placeholder or shorter than "
                f"{MIN_PRODUCTION_SECRET_CHARS} characters; set UNCLIP_API_KEY_SECRET to a real "
                "secret in production"
            )
        return self

    @model_validator(mode="after")
    def _image_urls_safe(self) -> Self:
        if self.public_base_url is not None and not self.public_base_url.startswith(
            ("http://", "https://")
        ):
            raise ValueError(
                f"public_base_url {self.public_base_url!r} must start with http:// or https://"
            )
        if self.env != "production":
            return self
        if not self.public_base_url:
            raise ValueError(
                "public_base_url is not set; production builds image URLs only on "
                "UNCLIP_PUBLIC_BASE_URL (e.g. https://images.example.com), never the Host header"
            )
        secret = self.url_signing_secret.get_secret_value()
        if secret.lower() in PLACEHOLDER_SECRETS or len(secret) < MIN_PRODUCTION_SECRET_CHARS:
            raise ValueError(
                "url_signing_secret is a placeholder or shorter than "
                f"{MIN_PRODUCTION_SECRET_CHARS} characters; set UNCLIP_URL_SIGNING_SECRET to a "
                "real secret in production"
            )
        return self

    @property
    def broker_dir(self) -> Path:
        """Folders of the kombu filesystem transport (used when broker_url is filesystem://)."""
        return self.data_dir / "broker"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment once."""
    return Settings()
