"""0003_job_params on a database with data: the SQLite table rebuild keeps every child row."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from shared.db import migrate
from shared.db.engine import make_engine
from shared.settings import Settings

NOW = "2026-01-01 00:00:00"


def test_upgrade_keeps_images_and_verdicts_and_allows_nulls(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    migrate.upgrade(settings, "0002_moderation_ledger_immutable")
    engine = make_engine(settings)
    try:
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO jobs (id, kind, status, prompt, n, size, seed, sampler, steps_prior,"
                " steps_decoder, steps_upsampler, prior_guidance, decoder_guidance, attempt,"
                " progress, created_at, updated_at) VALUES ('j1', 'generate', 'succeeded', 'p',"
                f" 1, '64x64', 1, 'ddim', 1, 1, 1, 4.0, 8.0, 1, 1.0, '{NOW}', '{NOW}')"
            ))  # fmt: skip
            connection.execute(text(
                "INSERT INTO job_images (id, job_id, \"index\", attempt, storage_key, width,"
                " height, published, created_at)"
                f" VALUES ('i1', 'j1', 0, 1, 'k', 64, 64, 1, '{NOW}')"
            ))  # fmt: skip
            connection.execute(text(
                "INSERT INTO moderation_verdicts (id, job_id, stage, checker, checker_version,"
                " policy_version, scores, thresholds, decision, matched_terms, created_at) VALUES"
                " ('v1', 'j1', 'prompt', 'lexical', '1', '1', '{}', '{}', 'allow', '{}',"
                f" '{NOW}')"
            ))  # fmt: skip
        migrate.upgrade(settings)
        with engine.begin() as connection:
            assert connection.execute(text("SELECT count(*) FROM job_images")).scalar() == 1
            assert (
                connection.execute(text("SELECT count(*) FROM moderation_verdicts")).scalar() == 1
            )
            connection.execute(text("UPDATE jobs SET size = NULL, steps_decoder = NULL"))
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1  # on again
        migrate.downgrade(settings, "0002_moderation_ledger_immutable")
        with engine.connect() as connection:
            size = connection.execute(text("SELECT size FROM jobs")).scalar()
            assert size == "256x256"  # a NULL gets the pre-0003 default back
            assert connection.execute(text("SELECT count(*) FROM job_images")).scalar() == 1
    finally:
        engine.dispose()
