"""kakaobrain/karlo's own classes at the shipped shapes family's sizes, holding its weights.

For bench_vs_karlo.py. Karlo's wrappers cannot describe the shapes family as it ships, so
three things are adapted, each with Karlo's own network classes and diffusion code:

- Decoder: the family's decoder takes 7 input channels (x, the known image, the keep mask:
  the service's inpainting layout) and predicts v. `Text2ImModel` builds a 3-channel
  `PLMImUNet` with eps, so `ShapesDecoder` builds Karlo's `PLMImUNet` with in_channels=7
  and wraps it: the 4 extra channels are zeros (no edit, as in a generate request, where
  our stage passes a zero image and mask) and the v output is turned into eps
  (eps = sqrt(abar) v + sqrt(1 - abar) x_t), which Karlo's eps diffusion then uses.
- Upsampler: the family has one 32 -> 64 px network with scale-shift norm, predicting x0,
  and no last-step network. Karlo's `SuperResUNetModel` takes use_scale_shift_norm; it is
  sampled with Karlo's `p_sample_loop` (DDPM) and predict_xstart=True.
- Prior: Karlo's `PriorDiffusionModel` as is, at the family's sizes (no adaptation).
CLIP stays ours on both sides (Karlo's CLIP wrapper needs OpenAI's `clip` package).
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from bench.karlo_reference.karlo_tiny import FakeTokenizer, _namespace
from worker.unclip.diffusion import diffusion_from_config
from worker.unclip.family import Family

KARLO_SCHEDULE = {"cosine": "squaredcos_cap_v2", "linear": "linear"}


def _diffusion_yaml(config: Any) -> dict[str, Any]:
    """Karlo's `diffusion:` section for one of our DiffusionConfigs (v is run as eps)."""
    return {
        "steps": config.timesteps,
        "learn_sigma": config.variance == "learned_range",
        "sigma_small": config.variance == "fixed_small",
        "noise_schedule": KARLO_SCHEDULE[config.schedule],
        "use_kl": False,
        "predict_xstart": config.prediction == "x0",
        "rescale_learned_sigmas": False,
        "timestep_respacing": "",
    }


class InpaintLayoutV(nn.Module):
    """Karlo's PLMImUNet with 7 input channels and v output, seen as a 3-channel eps net."""

    def __init__(self, unet: nn.Module, alphas_cumprod: torch.Tensor) -> None:
        super().__init__()
        self.unet = unet
        self.text_ctx = unet.text_ctx  # what Text2ImModel reads at construction
        self.register_buffer("sqrt_abar", alphas_cumprod.sqrt().float(), persistent=False)
        self.register_buffer("sqrt_1m_abar", (1 - alphas_cumprod).sqrt().float(), persistent=False)

    @property
    def cf_param(self) -> torch.Tensor:
        return self.unet.cf_param

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        b, _, h, w = x.shape
        out = self.unet(torch.cat([x, x.new_zeros(b, 4, h, w)], dim=1), timesteps, **kwargs)
        v, rest = out[:, :3], out[:, 3:]
        a = self.sqrt_abar[timesteps].view(-1, 1, 1, 1)
        s = self.sqrt_1m_abar[timesteps].view(-1, 1, 1, 1)
        return torch.cat([a * v + s * x, rest], dim=1)


