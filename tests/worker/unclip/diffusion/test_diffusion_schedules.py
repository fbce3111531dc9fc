"""Named beta schedules: float64, monotone, the paper's endpoints, helpful errors."""

import numpy as np
import pytest

from worker.unclip.diffusion.schedules import get_named_beta_schedule


@pytest.mark.parametrize(
    ("name", "steps"),
    [("cosine", 1), ("cosine", 10), ("cosine", 1000), ("linear", 21), ("linear", 1000)],
)
def test_schedule_is_float64_and_alphas_cumprod_decreases(name: str, steps: int) -> None:
    betas = get_named_beta_schedule(name, steps)
    assert betas.dtype == np.float64 and betas.shape == (steps,)
    assert (betas > 0).all() and (betas <= 0.999).all()
    acp = np.cumprod(1.0 - betas)
    assert (np.diff(acp) < 0).all()


def test_cosine_endpoints() -> None:
    betas = get_named_beta_schedule("cosine", 1000)
    acp = np.cumprod(1.0 - betas)
    # alpha_bar(t) = f(t)/f(0) with f(t) = cos^2((t/T + s)/(1 + s) * pi/2), s = 0.008.
    f = lambda t: np.cos((t / 1000 + 0.008) / 1.008 * np.pi / 2) ** 2  # noqa: E731
    assert acp[0] == pytest.approx(f(1) / f(0), rel=1e-12)
    assert acp[499] == pytest.approx(f(500) / f(0), rel=1e-9)
    assert betas[-1] == 0.999  # the last beta is clipped
    assert acp[-1] < 1e-6


def test_linear_matches_ddpm_and_scales_with_steps() -> None:
    betas = get_named_beta_schedule("linear", 1000)
    assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)
    short = get_named_beta_schedule("linear", 100)
    assert short[0] == pytest.approx(1e-3) and short[-1] == pytest.approx(0.2)


def test_unknown_schedule_names_it_and_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"'sigmoid'.*cosine, linear"):
        get_named_beta_schedule("sigmoid", 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_steps"):
        get_named_beta_schedule("cosine", 0)
    with pytest.raises(ValueError, match="num_steps >= 21.*got 20"):
        get_named_beta_schedule("linear", 20)
