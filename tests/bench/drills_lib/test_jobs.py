"""The drill verdicts: what counts as lost, duplicated, refused and re-rendered."""

from __future__ import annotations

from collections import Counter

from bench.drills_lib.jobs import DrillResult, JobFacts, Submission, tally


def _job(
    status: str = "succeeded",
    *,
    n: int = 1,
    published: int = 1,
    image_attempts: set[int] | None = None,
    succeeded: dict[str, int] | None = None,
    rendered: int = 1,
) -> JobFacts:
    done = succeeded if succeeded is not None else {"prior": 1, "decoder": 1, "upsampler": 1}
    return JobFacts(
        id=f"job-{status}",
        status=status,
        n=n,
        error_code=None,
        published=published,
        image_attempts={3} if image_attempts is None else image_attempts,
        succeeded_by_stage=Counter(done),
        attempts=[],
        rendered_pngs=rendered,
    )


def test_a_clean_success_is_neither_lost_nor_duplicated() -> None:
    result = tally(DrillResult("d"), [_job()])
    assert (result.submitted, result.succeeded, result.lost, result.duplicated) == (1, 1, 0, 0)
    assert result.passed


def test_a_job_not_terminal_by_the_deadline_is_lost() -> None:
    result = tally(DrillResult("d"), [_job(), _job("decoder", published=0, image_attempts=set())])
    assert result.lost == 1 and not result.passed
    assert "job-deco" in result.notes[0] and "decoder" in result.notes[0]


def test_a_stage_completed_twice_is_a_duplicate() -> None:
    twice = _job(succeeded={"prior": 1, "decoder": 2, "upsampler": 1})
    assert tally(DrillResult("d"), [twice]).duplicated == 1


def test_more_images_than_asked_or_from_two_attempts_are_duplicates() -> None:
    assert tally(DrillResult("d"), [_job(n=1, published=2)]).duplicated == 1
    assert tally(DrillResult("d"), [_job(n=2, published=2, image_attempts={3, 4})]).duplicated == 1
    assert tally(DrillResult("d"), [_job(n=2, published=2)]).duplicated == 0


def test_refused_posts_and_rerenders_are_counted_but_do_not_fail_a_drill() -> None:
    refused = Submission(status=503, job_id=None, seconds=0.1, retry_after="5")
    accepted = Submission(status=202, job_id="job-succeeded", seconds=0.1)
    result = tally(DrillResult("d"), [_job(rendered=2)], [refused, accepted])
    assert (result.refused, result.rerendered) == (1, 1)
    assert result.passed


def test_a_failed_check_fails_the_drill() -> None:
    result = tally(DrillResult("d", checks={"poison failed": False}), [_job("failed")])
    assert result.failed == 1 and result.lost == 0
    assert result.failed_checks() == ["poison failed"] and not result.passed