def _decoder(karlo: SimpleNamespace, family: Family, tok: FakeTokenizer) -> nn.Module:
    cfg = family.decoder_config
    if cfg.diffusion.prediction != "v" or cfg.in_channels != 7:
        raise SystemExit(f"expected the shapes decoder (7 channels, v), got {cfg}")
    mult = ",".join(str(m) for m in cfg.channel_mult)
    hparams = {
        "image_size": cfg.image_size,
        "num_channels": cfg.model_channels,
        "num_res_blocks": cfg.num_res_blocks,
        "channel_mult": mult,
        "attention_resolutions": ",".join(str(r) for r in cfg.attention_resolutions),
        "num_heads": cfg.num_heads,
        "num_head_channels": cfg.num_head_channels,
        "num_heads_upsample": cfg.num_heads_upsample,
        "use_scale_shift_norm": cfg.use_scale_shift_norm,
        "dropout": 0.0,
        "clip_dim": cfg.clip_dim,
        "clip_emb_mult": cfg.clip_emb_mult,
        "text_ctx": cfg.text_ctx,
        "xf_width": cfg.xf_width,
        "resblock_updown": cfg.resblock_updown,
        "learn_sigma": True,
        "clip_emb_type": "image",
        "clip_emb_drop": cfg.clip_emb_drop,
    }
    diffusion = _diffusion_yaml(cfg.diffusion)
    diffusion["predict_xstart"] = False  # v is converted to eps by InpaintLayoutV
    conf = _namespace(
        {"model": {"type": "t2i-decoder", "hparams": hparams}, "diffusion": diffusion}
    )
    abar = torch.from_numpy(diffusion_from_config(cfg.diffusion).alphas_cumprod)

    class ShapesDecoder(karlo.decoder.Text2ImModel):  # type: ignore[misc, name-defined]
        def create_plm_dec_model(self) -> nn.Module:
            unet = karlo.unet.PLMImUNet(
                text_ctx=cfg.text_ctx,
                xf_width=cfg.xf_width,
                in_channels=7,
                model_channels=cfg.model_channels,
                out_channels=6,
                num_res_blocks=cfg.num_res_blocks,
                attention_resolutions=tuple(cfg.image_size // r for r in cfg.attention_resolutions),
                dropout=0.0,
                channel_mult=tuple(cfg.channel_mult),
                num_heads=cfg.num_heads,
                num_head_channels=cfg.num_head_channels,
                num_heads_upsample=cfg.num_heads_upsample,
                use_scale_shift_norm=cfg.use_scale_shift_norm,
                resblock_updown=cfg.resblock_updown,
                clip_dim=cfg.clip_dim,
                clip_emb_mult=cfg.clip_emb_mult,
                clip_emb_type="image",
                clip_emb_drop=cfg.clip_emb_drop,
            )
            return InpaintLayoutV(unet, abar)

    decoder = ShapesDecoder(conf, tok)
    decoder.model.unet.load_state_dict(family.decoder.state_dict(), strict=True)
    return decoder


def _upsampler(karlo: SimpleNamespace, family: Family) -> Callable[[torch.Tensor, int], Any]:
    """fn(low_res resized to the final size, steps) -> Karlo's DDPM sample loop's samples."""
    cfg = family.upsampler_config
    if cfg.last_step_model:
        raise SystemExit("expected the shapes upsampler (no last-step network)")
    net = karlo.unet.SuperResUNetModel(
        in_channels=3,
        model_channels=cfg.model_channels,
        out_channels=3,
        num_res_blocks=cfg.num_res_blocks,
        attention_resolutions=(),
        dropout=0.0,
        channel_mult=tuple(cfg.channel_mult),
        resblock_updown=cfg.resblock_updown,
        use_scale_shift_norm=cfg.use_scale_shift_norm,
        use_middle_attention=False,
    )
    state = {
        k.removeprefix("model_first_steps."): v for k, v in family.upsampler.state_dict().items()
    }
    net.load_state_dict(state, strict=True)
    net.eval()
    kwargs = _diffusion_yaml(cfg.diffusion)

    def sample(low_res: torch.Tensor, steps: int) -> torch.Tensor:
        diffusion = karlo.modules.create_gaussian_diffusion(
            **dict(kwargs, timestep_respacing=str(steps))
        )
        return diffusion.p_sample_loop(
            net, tuple(low_res.shape), clip_denoised=True, model_kwargs={"low_res": low_res}
        )

    return sample


def build_karlo_shapes(karlo_models: SimpleNamespace, family: Family) -> dict[str, Any]:
    """{"prior", "decoder": Karlo wrapper modules, "upsample": fn} holding the family's weights.

    karlo_models: karlo_tiny.import_karlo()'s namespace (which put the checkout on sys.path).
    """
    import karlo.modules  # type: ignore[import-not-found]
    import karlo.modules.unet  # type: ignore[import-not-found]

    karlo = SimpleNamespace(**vars(karlo_models), modules=karlo.modules, unet=karlo.modules.unet)
    tok = FakeTokenizer()
    p = family.prior_config
    prior_yaml = {
        "model": {
            "type": "prior",
            "hparams": {
                "text_ctx": p.text_ctx,
                "xf_width": p.width,
                "xf_layers": p.layers,
                "xf_heads": p.heads,
                "xf_final_ln": p.final_ln,
                "text_drop": 0.0,
                "clip_dim": p.clip_dim,
            },
        },
        "diffusion": _diffusion_yaml(p.diffusion),
    }
    if p.text_width != p.clip_dim:
        raise SystemExit(f"Karlo's prior needs text_width == clip_dim, got {p}")
    prior = karlo.prior.PriorDiffusionModel(
        _namespace(prior_yaml), tok, family.prior_mean.clone(), family.prior_std.clone()
    )
    prior.model.load_state_dict(family.prior.state_dict(), strict=True)
    return {
        "prior": prior.eval(),
        "decoder": _decoder(karlo, family, tok).eval(),
        "upsample": _upsampler(karlo, family),
    }
