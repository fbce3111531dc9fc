"""PriorNet: the causal-transformer diffusion prior over CLIP image embeddings (Karlo layout)."""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from worker.unclip.configs import PriorConfig
from worker.unclip.nets.unet import LayerNorm32, timestep_embedding

EXTRA_TOKENS = 4  # text embedding, time embedding, noised image embedding, query
STEP_TOKENS = 3  # the positions that depend on the step: time, noised image embedding, query
KeyValues = tuple[torch.Tensor, torch.Tensor]  # one attention layer's keys, values (B, H, S, ch)


class MultiheadAttention(nn.Module):
    """Self-attention with a fused projection `c_qkv` laid out per head as [q | k | v]."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.c_qkv = nn.Linear(width, width * 3)
        self.c_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, S, W), mask (B, 1, S, S) bool (True: may attend) -> (B, S, W)."""
        return self.forward_kv(x, mask)[0]

    def forward_kv(
        self, x: torch.Tensor, mask: torch.Tensor, past: KeyValues | None = None
    ) -> tuple[torch.Tensor, KeyValues]:
        """(output (B, S, W), the keys and values of x's S positions (B, H, S, ch) each).

        With `past`, x's positions follow the P positions whose keys and values it holds:
        mask is then (B, 1, S, P + S).
        """
        b, s, w = x.shape
        qkv = self.c_qkv(x).view(b, s, self.heads, -1).transpose(1, 2)  # (B, H, S, 3ch)
        q, k, v = (part.contiguous() for part in qkv.chunk(3, dim=-1))  # fused CPU kernel
        keys, values = (
            (k, v) if past is None else (torch.cat([past[0], k], 2), torch.cat([past[1], v], 2))
        )
        h = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)  # (B, H, S, ch)
        return self.c_proj(h.transpose(1, 2).reshape(b, s, w)), (k, v)


class MLP(nn.Module):
    """Position-wise feed-forward, 4x wide, exact GELU."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, width * 4)
        self.c_proj = nn.Linear(width * 4, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


class ResidualAttentionBlock(nn.Module):
    """Pre-norm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = MultiheadAttention(width, heads)
        self.ln_1 = LayerNorm32(width)
        self.mlp = MLP(width)
        self.ln_2 = LayerNorm32(width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.forward_kv(x, mask)[0]

    def forward_kv(
        self, x: torch.Tensor, mask: torch.Tensor, past: KeyValues | None = None
    ) -> tuple[torch.Tensor, KeyValues]:
        """The block's output and its attention's keys and values (MultiheadAttention)."""
        attn, kv = self.attn.forward_kv(self.ln_1(x), mask, past)
        x = x + attn
        return x + self.mlp(self.ln_2(x)), kv


class Transformer(nn.Module):
    """A stack of residual attention blocks (`resblocks`)."""

    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, mask)
        return x

    @property
    def blocks(self) -> list[ResidualAttentionBlock]:
        """The blocks, first to last, typed (a ModuleList's items are plain Modules)."""
        return [cast(ResidualAttentionBlock, block) for block in self.resblocks]


