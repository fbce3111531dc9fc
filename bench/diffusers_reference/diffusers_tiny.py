"""diffusers' UnCLIPPipeline built at our tiny sizes with seeded random weights (no hub access).

The closest layouts diffusers' own classes allow to our configs (see README.md):
CLIPTextModelWithProjection + CLIPTokenizer (transformers), PriorTransformer, the
UnCLIPTextProjModel, a UNet2DConditionModel decoder with SimpleCrossAttn blocks where our
decoder has attention, and UNet2DModel super-resolution networks, with UnCLIPSchedulers.
The tokenizer is a character-level CLIP BPE vocabulary written to a temporary folder: the
text encoder always reads its full context, so the vocabulary changes no work.
"""

from __future__ import annotations

import json
import string
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from worker.unclip.configs import ClipConfig, DecoderConfig, PriorConfig, UpsamplerConfig


@dataclass(frozen=True)
class Sizes:
    """Our four configs, which the diffusers components are sized from."""

    clip: ClipConfig
    prior: PriorConfig
    decoder: DecoderConfig
    upsampler: UpsamplerConfig


def char_tokenizer(context_length: int) -> Any:
    """A CLIPTokenizer over single characters (no merges), built from files it writes."""
    from transformers import CLIPTokenizer

    chars = [c for c in string.printable if not c.isspace()]
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    folder = Path(tempfile.mkdtemp(prefix="clip-chars-"))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=context_length
    )


def _blocks(
    cfg: DecoderConfig | UpsamplerConfig, attention: tuple[int, ...]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(down, up) block types: SimpleCrossAttn where our net attends (by resolution)."""
    size = cfg.image_size
    down: list[str] = []
    up: list[str] = []
    for level in range(len(cfg.channel_mult)):
        attends = (size >> level) in attention
        down.append("SimpleCrossAttnDownBlock2D" if attends else "ResnetDownsampleBlock2D")
        up.insert(0, "SimpleCrossAttnUpBlock2D" if attends else "ResnetUpsampleBlock2D")
    return tuple(down), tuple(up)


def build_pipeline(sizes: Sizes, seed: int = 0) -> Any:
    """An UnCLIPPipeline on the CPU in fp32 with seeded random weights at `sizes`."""
    from diffusers import (
        PriorTransformer,
        UnCLIPPipeline,
        UnCLIPScheduler,
        UNet2DConditionModel,
        UNet2DModel,
    )
    from diffusers.pipelines.deprecated.unclip.text_proj import UnCLIPTextProjModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    c, p, d, u = sizes.clip, sizes.prior, sizes.decoder, sizes.upsampler
    text = c.open_clip_config["text_cfg"]
    tokenizer = char_tokenizer(c.context_length)
    time_dim = d.model_channels * 4
    down, up = _blocks(d, d.attention_resolutions)
    sr_down, sr_up = _blocks(u, ())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = CLIPTextModelWithProjection(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=c.text_width,
                intermediate_size=c.text_width * 4,
                num_hidden_layers=text["layers"],
                num_attention_heads=text["heads"],
                max_position_embeddings=c.context_length,
                projection_dim=c.embed_dim,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
        prior = PriorTransformer(
            num_attention_heads=p.heads,
            attention_head_dim=p.width // p.heads,
            num_layers=p.layers,
            embedding_dim=p.clip_dim,
            num_embeddings=p.text_ctx,
            additional_embeddings=4,
        )
        text_proj = UnCLIPTextProjModel(
            clip_extra_context_tokens=d.clip_emb_mult,
            clip_embeddings_dim=d.clip_dim,
            time_embed_dim=time_dim,
            cross_attention_dim=d.xf_width,
        )
        decoder = UNet2DConditionModel(
            sample_size=d.image_size,
            in_channels=3,
            out_channels=6,
            layers_per_block=d.num_res_blocks,
            block_out_channels=tuple(d.model_channels * m for m in d.channel_mult),
            down_block_types=down,
            up_block_types=up,
            mid_block_type="UNetMidBlock2DSimpleCrossAttn",
            cross_attention_dim=d.xf_width,
            attention_head_dim=d.num_head_channels,
            resnet_time_scale_shift="scale_shift" if d.use_scale_shift_norm else "default",
            class_embed_type="identity",
        )
        super_res = [
            UNet2DModel(
                sample_size=u.image_size,
                in_channels=6,
                out_channels=3,
                layers_per_block=u.num_res_blocks,
                block_out_channels=tuple(u.model_channels * m for m in u.channel_mult),
                down_block_types=sr_down,
                up_block_types=sr_up,
                add_attention=False,
                resnet_time_scale_shift="scale_shift" if u.use_scale_shift_norm else "default",
            )
            for _ in range(2 if u.last_step_model else 1)
        ]
    prior_prediction = "sample" if p.diffusion.prediction == "x0" else "epsilon"
    sr_prediction = "sample" if u.diffusion.prediction == "x0" else "epsilon"
    pipe = UnCLIPPipeline(
        prior=prior,
        decoder=decoder,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_proj=text_proj,
        super_res_first=super_res[0],
        super_res_last=super_res[-1],  # the same network when ours has no last-step one
        prior_scheduler=UnCLIPScheduler(
            variance_type="fixed_small_log",
            prediction_type=prior_prediction,
            clip_sample=True,
            clip_sample_range=p.diffusion.clamp_x0 or 1.0,
        ),
        decoder_scheduler=UnCLIPScheduler(
            variance_type="learned_range", prediction_type="epsilon", clip_sample_range=1.0
        ),
        super_res_scheduler=UnCLIPScheduler(
            variance_type="fixed_small_log", prediction_type=sr_prediction
        ),
    )
    pipe.set_progress_bar_config(disable=True)
    for module in (text_encoder, prior, text_proj, decoder, *super_res):
        module.eval()
    return pipe
