"""Samplers on analytic models whose optimal prediction is known in closed form."""

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from worker.unclip.diffusion import (
    GaussianDiffusion,
    Inpaint,
    StepInfo,
    get_sampler,
    make_diffusion,
    randn_rows,
    respaced,
)

SAMPLERS = ["ddpm", "ddim", "dpmpp_2m"]
MU, S = 0.3, 0.5  # data ~ N(MU, S^2) per dimension


def _bcast(values: Tensor, x: Tensor) -> Tensor:
    return values.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))


def gaussian_model(
    base: GaussianDiffusion, sampled: GaussianDiffusion, mu: Tensor | float, s: float
) -> Callable[[Tensor, Tensor], Tensor]:
    """The optimal net for data N(mu, s^2): E[x0 | x_t] (or its eps), and for learned_range the
    exact reverse variance coded in [-1, 1] against the sampled (respaced) diffusion."""
    acp = torch.as_tensor(base.alphas_cumprod)
    index = {t: i for i, t in enumerate(sampled.timestep_map)}

    def model_fn(x: Tensor, t: Tensor) -> Tensor:
        a, b = _bcast(acp[t].sqrt(), x), _bcast((1 - acp[t]).sqrt(), x)
        x0 = mu + a * s * s / (a * a * s * s + b * b) * (x - a * mu)
        out = x0 if base.prediction == "x0" else (x - a * x0) / b
        if base.variance != "learned_range":
            return out
        i = torch.tensor([index[int(v)] for v in t])
        coef = lambda name: _bcast(torch.as_tensor(getattr(sampled, name))[i], x)  # noqa: E731
        var_x0 = s * s * b * b / (a * a * s * s + b * b)
        log_var = torch.log(coef("posterior_variance") + coef("posterior_mean_coef1") ** 2 * var_x0)
        lo, hi = coef("posterior_log_variance_clipped"), coef("log_betas")
        frac = (log_var - lo) / (hi - lo)
        return torch.cat([out, (2 * frac - 1).expand_as(x)], dim=1)

    return model_fn


def setup(
    prediction: str = "eps", variance: str = "fixed_small", steps: int | str = "trailing10"
) -> tuple[GaussianDiffusion, GaussianDiffusion]:
    base = make_diffusion(
        schedule="cosine", timesteps=1000, prediction=prediction, variance=variance
    )
    return base, respaced(base, steps)


