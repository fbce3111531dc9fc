"""`unclip worker`: queue lists are checked and become the right `celery worker` arguments."""

from __future__ import annotations

import argparse

import pytest

from worker.commands.worker import add_arguments, celery_argv, parse_queues


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_queue_list_is_checked() -> None:
    assert parse_queues("decoder, prior,decoder") == ["decoder", "prior"]
    for bad in ("", "prior,gpu", "render.prior"):
        with pytest.raises(argparse.ArgumentTypeError, match="subset of prior,decoder,upsampler"):
            parse_queues(bad)


def test_defaults_serve_every_stage_with_one_process() -> None:
    argv = celery_argv(_args())
    assert "--queues=prior,decoder,upsampler" in argv
    assert "--concurrency=1" in argv and "--pool=prefork" in argv


def test_one_stage_worker() -> None:
    argv = celery_argv(_args("--queues", "decoder", "--concurrency", "2", "--name", "dec@%h"))
    assert argv[0] == "worker"
    assert {"--queues=decoder", "--concurrency=2", "--hostname=dec@%h"} <= set(argv)


def test_bad_concurrency_is_refused() -> None:
    with pytest.raises(SystemExit, match="--concurrency 0 must be 1 or more"):
        celery_argv(_args("--concurrency", "0"))


def test_the_pipeline_setting_is_the_default_process_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shared.settings import get_settings

    monkeypatch.setenv("UNCLIP_PIPELINE", "2")
    get_settings.cache_clear()
    try:
        assert "--concurrency=2" in celery_argv(_args())
        assert "--concurrency=3" in celery_argv(_args("--concurrency", "3"))  # the flag wins
    finally:
        monkeypatch.delenv("UNCLIP_PIPELINE")
        get_settings.cache_clear()
