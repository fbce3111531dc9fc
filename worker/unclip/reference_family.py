"""A small random-weight model family for tests, benchmarks and `unclip render` without weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import PIL.Image
import torch
from torch import nn

from worker.unclip.clip_encoder import ClipEncoder
from worker.unclip.configs import (
    ClipConfig,
    DecoderConfig,
    DiffusionConfig,
    PriorConfig,
    UpsamplerConfig,
)
from worker.unclip.family import Family, FamilyDefaults, save_family
from worker.unclip.nets import DecoderNet, PriorNet, UpsamplerPair

REFERENCE_NAME = "reference-tiny"
CLIP_NAME = "unclip-reference-tiny"
EMBED_DIM = 32
TEXT_WIDTH = 32


def reference_open_clip_config() -> dict[str, Any]:
    """A tiny open_clip architecture: ViT of 32 px with 8 px patches, a 1-layer text tower."""
    return {
        "embed_dim": EMBED_DIM,
        "vision_cfg": {
            "image_size": 32,
            "layers": 1,
            "width": 32,
            "patch_size": 8,
            "head_width": 16,
        },
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": TEXT_WIDTH,
            "heads": 2,
            "layers": 1,
        },
    }


def reference_configs() -> tuple[ClipConfig, PriorConfig, DecoderConfig, UpsamplerConfig]:
    """Configs of the reference family: 32 px 7-channel decoder, 32 -> 64 px upsampler."""
    clip = ClipConfig(
        name=CLIP_NAME,
        embed_dim=EMBED_DIM,
        text_width=TEXT_WIDTH,
        context_length=77,
        image_size=32,
        open_clip_config=reference_open_clip_config(),
    )
    prior = PriorConfig(
        clip_dim=EMBED_DIM,
        text_width=TEXT_WIDTH,
        text_ctx=77,
        width=64,
        layers=2,
        heads=2,
        diffusion=DiffusionConfig("cosine", 1000, "x0", "fixed_small", clamp_x0=10.0),
    )
    decoder = DecoderConfig(
        image_size=32,
        in_channels=7,
        model_channels=32,
        channel_mult=(1, 1),
        num_res_blocks=1,
        attention_resolutions=(16,),
        resblock_updown=False,
        num_head_channels=32,
        dropout=0.0,
        clip_dim=EMBED_DIM,
        text_width=TEXT_WIDTH,
        text_ctx=77,
        xf_width=64,
        diffusion=DiffusionConfig("cosine", 1000, "eps", "learned_range"),
    )
    upsampler = UpsamplerConfig(
        image_size=64,
        low_res_size=32,
        model_channels=32,
        channel_mult=(1, 1),
        num_res_blocks=1,
        resblock_updown=False,
        last_step_model=True,
        diffusion=DiffusionConfig("cosine", 1000, "eps", "fixed_small"),
    )
    return clip, prior, decoder, upsampler


def _randomise_zero_weights(module: nn.Module, generator: torch.Generator) -> None:
    """Give zero-initialised layers (UNet output convs) small random weights.

    A fresh UNet outputs exactly zero, which would make every test of guidance,
    batching or masking pass trivially; a random family must react to its inputs.
    """
    with torch.no_grad():
        for param in module.parameters():
            if param.ndim > 1 and not bool(param.any()):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)


def _embedding_stats(clip: ClipEncoder, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Mean and std (D,) of the CLIP image embeddings of 16 random-noise images."""
    images = []
    for _ in range(16):
        pixels = torch.randint(0, 256, (32, 32, 3), generator=generator, dtype=torch.uint8)
        images.append(PIL.Image.fromarray(pixels.numpy(), mode="RGB"))
    emb = clip.encode_image(images).to(torch.float32)
    return emb.mean(dim=0), emb.std(dim=0).clamp_min(1e-3)


def make_reference_family(
    seed: int = 0, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> Family:
    """The reference family with weights drawn from `seed` (the global RNG is left untouched)."""
    clip_cfg, prior_cfg, decoder_cfg, upsampler_cfg = reference_configs()
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # module constructors draw from the global RNG; forked here
        clip = ClipEncoder.build(clip_cfg)
        prior, decoder = PriorNet(prior_cfg), DecoderNet(decoder_cfg)
        upsampler = UpsamplerPair(upsampler_cfg)
    for net in (prior, decoder, upsampler):
        _randomise_zero_weights(net, generator)
    mean, std = _embedding_stats(clip, generator)
    family = Family(
        name=REFERENCE_NAME,
        clip=clip,
        prior=prior.eval(),
        prior_mean=mean,
        prior_std=std,
        decoder=decoder.eval(),
        upsampler=upsampler.eval(),
        defaults=FamilyDefaults(),
    )
    return family.to(device, dtype)


def save_reference_family(
    path: str | Path, seed: int = 0, *, dtype: torch.dtype = torch.float32
) -> Path:
    """Write the reference family of `seed` to `path` (float32 weights: loads back exactly)."""
    return save_family(make_reference_family(seed), path, dtype=dtype)