def gens(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("prediction", ["eps", "x0"])
def test_point_mass_data_is_reached_exactly(name: str, prediction: str) -> None:
    base, diffusion = setup(prediction, "learned_range", 6)
    target = torch.linspace(-0.9, 0.9, 2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    g = gens(0, 1)
    x = randn_rows(target.shape, g, "cpu", torch.float32)
    out = get_sampler(name)(
        gaussian_model(base, diffusion, target, 0.0), x, diffusion, generators=g
    )
    torch.testing.assert_close(out, target, atol=1e-5, rtol=0)


@pytest.mark.parametrize("prediction", ["eps", "x0"])
def test_deterministic_samplers_follow_the_probability_flow_ode(prediction: str) -> None:
    """For Gaussian data the ODE maps each start value z to a known end value; DPM-Solver++
    (order 2) lands far closer in 10 steps than DDIM (order 1)."""
    base, diffusion = setup(prediction)
    g = gens(0, 1)
    x = randn_rows((2, 4096), g, "cpu", torch.float64)
    a_T, a_0 = math.sqrt(diffusion.alphas_cumprod[-1]), math.sqrt(diffusion.alphas_cumprod[0])
    z = (x - a_T * MU) / math.sqrt(a_T**2 * S**2 + 1 - a_T**2)
    exact = MU + S * z * a_0 * S / math.sqrt(a_0**2 * S**2 + 1 - a_0**2)
    model_fn = gaussian_model(base, diffusion, MU, S)
    errors = {
        name: (get_sampler(name)(model_fn, x, diffusion, generators=g, clip_x0=None) - exact)
        .abs()
        .max()
        .item()
        for name in ("ddim", "dpmpp_2m")
    }
    assert errors["dpmpp_2m"] < 0.02 < 0.1 < errors["ddim"] < 0.3, errors
    _, fine = setup(prediction, steps=200)
    ddim_fine = get_sampler("ddim")(
        gaussian_model(base, fine, MU, S), x, fine, generators=g, clip_x0=None
    )
    a_0 = math.sqrt(fine.alphas_cumprod[0])
    exact = MU + S * z * a_0 * S / math.sqrt(a_0**2 * S**2 + 1 - a_0**2)
    assert (ddim_fine - exact).abs().max().item() < 0.02


def test_ddpm_with_learned_range_samples_the_data_distribution() -> None:
    base, diffusion = setup("eps", "learned_range")
    g = gens(0, 1, 2, 3)
    x = randn_rows((4, 8192), g, "cpu", torch.float32)
    out = get_sampler("ddpm")(
        gaussian_model(base, diffusion, MU, S), x, diffusion, generators=g, clip_x0=None
    )
    # Each ancestral step is the exact reverse conditional; the last returns E[x0 | x_t0].
    a_0 = math.sqrt(diffusion.alphas_cumprod[0])
    std = S * a_0 * S / math.sqrt(a_0**2 * S**2 + 1 - a_0**2)
    assert abs(out.mean().item() - MU) < 0.01 and abs(out.std().item() - std) < 0.01
    # Fixed small variance under-disperses at 10 steps: the learned variance matters.
    base, diffusion = setup("eps", "fixed_small")
    out = get_sampler("ddpm")(
        gaussian_model(base, diffusion, MU, S), x, diffusion, generators=g, clip_x0=None
    )
    assert out.std().item() < std - 0.05


@pytest.mark.parametrize("name", SAMPLERS)
def test_same_generators_same_output_and_batch_equals_singles(name: str) -> None:
    base, diffusion = setup("eps", "learned_range", 5)
    known = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(9)) * 2 - 1
    keep = torch.zeros(2, 1, 8, 8)
    keep[:, :, :4] = 1.0
    sampler = get_sampler(name)
    model_fn = gaussian_model(base, diffusion, MU, S)

    def run(seeds: list[int], rows: slice) -> Tensor:
        g = gens(*seeds)
        x = randn_rows((len(seeds), 3, 8, 8), g, "cpu", torch.float32)
        inpaint = Inpaint(known=known[rows], keep=keep[rows])
        return sampler(model_fn, x, diffusion, generators=g, inpaint=inpaint)

    batch = run([11, 12], slice(0, 2))
    assert torch.equal(batch, run([11, 12], slice(0, 2)))
    assert torch.equal(batch[0:1], run([11], slice(0, 1)))
    assert torch.equal(batch[1:2], run([12], slice(1, 2)))
    assert not torch.equal(batch[0:1], run([13], slice(0, 1)))


@pytest.mark.parametrize("name", SAMPLERS)
def test_inpaint_returns_the_known_region_exactly(name: str) -> None:
    base, diffusion = setup("x0", "fixed_large", 4)
    known = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(5)) * 2 - 1
    keep = (torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(6)) > 0.5).float()
    g = gens(3, 4)
    x = randn_rows(known.shape, g, "cpu", torch.float32)
    model_fn = gaussian_model(base, diffusion, -0.5, 0.0)  # repaints with -0.5
    out = get_sampler(name)(model_fn, x, diffusion, generators=g, inpaint=Inpaint(known, keep))
    kept = keep.expand_as(known).bool()
    assert torch.equal(out[kept], known[kept])
    torch.testing.assert_close(out[~kept], torch.full_like(out[~kept], -0.5), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"keep \(2, 1, 4, 4\)"):
        get_sampler(name)(
            model_fn, x, diffusion, generators=g, inpaint=Inpaint(known, keep[..., :4, :4])
        )


