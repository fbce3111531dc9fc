"""GaussianDiffusion: forward statistics, conversions, gathering and training losses."""

import math

import pytest
import torch

from worker.unclip.diffusion.gaussian_diffusion import GaussianDiffusion, make_diffusion


def _diffusion(variance: str = "fixed_small", prediction: str = "eps") -> GaussianDiffusion:
    return make_diffusion(
        schedule="cosine", timesteps=100, prediction=prediction, variance=variance
    )


def test_q_sample_has_the_forward_marginal_statistics() -> None:
    diffusion = _diffusion()
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((4, 20000), 0.7)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([0, 30, 60, 99])
    x_t = diffusion.q_sample(x0, t, noise)
    abar = torch.as_tensor(diffusion.alphas_cumprod)[t].float()
    torch.testing.assert_close(x_t.mean(1), abar.sqrt() * 0.7, atol=0.02, rtol=0)
    torch.testing.assert_close(x_t.std(1), (1 - abar).sqrt(), atol=0.02, rtol=0)


def test_int_and_tensor_timesteps_agree_and_x0_eps_round_trip() -> None:
    diffusion = _diffusion("learned_range")
    g = torch.Generator().manual_seed(1)
    x_t = torch.randn(3, 2, 4, 4, generator=g)
    out = torch.randn(3, 4, 4, 4, generator=g).clamp(-1, 1)
    by_int = diffusion.p_mean_variance(out, x_t, 40, clip_x0=None)
    by_tensor = diffusion.p_mean_variance(out, x_t, torch.full((3,), 40), clip_x0=None)
    torch.testing.assert_close(by_int.mean, by_tensor.mean)
    torch.testing.assert_close(by_int.log_variance, by_tensor.log_variance)
    x0 = diffusion.predict_x0_from_eps(x_t, 40, out[:, :2])
    torch.testing.assert_close(diffusion.predict_eps_from_x0(x_t, 40, x0), out[:, :2])


def test_learned_range_interpolates_between_posterior_and_beta() -> None:
    diffusion = _diffusion("learned_range")
    x_t = torch.zeros(1, 1, 2, 2)
    for value, table in ((-1.0, "posterior_log_variance_clipped"), (1.0, "log_betas")):
        out = torch.cat([torch.zeros_like(x_t), torch.full_like(x_t, value)], dim=1)
        got = diffusion.p_mean_variance(out, x_t, 50).log_variance
        assert isinstance(got, torch.Tensor)
        torch.testing.assert_close(got, torch.full_like(x_t, getattr(diffusion, table)[50]))


def test_clip_x0_clamps_and_eps_stays_consistent() -> None:
    diffusion = _diffusion(prediction="x0")
    x_t = torch.randn(2, 3, generator=torch.Generator().manual_seed(2))
    out = diffusion.p_mean_variance(torch.full((2, 3), 5.0), x_t, 10, clip_x0=1.0)
    assert torch.equal(out.x0, torch.ones(2, 3))
    torch.testing.assert_close(diffusion.predict_x0_from_eps(x_t, 10, out.eps), out.x0)


def test_wrong_output_channels_and_bad_options_are_named() -> None:
    diffusion = _diffusion("learned_range")
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 4\).*learned_range.*6 channels"):
        diffusion.p_mean_variance(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4), 5)
    with pytest.raises(ValueError, match=r"'velocity'.*eps, x0, v"):
        GaussianDiffusion([0.1], prediction="velocity",  # type: ignore[arg-type]
                          variance="fixed_small")
    with pytest.raises(ValueError, match=r"'learned'.*fixed_small, fixed_large, learned_range"):
        GaussianDiffusion([0.1], prediction="eps", variance="learned")  # type: ignore[arg-type]


