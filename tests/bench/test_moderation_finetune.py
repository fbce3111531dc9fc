"""bench/moderation_finetune.py: recall at a false-positive budget, and the fine-tuned top layers
reproduce MiniLM's own last layer before any training."""

from __future__ import annotations

import numpy as np
import torch

from bench.moderation_finetune import LAYERS, TopLayers, lower_states, recall_at
from worker.moderation.text_encoders import MiniLMEncoder


def test_recall_at_a_budget_uses_the_threshold_that_flags_that_share_of_benign_rows() -> None:
    score = np.array([0.9, 0.8, 0.3, 0.95, 0.5, 0.4, 0.2, 0.1])
    unsafe = np.array([True, True, True, False, False, False, False, False])
    # One benign row of five may be flagged (20%): the threshold sits just above the second
    # highest benign score (0.5), so 0.95 is flagged and so are 0.9 and 0.8, not 0.3.
    recall, fp = recall_at(score, unsafe, 0.2)
    assert (recall, fp) == (2 / 3, 1 / 5)
    assert recall_at(score, unsafe, 0.0) == (0.0, 0.0)


def test_untrained_top_layers_give_minilm_s_own_pooled_embedding() -> None:
    encoder = MiniLMEncoder()
    texts = [
        "a red cube on a blue sphere",
        "a watercolour of a lighthouse at dusk, seen from the sea",
    ]
    cache = lower_states(encoder, texts, top=2)
    assert [s.shape[0] for s in cache] == [
        int(encoder.model.tokenizer(t, return_tensors="pt")["attention_mask"].sum()) for t in texts
    ]
    model = TopLayers(encoder.model[0].auto_model, top=2, classes=3).eval()
    captured: list[torch.Tensor] = []
    model.out.register_forward_hook(lambda _m, args, _out: captured.append(args[0] / 20.0))
    with torch.no_grad():
        logits = model(cache)
    assert logits.shape == (2, 3)
    # The copies start as MiniLM's layers LAYERS-2.. LAYERS-1: the pooled unit state is the
    # package's sentence embedding.
    expected = encoder.encode(texts)
    assert torch.allclose(captured[0], expected, atol=1e-4), (captured[0] - expected).abs().max()
    assert LAYERS == 6
