"""The prior stage's embedding-level inputs: a variation of a given embedding, and mixes."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import PIL.Image
import pytest
import torch

from worker.unclip.decoder_stage import run_decoder
from worker.unclip.embedding_mix import slerp
from worker.unclip.family import Family
from worker.unclip.prior_stage import run_prior
from worker.unclip.reference_family import make_reference_family
from worker.unclip.render_spec import MixPart, RenderSpec, StageSteps

STEPS = StageSteps(prior=2, decoder=2, upsampler=2)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def family() -> Family:
    return make_reference_family(0)


def _image(seed: int) -> PIL.Image.Image:
    array = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    return PIL.Image.fromarray(array, mode="RGB")


def test_variation_of_a_stored_embedding_equals_the_image_variation(family: Family) -> None:
    by_image = RenderSpec(kind="variation", prompt="", n=2, seed=3, steps=STEPS, image=_image(1))
    [emb] = run_prior(family, [by_image])
    by_embedding = RenderSpec(kind="variation", prompt="", n=2, seed=3, steps=STEPS,
                              image_embedding=emb[0])  # fmt: skip
    [again] = run_prior(family, [by_embedding])
    assert torch.equal(emb, again)
    images = run_decoder(family, [by_image, by_embedding], [emb, again])
    assert torch.equal(images[0], images[1])  # the same image, from the stored vector


def test_two_prompt_mix_is_the_slerp_of_their_prior_samples(family: Family) -> None:
    parts = (MixPart(weight=1.0, prompt="a red circle"), MixPart(weight=1.0, prompt="a blue star"))
    mix = RenderSpec(kind="mix", prompt="", n=2, seed=9, steps=STEPS, mix=parts)
    [mixed] = run_prior(family, [mix])
    assert mixed.shape == (2, family.prior_config.clip_dim) and torch.isfinite(mixed).all()
    # Each prompt alone, with the seeds the mix gives its entries.
    from worker.unclip.prior_stage import mix_part_seed

    alone = [run_prior(family, [RenderSpec(kind="generate", prompt=p.prompt or "", n=2,
                                           seed=mix_part_seed(9, j), steps=STEPS)])[0]
             for j, p in enumerate(parts)]  # fmt: skip
    assert torch.allclose(mixed, slerp(alone[0], alone[1], 0.5), atol=1e-5)


def test_mix_of_image_and_embedding_and_bad_mixes(family: Family) -> None:
    emb = torch.randn(family.prior_config.clip_dim, generator=torch.Generator().manual_seed(0))
    mix = RenderSpec(kind="mix", prompt="", n=1, seed=1, steps=STEPS, mix=(
        MixPart(weight=3.0, image=_image(2)), MixPart(weight=1.0, embedding=emb)))  # fmt: skip
    [mixed] = run_prior(family, [mix])
    [image_emb] = run_prior(family, [RenderSpec(kind="variation", prompt="", n=1, seed=1,
                                                steps=STEPS, image=_image(2))])  # fmt: skip
    assert torch.allclose(mixed, slerp(image_emb, emb[None], 0.25), atol=1e-5)
    with pytest.raises(ValueError, match="2 to 4"):
        RenderSpec(kind="mix", prompt="", n=1, seed=1, mix=(MixPart(1.0, prompt="x"),))
    with pytest.raises(ValueError, match="exactly one of prompt, image or embedding"):
        MixPart(1.0, prompt="x", embedding=emb)
