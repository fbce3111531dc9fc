"""make_batch: determinism, shapes of the arrays, splits and speed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from worker.shapes.dataset import make_batch
from worker.shapes.splits import HELDOUT_COMBINATIONS, HELDOUT_PAIRS, is_heldout


def test_same_seed_gives_same_bytes() -> None:
    a = make_batch(np.random.default_rng(42), 16, size=32, sizes=(64,))
    b = make_batch(np.random.default_rng(42), 16, size=32, sizes=(64,))
    assert a.captions == b.captions
    assert a.scenes == b.scenes
    assert a.images.tobytes() == b.images.tobytes()
    assert a.renders[64].tobytes() == b.renders[64].tobytes()
    c = make_batch(np.random.default_rng(43), 16, size=32)
    assert c.images.tobytes() != a.images.tobytes()


def test_batch_arrays() -> None:
    batch = make_batch(np.random.default_rng(0), 8, size=32, sizes=(32, 64))
    assert batch.images.shape == (8, 32, 32, 3) and batch.images.dtype == np.uint8
    assert batch.renders[64].shape == (8, 64, 64, 3)
    assert batch.images is batch.renders[32]
    assert len(batch.captions) == len(batch.scenes) == 8


def test_training_batches_never_hold_heldout_combinations() -> None:
    batch = make_batch(np.random.default_rng(1), 600, size=16, two_object_fraction=0.5)
    pairs = [[(o.colour, o.shape) for o in s.objects] for s in batch.scenes]
    assert not any(is_heldout(p) for p in pairs)
    assert not any(p in HELDOUT_PAIRS for scene in pairs for p in scene)
    assert not any(frozenset(p) in HELDOUT_COMBINATIONS for p in pairs if len(p) == 2)
    assert {len(p) for p in pairs} == {1, 2}


def test_heldout_batches_hold_only_heldout_scenes() -> None:
    batch = make_batch(np.random.default_rng(2), 100, size=16, split="heldout")
    assert all(is_heldout((o.colour, o.shape) for o in s.objects) for s in batch.scenes)
    two = [s for s in batch.scenes if len(s.objects) == 2]
    assert any(
        frozenset((o.colour, o.shape) for o in s.objects) in HELDOUT_COMBINATIONS for s in two
    )


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="'validation'"):
        make_batch(np.random.default_rng(0), 4, split="validation")
    with pytest.raises(ValueError, match="batch_size"):
        make_batch(np.random.default_rng(0), 0)


def test_a_batch_of_64_at_64px_is_fast() -> None:
    rng = np.random.default_rng(3)
    make_batch(rng, 64)  # warm the coverage cache
    # CPU time, not wall time: the shared machine's load must not decide this test.
    start = time.process_time()
    for _ in range(5):
        make_batch(rng, 64)
    assert (time.process_time() - start) / 5 < 0.05
