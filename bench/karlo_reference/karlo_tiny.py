"""Build kakaobrain/karlo's own networks at tiny sizes from a local, uncommitted checkout.

Karlo's code is never part of this repository: put a checkout at `.karlo/` in the repository
root (see README.md) or pass its path. Only Karlo's network and diffusion modules are
imported (`karlo.models.{prior_model,decoder_model,sr_64_256}`, which pull in
`karlo.modules`); its CLIP wrapper needs OpenAI's `clip` package and is not used.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CHECKOUT = REPO_ROOT / ".karlo"

# Tiny versions of Karlo's configs/*.yaml (same keys; sizes shrunk, GroupNorm needs 32 | ch).
TINY_YAML: dict[str, dict[str, Any]] = {
    "prior": {
        "model": {
            "type": "prior",
            "hparams": {
                "text_ctx": 8,
                "xf_width": 64,
                "xf_layers": 2,
                "xf_heads": 4,
                "xf_final_ln": True,
                "text_drop": 0.2,
                "clip_dim": 32,
            },
        },
        "diffusion": {
            "steps": 1000,
            "learn_sigma": False,
            "sigma_small": True,
            "noise_schedule": "squaredcos_cap_v2",
            "use_kl": False,
            "predict_xstart": True,
            "rescale_learned_sigmas": False,
            "timestep_respacing": "",
        },
    },
    "decoder": {
        "model": {
            "type": "t2i-decoder",
            "hparams": {
                "image_size": 16,
                "num_channels": 32,
                "num_res_blocks": 1,
                "channel_mult": "1,2",
                "attention_resolutions": "16,8",
                "num_heads": -1,
                "num_head_channels": 16,
                "num_heads_upsample": -1,
                "use_scale_shift_norm": True,
                "dropout": 0.0,
                "clip_dim": 32,
                "clip_emb_mult": 4,
                "text_ctx": 8,
                "xf_width": 48,
                "xf_layers": 0,
                "xf_heads": 0,
                "xf_final_ln": False,
                "resblock_updown": True,
                "learn_sigma": True,
                "text_drop": 0.3,
                "clip_emb_type": "image",
                "clip_emb_drop": 0.1,
                "use_plm": True,
            },
        },
        "diffusion": {
            "steps": 1000,
            "learn_sigma": True,
            "sigma_small": False,
            "noise_schedule": "squaredcos_cap_v2",
            "use_kl": False,
            "predict_xstart": False,
            "rescale_learned_sigmas": True,
            "timestep_respacing": "",
        },
    },
    "upsampler": {
        "model": {
            "type": "improved_sr_64_256",
            "hparams": {"channels": 32, "depth": 1, "channels_multiple": [1, 1], "dropout": 0.0},
        },
        "diffusion": {
            "steps": 1000,
            "learn_sigma": False,
            "sigma_small": True,
            "noise_schedule": "squaredcos_cap_v2",
            "use_kl": False,
            "predict_xstart": False,
            "rescale_learned_sigmas": True,
            "timestep_respacing": "7",
        },
    },
}
UPSAMPLER_SIZES = (16, 8)  # (image_size, low_res_size) of the tiny upsampler


def import_karlo(checkout: Path = DEFAULT_CHECKOUT) -> SimpleNamespace:
    """Karlo's model modules from a checkout directory (added to sys.path)."""
    if not (checkout / "karlo" / "modules" / "unet.py").is_file():
        raise SystemExit(f"no Karlo checkout at {checkout}: see bench/karlo_reference/README.md")
    if str(checkout) not in sys.path:
        sys.path.insert(0, str(checkout))
    from karlo.models import decoder_model, prior_model, sr_64_256  # type: ignore[import-not-found]

    return SimpleNamespace(prior=prior_model, decoder=decoder_model, sr=sr_64_256)


def _namespace(value: Any) -> Any:
    """A YAML dict as attribute access, as Karlo's OmegaConf configs give it."""
    if isinstance(value, dict):
        return SimpleNamespace(**{k: _namespace(v) for k, v in value.items()})
    return value


class FakeTokenizer:
    """Only what Karlo's wrappers call at construction: tokens and mask of the empty prompt."""

    def padded_tokens_and_mask(
        self, texts: list[str], ctx: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = torch.zeros(len(texts), ctx, dtype=torch.long)
        mask = torch.zeros(len(texts), ctx, dtype=torch.bool)
        tokens[:, 0], tokens[:, 1], mask[:, :2] = 49406, 49407, True
        return tokens, mask


def build_karlo_models(karlo: ModuleType | SimpleNamespace, clip_dim: int = 32) -> dict[str, Any]:
    """Karlo's three wrapper modules (state-dict keys exactly as its checkpoints) at tiny sizes."""
    stats = torch.zeros(clip_dim), torch.ones(clip_dim)
    tok = FakeTokenizer()
    return {
        "prior": karlo.prior.PriorDiffusionModel(_namespace(TINY_YAML["prior"]), tok, *stats),
        "decoder": karlo.decoder.Text2ImModel(_namespace(TINY_YAML["decoder"]), tok),
        "upsampler": karlo.sr.ImprovedSupRes64to256ProgressiveModel(
            _namespace(TINY_YAML["upsampler"])
        ),
    }


def quantise(value: torch.Tensor) -> tuple[torch.Tensor, float]:
    """value ~ q * scale with q int8 and scale a power of two, so q * scale is exact in fp32."""
    peak = float(value.abs().max().clamp_min(1e-12))
    scale = 2.0 ** math.floor(math.log2(peak / 127))
    q = torch.round(value / scale).clamp(-127, 127).to(torch.int8)
    return q, scale


@torch.no_grad()
def randomise_(module: torch.nn.Module, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Fill every parameter with seeded random values that int8 * 2**k represents exactly.

    Karlo zero-initialises output layers; random values make every path matter. Matrices
    get variance 1 / fan_in, norm gains stay near 1, biases and embeddings are small.
    Returns {name: int8 values, name + "#scale": fp32 scalar} so a fixture stores the
    weights in one byte each and reloads them exactly.
    """
    packed: dict[str, torch.Tensor] = {}
    for name, p in sorted(module.named_parameters()):
        noise = torch.randn(p.shape, generator=generator)
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "weight" and p.ndim >= 2:
            value = noise / p[0].numel() ** 0.5
        elif leaf == "weight":
            value = 1.0 + 0.1 * noise
        elif leaf == "bias":
            value = 0.05 * noise
        else:  # positional_embedding, prd_emb, cf_param
            value = 0.5 * noise
        q, scale = quantise(value)
        p.copy_(q.float() * scale)
        packed[name], packed[name + "#scale"] = q, torch.tensor(scale)
    return packed


def unpack_weights(packed: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of randomise_'s packing: {name: fp32 tensor}."""
    return {
        k: v.float() * packed[k + "#scale"] for k, v in packed.items() if not k.endswith("#scale")
    }
