"""Classifier-free guidance: conditional and unconditional rows in one network call."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from worker.unclip.clip_encoder import ClipEncoder, TextEncoding

# net_fn(x, t, half) -> raw output; half is "cond" (B rows) or "both" ([cond; uncond], 2B rows).
NetFn = Callable[[Tensor, Tensor, str], Tensor]
ModelFn = Callable[[Tensor, Tensor], Tensor]


def guided_model_fn(net_fn: NetFn, scales: Tensor, *, guided_channels: int) -> ModelFn:
    """A sampler model_fn guiding the first `guided_channels` output channels per row.

    out = uncond + s * (cond - uncond) on those channels (Ho & Salimans 2022, eq. 6);
    the remaining channels (a learned variance) come from the conditional half, so s = 1
    equals the conditional net. When every scale is 1 the unconditional half is skipped (a
    lone row then needs no partner for batch-invariant bytes: batch_invariance.py pads it).
    """
    scales = scales.to(torch.float32)
    if bool((scales == 1.0).all()):

        def cond_fn(x: Tensor, t: Tensor) -> Tensor:
            return net_fn(x, t, "cond")

        return cond_fn

    def model_fn(x: Tensor, t: Tensor) -> Tensor:
        out = net_fn(torch.cat([x, x]), torch.cat([t, t]), "both")
        cond, uncond = out.chunk(2)
        s = scales.to(cond.device, cond.dtype).reshape(-1, *([1] * (cond.ndim - 1)))
        c, u = cond[:, :guided_channels], uncond[:, :guided_channels]
        head = u + s * (c - u)
        return torch.cat([head, cond[:, guided_channels:]], dim=1)

    return model_fn


def encode_prompts_with_null(
    clip: ClipEncoder, prompts: Sequence[str]
) -> tuple[TextEncoding, TextEncoding]:
    """(per-row encodings of `prompts`, the empty prompt repeated per row).

    Each distinct prompt is encoded once; the empty prompt is the unconditional text.
    """
    distinct = sorted(set(prompts) | {""})
    encoded = clip.encode_text(distinct)
    where = {p: i for i, p in enumerate(distinct)}
    rows = torch.tensor([where[p] for p in prompts], device=encoded.pooled.device)
    null = torch.full_like(rows, where[""])
    return _take(encoded, rows), _take(encoded, null)


def _take(encoding: TextEncoding, index: Tensor) -> TextEncoding:
    """Rows `index` of the distinct prompts' `encoding`; a row's text id is its prompt's index."""
    return TextEncoding(
        pooled=encoding.pooled[index],
        tokens=encoding.tokens[index],
        mask=encoding.mask[index],
        text_ids=index,
    )


def concat_encodings(first: TextEncoding, second: TextEncoding) -> TextEncoding:
    """Rows of `first` then rows of `second` (the [cond; uncond] layout).

    Text ids are kept (concatenated) when both have them: they must number one set of distinct
    prompts, as the pair from one `encode_prompts_with_null` call does.
    """
    return TextEncoding(
        pooled=torch.cat([first.pooled, second.pooled]),
        tokens=torch.cat([first.tokens, second.tokens]),
        mask=torch.cat([first.mask, second.mask]),
        text_ids=None
        if first.text_ids is None or second.text_ids is None
        else torch.cat([first.text_ids, second.text_ids]),
    )