def test_training_losses_hybrid_for_learned_range() -> None:
    """A perfect eps and the true variance give mse 0 and vb 0; vb trains only the variance."""
    diffusion = _diffusion("learned_range")
    x0 = torch.full((3, 2, 4, 4), 0.25)  # a point mass: the posterior is exactly q's
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([5, 50, 99])
    var_param = torch.full_like(x0, -1.0, requires_grad=True)
    seen: list[torch.Tensor] = []

    def model_fn(x_t: torch.Tensor, t_model: torch.Tensor, *, scale: float) -> torch.Tensor:
        seen.append(t_model)
        return torch.cat([noise * scale, var_param], dim=1)

    losses = diffusion.training_losses(model_fn, x0, t, noise=noise, model_kwargs={"scale": 1.0})
    assert torch.equal(seen[0], t)
    torch.testing.assert_close(losses.mse, torch.zeros(3))
    torch.testing.assert_close(losses.vb, torch.zeros(3), atol=1e-6, rtol=0)
    var_param.data.fill_(1.0)  # the largest variance is wrong for a point mass
    losses = diffusion.training_losses(model_fn, x0, t, noise=noise, model_kwargs={"scale": 1.0})
    assert (losses.vb > 0).all()
    torch.testing.assert_close(losses.loss, losses.mse + 0.001 * 100 * losses.vb)
    losses.vb.sum().backward()
    assert var_param.grad is not None and var_param.grad.abs().sum() > 0


def test_training_losses_x0_fixed_variance_is_plain_mse() -> None:
    diffusion = _diffusion(prediction="x0", variance="fixed_large")
    x0 = torch.randn(2, 8, generator=torch.Generator().manual_seed(4))
    t = torch.tensor([0, 99])
    losses = diffusion.training_losses(
        lambda x_t, t_model: x0 + 0.5, x0, t, noise=torch.zeros_like(x0)
    )
    torch.testing.assert_close(losses.mse, torch.full((2,), 0.25))
    assert torch.equal(losses.loss, losses.mse) and torch.equal(losses.vb, torch.zeros(2))
    assert math.isclose(float(diffusion.alphas_cumprod_prev[0]), 1.0)


def test_v_prediction_recovers_x0_and_eps_even_at_the_last_timestep() -> None:
    """The true v gives back x0 and eps at every t, also at t = T - 1 where abar is ~0."""
    diffusion = _diffusion("learned_range", prediction="v")
    g = torch.Generator().manual_seed(5)
    x0 = torch.rand(3, 3, 4, 4, generator=g) * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([0, 50, 99])
    assert float(diffusion.alphas_cumprod[99]) < 1e-6
    x_t = diffusion.q_sample(x0, t, noise)
    v = diffusion.v_target(x0, t, noise)
    out = torch.cat([v, torch.zeros_like(v)], dim=1)
    x0_hat, eps_hat = diffusion.predict_x0_eps(out, x_t, t, clip_x0=None)
    torch.testing.assert_close(x0_hat, x0, atol=1e-5, rtol=0)
    torch.testing.assert_close(eps_hat, noise, atol=1e-4, rtol=0)
    losses = diffusion.training_losses(lambda x, tt: out, x0, t, noise=noise)
    torch.testing.assert_close(losses.mse, torch.zeros(3), atol=1e-10, rtol=0)


def test_an_eps_net_cannot_say_x0_at_the_last_timestep_but_a_v_net_can() -> None:
    """At t = T - 1 (abar ~2e-7 here, ~2e-9 with 1000 steps) an eps output off by 1e-3 moves
    x0 by ~2, the whole pixel range; a v output off by as much moves x0 by ~1e-3. This is why
    the shapes decoder predicts v."""
    x_t = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(6))
    nudge = torch.full((1, 3, 4, 4), 1e-3)
    for prediction, limit in (("eps", None), ("v", 2e-3)):
        diffusion = _diffusion(prediction=prediction)
        base = torch.zeros(1, 3, 4, 4)
        moved = (diffusion.predict_x0(base + nudge, x_t, 99, clip_x0=None)
                 - diffusion.predict_x0(base, x_t, 99, clip_x0=None)).abs().max()
        if limit is None:
            assert moved > 1.5
        else:
            assert moved < limit
