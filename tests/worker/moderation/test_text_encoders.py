"""The sentence encoders: MiniLM's layer states come from the same pass as its embedding, and a
head that reads layers refuses an encoder that cannot hand them out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from shared.moderation.policy import load_policy
from worker.moderation.semantic import SemanticChecker
from worker.moderation.semantic_head import load_head
from worker.moderation.text_encoders import MiniLMEncoder

DEFAULT = Path(__file__).resolve().parents[3] / "policies" / "default.yaml"
PROMPTS = ["a cat on a mat", "a step by step diagram of how to bake bread, numbered, flour"]


def test_minilm_layer_states_match_its_embedding_and_are_unit_vectors() -> None:
    encoder = MiniLMEncoder()
    embedding, states = encoder.encode_layers(PROMPTS, (3, 4, 5))
    assert torch.allclose(embedding, encoder.encode(PROMPTS), atol=1e-5)
    assert states.shape == (2, 3, 384)
    assert torch.allclose(states.norm(dim=-1), torch.ones(2, 3), atol=1e-5)
    # Layer 6 is the last one: its pooled state is the sentence embedding itself.
    _, last = encoder.encode_layers(PROMPTS, (6,))
    assert torch.allclose(last[:, 0], embedding, atol=1e-5)
    with pytest.raises(ValueError, match="MiniLM layer 9 is not in 0..6"):
        encoder.encode_layers(PROMPTS, (9,))


class _NamedAsMiniLM:
    """An encoder with MiniLM's name (so the head counts as calibrated) but no layers."""

    name = MiniLMEncoder.name

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.nn.functional.normalize(torch.ones(len(texts), 384), dim=-1)


def test_a_head_over_layers_refuses_an_encoder_without_them() -> None:
    policy = load_policy(DEFAULT)
    assert policy.semantic_head is not None
    head = load_head(policy.semantic_head)
    if not head.encoder_layers:
        pytest.skip("the shipped head reads no encoder layers")
    checker = SemanticChecker(policy, _NamedAsMiniLM(), head=head)
    with pytest.raises(TypeError, match="does not hand out"):
        checker.check("a red circle")
