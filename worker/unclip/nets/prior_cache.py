"""Exact prefix caching for the prior: the text positions' keys and values, once per request.

Under the prior's causal mask the text tokens and the text embedding (the first
text_ctx + 1 positions) never attend to the positions that change every step (time,
noised image embedding, query). Their hidden states, and so the keys and values every
layer computes from them, are the same at every sampling step: `encode_prefix` computes
them once, and `predict_with_prefix` then runs only the step's three positions, attending
to the cached keys and values. The math is PriorNet.forward's; the results equal it to
float rounding (tests/worker/unclip/nets/test_prior_cache.py).

Rows with the same text (a request's prior candidates, every unconditional row) share one
prefix: given `text_ids`, it is computed once per distinct text and its keys and values are
gathered back to every row (8 images x 4 candidates x 2 guidance halves of one prompt: 2
rows instead of 64).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from worker.unclip.nets.prior_net import STEP_TOKENS, KeyValues, PriorNet


@dataclass(frozen=True)
class PrefixCache:
    """One request batch's text prefix: per layer its keys and values (B, H, L + 1, ch)."""

    kv: tuple[KeyValues, ...]
    step_mask: torch.Tensor  # (B, 1, 3, L + 4) bool: what the step's positions may attend

    @property
    def rows(self) -> int:
        return self.step_mask.shape[0]


def encode_prefix(
    net: PriorNet,
    *,
    text_emb: torch.Tensor,
    text_tokens: torch.Tensor,
    text_mask: torch.Tensor,
    text_ids: torch.Tensor | None = None,
) -> PrefixCache:
    """The keys and values of the text positions in every layer, for PriorNet's inputs.

    text_ids (B,): rows with the same id have the same text inputs (TextEncoding.text_ids);
    the prefix then runs once per id.
    """
    net.check_text_tokens(text_tokens)
    mask = net.attention_mask(text_mask)  # (B, 1, S, S)
    first, inverse = _distinct(text_ids, text_emb.shape[0])
    distinct_mask = mask
    if first is not None:
        text_emb, text_tokens, distinct_mask = text_emb[first], text_tokens[first], mask[first]
    prefix = net.cfg.text_ctx + 1
    prefix_mask = distinct_mask[:, :, :prefix, :prefix].contiguous()
    x = net.prefix_tokens(text_emb, text_tokens)
    kv: list[KeyValues] = []
    for block in net.transformer.blocks:
        x, (k, v) = block.forward_kv(x, prefix_mask)
        kv.append((k, v) if inverse is None else (k[inverse], v[inverse]))
    return PrefixCache(kv=tuple(kv), step_mask=mask[:, :, -STEP_TOKENS:].contiguous())


def _distinct(
    text_ids: torch.Tensor | None, rows: int
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(one row per distinct id, each row's index into those), or (None, None) if all differ."""
    if text_ids is None:
        return None, None
    if text_ids.shape != (rows,):
        raise ValueError(f"text_ids must have shape ({rows},), got {tuple(text_ids.shape)}")
    ids, inverse = torch.unique(text_ids, return_inverse=True)
    if ids.shape[0] == rows:
        return None, None
    order = torch.arange(rows, device=text_ids.device)
    first = torch.full((ids.shape[0],), rows, dtype=order.dtype, device=text_ids.device)
    return first.scatter_reduce(0, inverse, order, reduce="amin"), inverse


def predict_with_prefix(
    net: PriorNet, x_t: torch.Tensor, t: torch.Tensor, prefix: PrefixCache
) -> torch.Tensor:
    """PriorNet.forward(x_t, t, text...) for the text `prefix` holds (B, D), in x_t's dtype."""
    if x_t.shape[0] != prefix.rows:
        raise ValueError(
            f"x_t has {x_t.shape[0]} rows but the text prefix was encoded for {prefix.rows}"
        )
    x = net.step_tokens(x_t, t)
    for block, past in zip(net.transformer.blocks, prefix.kv, strict=True):
        x, _ = block.forward_kv(x, prefix.step_mask, past)
    return net.readout(x[:, -1]).to(x_t.dtype)
