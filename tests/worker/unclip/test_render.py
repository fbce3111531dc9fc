"""render() and interpolate(): PIL images at the final size, reproducible and batch-independent."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import PIL.Image
import pytest
import torch

from worker.unclip.family import Family
from worker.unclip.reference_family import make_reference_family
from worker.unclip.render import interpolate, render, slerp
from worker.unclip.render_spec import RenderSpec, StageSteps

STEPS = StageSteps(prior=2, decoder=2, upsampler=2)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def family() -> Family:
    return make_reference_family(1)


def _image(seed: int) -> PIL.Image.Image:
    array = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    return PIL.Image.fromarray(array, mode="RGB")


def _png(image: PIL.Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _spec(**kw: Any) -> RenderSpec:
    kw.setdefault("kind", "generate")
    kw.setdefault("prompt", "a red cube")
    kw.setdefault("n", 1)
    kw.setdefault("seed", 1)
    kw.setdefault("steps", STEPS)
    return RenderSpec(**kw)


def test_render_returns_final_size_images(family: Family) -> None:
    out = render(family, [_spec(n=2), _spec(kind="variation", prompt="", image=_image(0))])
    assert [len(images) for images in out] == [2, 1]
    for image in [*out[0], *out[1]]:
        assert image.size == (64, 64) and image.mode == "RGB"
    assert render(family, []) == []


def test_same_seed_same_png_bytes_alone_or_batched(family: Family) -> None:
    target = _spec(prompt="a yellow star", seed=11, n=2)
    alone = render(family, [target])[0]
    again = render(family, [target])[0]
    batched = render(family, [_spec(seed=3, n=2), target])[1]
    for a, b, c in zip(alone, again, batched, strict=True):
        assert _png(a) == _png(b) == _png(c)
    other = render(family, [_spec(prompt="a yellow star", seed=12)])[0][0]
    assert _png(other) != _png(alone[0])


def test_bfloat16_family_renders(family: Family) -> None:
    half = make_reference_family(1, dtype=torch.bfloat16)
    (images,) = render(half, [_spec()])
    assert images[0].size == (64, 64)


def test_slerp_ends_and_norm() -> None:
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    assert torch.equal(slerp(a, b, 0.0), a)
    assert torch.allclose(slerp(a, b, 1.0), b, atol=1e-6)
    mid = slerp(a, b, 0.5)
    assert torch.allclose(mid / mid.norm(), torch.tensor([2**-0.5, 2**-0.5]), atol=1e-6)
    assert torch.allclose(mid.norm(), torch.tensor(1.5))


def test_interpolate_starts_at_the_first_image(family: Family) -> None:
    a, b = _image(1), _image(2)
    images = interpolate(family, a, b, [0.0, 0.5, 1.0], seed=4, steps=STEPS)
    assert len(images) == 3 and all(i.size == (64, 64) for i in images)
    variation = _spec(
        kind="variation",
        prompt="",
        image=a,
        n=3,
        seed=4,
        decoder_guidance=family.defaults.decoder_guidance,
    )
    (expected,) = render(family, [variation])
    assert _png(images[0]) == _png(expected[0])
    assert _png(images[2]) != _png(expected[2])
    with pytest.raises(ValueError, match=r"weights must be in \[0, 1\], got 1.5"):
        interpolate(family, a, b, [1.5], seed=0)


def test_spec_validation_names_the_bad_value() -> None:
    with pytest.raises(ValueError, match="n must be a positive integer, got 0"):
        _spec(n=0)
    with pytest.raises(ValueError, match="kind must be one of generate, variation, edit, mix"):
        _spec(kind="upscale")
    with pytest.raises(ValueError, match="a variation needs exactly one of an input image or an"):
        _spec(kind="variation")
    with pytest.raises(ValueError, match="only an edit takes a mask"):
        _spec(mask=_image(0))
    with pytest.raises(ValueError, match="steps must be three positive integers"):
        StageSteps.parse("10,10")
    with pytest.raises(ValueError, match="decoder steps must be a positive integer, got 0"):
        StageSteps(10, 0, 4)
    assert StageSteps.parse("25, 25,7") == StageSteps(25, 25, 7)