class PriorNet(nn.Module):
    """Causal transformer predicting the clean, normalised CLIP image embedding.

    forward(x_t (B, D), t (B,) long, *, text_emb (B, D), text_tokens (B, L, W_text),
    text_mask (B, L) bool) -> (B, D), in x_t's dtype. The sequence is
    [text tokens (L = text_ctx), text emb, time emb, noised image emb, learned query
    `prd_emb`] plus a learned positional embedding; attention is causal and skips padded
    text tokens (text_mask False); the output is read at the last (query) position.
    x_t and the output are normalised embeddings: see `normalise_image_emb`.
    """

    def __init__(self, cfg: PriorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        width = cfg.width
        self.time_embed = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.text_enc_proj = nn.Linear(cfg.text_width, width)
        self.text_emb_proj = nn.Linear(cfg.clip_dim, width)
        self.clip_img_proj = nn.Linear(cfg.clip_dim, width)
        self.out_proj = nn.Linear(width, cfg.clip_dim)
        self.transformer = Transformer(width, cfg.layers, cfg.heads)
        self.final_ln = LayerNorm32(width) if cfg.final_ln else None
        seq = cfg.text_ctx + EXTRA_TOKENS
        self.positional_embedding = nn.Parameter(torch.randn(1, seq, width) * 0.01)
        self.prd_emb = nn.Parameter(torch.randn(1, 1, width) * 0.01)
        causal = torch.ones(seq, seq, dtype=torch.bool).tril()
        self.causal_mask: torch.Tensor
        self.register_buffer("causal_mask", causal, persistent=False)

    @property
    def dtype(self) -> torch.dtype:
        return self.out_proj.weight.dtype

    def attention_mask(self, text_mask: torch.Tensor) -> torch.Tensor:
        """(B, L) bool -> (B, 1, S, S) bool: causal and never attending to padded text."""
        keys = F.pad(text_mask.to(torch.bool), (0, EXTRA_TOKENS), value=True)  # (B, S)
        return (self.causal_mask[None] & keys[:, None, :])[:, None]

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        *,
        text_emb: torch.Tensor,
        text_tokens: torch.Tensor,
        text_mask: torch.Tensor,
    ) -> torch.Tensor:
        self.check_text_tokens(text_tokens)
        seq = torch.cat([self.prefix_tokens(text_emb, text_tokens), self.step_tokens(x_t, t)], 1)
        h = self.transformer(seq, self.attention_mask(text_mask))
        return self.readout(h[:, -1]).to(x_t.dtype)

    def check_text_tokens(self, text_tokens: torch.Tensor) -> None:
        """ValueError unless text_tokens (B, L, W_text) has L = text_ctx."""
        if text_tokens.shape[1] != self.cfg.text_ctx:
            raise ValueError(
                f"prior needs exactly text_ctx={self.cfg.text_ctx} text tokens, "
                f"got {text_tokens.shape[1]}"
            )

    def prefix_tokens(self, text_emb: torch.Tensor, text_tokens: torch.Tensor) -> torch.Tensor:
        """The L + 1 positions that depend on the text only (tokens, text embedding) (B, L+1, W).

        Under the causal mask their hidden states never see the step's positions: see
        nets/prior_cache.py, which computes them once per request.
        """
        dtype, prefix = self.dtype, self.cfg.text_ctx + 1
        seq = torch.cat(
            [
                self.text_enc_proj(text_tokens.to(dtype)),  # (B, L, W)
                self.text_emb_proj(text_emb.to(dtype))[:, None],
            ],
            dim=1,
        )
        return seq + self.positional_embedding[:, :prefix]

    def step_tokens(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The positions that change every step: time, noised embedding, query (B, 3, W)."""
        dtype, b = self.dtype, x_t.shape[0]
        t_emb = self.time_embed(timestep_embedding(t, self.cfg.width).to(dtype))  # (B, W)
        seq = torch.cat(
            [
                t_emb[:, None],
                self.clip_img_proj(x_t.to(dtype))[:, None],
                self.prd_emb.expand(b, -1, -1),
            ],
            dim=1,
        )
        return seq + self.positional_embedding[:, -STEP_TOKENS:]

    def readout(self, h_query: torch.Tensor) -> torch.Tensor:
        """The query position's hidden state (B, W) -> the prediction (B, D), in the net's dtype."""
        if self.final_ln is not None:
            h_query = self.final_ln(h_query)
        return self.out_proj(h_query)


def normalise_image_emb(emb: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """CLIP image embedding (B, D) -> the prior's normalised space: (emb - mean) / std."""
    return (emb - mean.to(emb)) / std.to(emb)


def denormalise_image_emb(z: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """The prior's output (B, D) -> a CLIP image embedding: z * std + mean (Karlo's order)."""
    return z * std.to(z) + mean.to(z)
