"""The one settings object (environment prefix UNCLIP_), validated at start-up and cached."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SIZES = ("64x64", "128x128", "256x256", "512x512", "1024x1024")
SAMPLERS = ("ddpm", "ddim", "dpmpp_2m")
PLACEHOLDER_SECRETS = frozenset({"", "change-me", "changeme", "admin", "secret", "password"})
MIN_PRODUCTION_SECRET_CHARS = 16


class Range(BaseModel):
    """An inclusive numeric range with a default inside it."""

    min: float
    max: float
    default: float

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.min <= self.default <= self.max:
            raise ValueError(
                f"range needs min <= default <= max, got {self.min} / {self.default} / {self.max}"
            )
        return self


class StepLimits(BaseModel):
    """Diffusion steps allowed per stage, and the defaults a job gets when it names none."""

    max_prior: int = Field(default=100, ge=1)
    max_decoder: int = Field(default=250, ge=1)
    max_upsampler: int = Field(default=50, ge=1)
    default_prior: int = Field(default=10, ge=1)
    default_decoder: int = Field(default=10, ge=1)
    default_upsampler: int = Field(default=4, ge=1)

    @model_validator(mode="after")
    def _defaults_within(self) -> Self:
        for stage in ("prior", "decoder", "upsampler"):
            default, top = getattr(self, f"default_{stage}"), getattr(self, f"max_{stage}")
            if default > top:
                raise ValueError(f"default_{stage}={default} exceeds max_{stage}={top}")
        return self


class Limits(BaseModel):
    """What a request may ask for. Environment: UNCLIP_LIMITS__<FIELD> (UNCLIP_LIMITS__MAX_N)."""

    max_prompt_chars: int = Field(default=1000, ge=1)
    min_n: int = Field(default=1, ge=1)
    max_n: int = Field(default=10, ge=1)
    sizes: tuple[str, ...] = SIZES
    # 256x256 is what the upsampler of the shipped family (and Karlo) produces natively.
    default_size: str = "256x256"
    max_upload_bytes: int = Field(default=4 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(default=2048 * 2048, ge=1)
    steps: StepLimits = StepLimits()
    prior_guidance: Range = Range(min=0.0, max=20.0, default=4.0)
    decoder_guidance: Range = Range(min=0.0, max=20.0, default=8.0)
    samplers: tuple[str, ...] = SAMPLERS
    default_sampler: str = "ddim"

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.min_n > self.max_n:
            raise ValueError(f"min_n={self.min_n} exceeds max_n={self.max_n}")
        bad = [s for s in self.sizes if s not in SIZES]
        if bad or not self.sizes:
            raise ValueError(f"sizes {list(self.sizes)} must be a non-empty subset of {SIZES}")
        if self.default_size not in self.sizes:
            raise ValueError(f"default_size {self.default_size!r} is not one of {self.sizes}")
        if self.default_sampler not in self.samplers:
            raise ValueError(f"default_sampler {self.default_sampler!r} not in {self.samplers}")
        return self


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
    # Base of image URLs in responses; None means the URL the request came in on.
    public_base_url: str | None = None
    limits: Limits = Limits()
    task_soft_time_limit_s: int = Field(default=600, ge=1)
    task_time_limit_s: int = Field(default=660, ge=1)
    visibility_timeout_s: int = Field(default=3600, ge=1)
    max_attempts: int = Field(default=3, ge=1)
    progress_interval_s: float = Field(default=1.0, gt=0)
    heartbeat_interval_s: float = Field(default=10.0, gt=0)
    heartbeat_stale_s: float = Field(default=120.0, gt=0)
    broker_retry_after_s: int = Field(default=30, ge=1)
    moderation_policy: Path = Path("policies/default.yaml")
    moderation_text_encoder: Literal["minilm", "clip"] = "minilm"
    admin_token: SecretStr = SecretStr("change-me")

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

    @property
    def broker_dir(self) -> Path:
        """Folders of the kombu filesystem transport (used when broker_url is filesystem://)."""
        return self.data_dir / "broker"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment once."""
    return Settings()