@pytest.mark.parametrize("name", SAMPLERS)
def test_callback_reports_each_step_and_a_raise_stops_at_once(name: str) -> None:
    base, diffusion = setup("eps", "learned_range", "ddim8")
    calls: list[Tensor] = []
    inner = gaussian_model(base, diffusion, MU, S)

    def model_fn(x: Tensor, t: Tensor) -> Tensor:
        calls.append(t)
        return inner(x, t)

    infos: list[StepInfo] = []
    g = gens(0)
    x = randn_rows((1, 3, 4, 4), g, "cpu", torch.float32)
    get_sampler(name)(model_fn, x, diffusion, generators=g, callback=infos.append)
    expected_t = list(reversed(diffusion.timestep_map))  # 875, 750, ..., 0
    assert [i.step for i in infos] == list(range(1, 9)) and {i.total for i in infos} == {8}
    assert [i.t for i in infos] == expected_t
    assert [c.tolist() for c in calls] == [[t] for t in expected_t]  # original timesteps
    assert calls[0].dtype == torch.long
    assert infos[-1].x.shape == x.shape and infos[-1].x0_pred.shape == x.shape

    class Cancelled(Exception):
        pass

    def cancel_at_3(info: StepInfo) -> None:
        if info.step == 3:
            raise Cancelled

    calls.clear()
    with pytest.raises(Cancelled):
        get_sampler(name)(model_fn, x, diffusion, generators=g, callback=cancel_at_3)
    assert len(calls) == 3


def test_clip_x0_clamps_the_prediction() -> None:
    base, diffusion = setup("x0", "fixed_small", 4)
    g = gens(0)
    x = randn_rows((1, 5), g, "cpu", torch.float32)
    far = gaussian_model(base, diffusion, 5.0, 0.0)
    clamped = get_sampler("ddim")(far, x, diffusion, generators=g, clip_x0=1.0)
    free = get_sampler("ddim")(far, x, diffusion, generators=g, clip_x0=None)
    torch.testing.assert_close(clamped, torch.ones(1, 5))
    torch.testing.assert_close(free, torch.full((1, 5), 5.0))


def test_randn_rows_draws_each_row_from_its_own_generator() -> None:
    rows = randn_rows((2, 3), gens(7, 8), "cpu", torch.float32)
    assert torch.equal(rows[1], torch.randn(3, generator=torch.Generator().manual_seed(8)))
    half = randn_rows((2, 3), gens(7, 8), "cpu", torch.bfloat16)
    assert torch.equal(half, rows.to(torch.bfloat16))


def test_bad_names_and_generator_counts_are_named() -> None:
    with pytest.raises(ValueError, match=r"'euler'.*ddpm, ddim, dpmpp_2m"):
        get_sampler("euler")
    base, diffusion = setup()
    with pytest.raises(ValueError, match="1 generators for a batch of 2"):
        get_sampler("ddim")(
            gaussian_model(base, diffusion, MU, S), torch.zeros(2, 3), diffusion, generators=gens(0)
        )


def _wrong_by(
    model_fn: Callable[[Tensor, Tensor], Tensor], scale: float
) -> Callable[[Tensor, Tensor], Tensor]:
    """model_fn plus seeded noise of std `scale`, new at every timestep."""

    def off(x: Tensor, t: Tensor) -> Tensor:
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(int(t[0])))
        return model_fn(x, t) + scale * noise.to(x.dtype)

    return off


@pytest.mark.parametrize("name", ["ddim", "dpmpp_2m"])
def test_eps_nets_can_start_below_the_last_timestep(name: str) -> None:
    """At t = T-1 an eps net's x0 estimate is its error over sqrt(abar) (~2e4 for cosine):
    starting at 997 instead keeps a small eps error small, and samples the same data."""
    base = make_diffusion(
        schedule="cosine", timesteps=1000, prediction="eps", variance="fixed_small"
    )
    g = gens(0, 1)
    x = randn_rows((2, 4096), g, "cpu", torch.float64)
    results = {}
    for start in (999, 997):
        diffusion = respaced(base, "trailing10", start=start)
        assert max(diffusion.timestep_map) == start
        exact = gaussian_model(base, diffusion, MU, S)
        off = _wrong_by(exact, 0.01)
        sampler = get_sampler(name)
        clean = sampler(exact, x, diffusion, generators=g, clip_x0=None)
        results[start] = (clean, (sampler(off, x, diffusion, generators=g, clip_x0=None) - clean))
    (clean_999, error_999), (clean_997, error_997) = results[999], results[997]
    assert abs(clean_997.mean().item() - clean_999.mean().item()) < 0.002
    assert abs(clean_997.std().item() - clean_999.std().item()) < 0.002
    assert error_999.abs().mean().item() > 5.0 > 0.3 > error_997.abs().mean().item()
