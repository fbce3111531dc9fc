"""CLIP via open_clip: pooled text embedding, tokens after ln_final with mask, image embeddings."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import PIL.Image
import torch
from torch import nn

from worker.unclip.batch_invariance import matmul
from worker.unclip.configs import ClipConfig


@dataclass(frozen=True)
class TextEncoding:
    """CLIP's view of a batch of prompts."""

    pooled: torch.Tensor  # (B, D): EOT token after ln_final @ text_projection, not normalised
    tokens: torch.Tensor  # (B, L, W): token sequence after ln_final
    mask: torch.Tensor  # (B, L) bool: True up to and including the EOT token
    # (B,) int64 or None: rows with the same id hold the same prompt's encoding (so work that
    # depends on the text alone can run once per id); None when not known
    text_ids: torch.Tensor | None = None


def register_open_clip_config(name: str, config: dict[str, Any]) -> None:
    """Register a custom open_clip model config under `name` (process-wide, no hub)."""
    existing = open_clip.get_model_config(name)
    if existing == config:
        return
    if existing is not None and name in _builtin_names():
        raise ValueError(
            f"open_clip config name {name!r} is a built-in architecture; give the custom "
            "config another name"
        )
    with tempfile.TemporaryDirectory(prefix="unclip-open-clip-") as tmp:
        path = Path(tmp) / f"{name}.json"
        path.write_text(json.dumps(config))
        open_clip.add_model_config(path)
    if open_clip.get_model_config(name) != config:
        raise ValueError(
            f"open_clip did not accept the config for {name!r}: it needs the keys "
            "embed_dim, vision_cfg and text_cfg"
        )


def _builtin_names() -> set[str]:
    folder = Path(open_clip.__file__).parent / "model_configs"
    return {p.stem for p in folder.glob("*.json")}


class ClipEncoder(nn.Module):
    """An open_clip CLIP model with its tokenizer and inference preprocessing."""

    def __init__(
        self,
        config: ClipConfig,
        model: open_clip.CLIP,
        preprocess: Callable[[PIL.Image.Image], torch.Tensor],
    ) -> None:
        super().__init__()
        self.config = config
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(config.name, context_length=config.context_length)

    @classmethod
    def build(
        cls,
        config: ClipConfig,
        *,
        weights: str | Path | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> ClipEncoder:
        """Build `config`'s architecture; load weights from a local file when given."""
        if config.open_clip_config is not None:
            register_open_clip_config(config.name, config.open_clip_config)
        elif open_clip.get_model_config(config.name) is None:
            raise ValueError(
                f"unknown open_clip architecture {config.name!r}; give open_clip_config or one "
                f"of: {', '.join(open_clip.list_models())}"
            )
        logging.disable(logging.WARNING)  # open_clip warns that no weights were loaded yet
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                config.name,
                pretrained=None,
                pretrained_text=False,
                force_context_length=config.context_length,
            )
        finally:
            logging.disable(logging.NOTSET)
        if weights is not None:
            if not Path(weights).is_file():
                raise FileNotFoundError(f"CLIP weights file not found: {weights}")
            open_clip.load_checkpoint(model, str(weights), strict=True)
        if not isinstance(model, open_clip.CLIP):
            raise ValueError(
                f"open_clip architecture {config.name!r} is a {type(model).__name__}; "
                "only CLIP models with a built-in text tower are supported"
            )
        encoder = cls(config, model, preprocess)
        return encoder.to(device=torch.device(device), dtype=dtype).eval()

    @property
    def device(self) -> torch.device:
        return self.model.positional_embedding.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.positional_embedding.dtype

    def tokenize(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (B, L) and mask (B, L), True up to and including EOT."""
        tokens = self.tokenizer(list(prompts)).to(self.device)
        return tokens, tokens != 0

    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str]) -> TextEncoding:
        """Pooled embeddings, token sequences after ln_final and masks of `prompts`."""
        tokens, mask = self.tokenize(prompts)
        m = self.model
        x = m.token_embedding(tokens).to(self.dtype) + m.positional_embedding.to(self.dtype)
        x = m.transformer(x, attn_mask=m.attn_mask)
        x = m.ln_final(x)  # (B, L, W)
        eot = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]  # (B, W)
        projection = m.text_projection
        # A plain projection matrix goes through batch_invariance.matmul: in reproducible
        # mode 4-row CPU calls, so a prompt's embedding ignores its batch.
        linear = isinstance(projection, nn.Linear)
        pooled = projection(eot) if linear else matmul(eot, projection)
        return TextEncoding(pooled=pooled, tokens=x, mask=mask)

    @torch.no_grad()
    def encode_image(self, images: Sequence[PIL.Image.Image]) -> torch.Tensor:
        """(B, D) image embeddings (not normalised) with the config's own preprocessing."""
        if len(images) == 0:
            raise ValueError("encode_image needs at least one image, got none")
        pixels = torch.stack([self.preprocess(image.convert("RGB")) for image in images])
        return self.model.encode_image(pixels.to(self.device, self.dtype))
