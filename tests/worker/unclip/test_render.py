"""render() and interpolate(): PIL images at the final size, reproducible and batch-independent."""

from __future__ import annotations

import io
import threading
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
    target = _spec(prompt="a yellow star", seed=11, n=2, reproducible=True)
    alone = render(family, [target])[0]
    again = render(family, [target])[0]
    batched = render(family, [_spec(seed=3, n=2, reproducible=True), target])[1]
    for a, b, c in zip(alone, again, batched, strict=True):
        assert _png(a) == _png(b) == _png(c)
    other = render(family, [_spec(prompt="a yellow star", seed=12)])[0][0]
    assert _png(other) != _png(alone[0])


@pytest.mark.parametrize("guidance", [1.0, 8.0])
def test_reproducible_mode_gives_the_same_bytes_at_batch_1_and_n(
    family: Family, guidance: float
) -> None:
    """One image alone (batch 1) and among 6 rows; decoder guidance 1 runs lone rows."""
    target = _spec(prompt="a blue star", seed=21, reproducible=True, decoder_guidance=guidance)
    others = [_spec(prompt=f"shape {i}", seed=i, n=1 + i, reproducible=True,
                    decoder_guidance=guidance) for i in range(3)]  # fmt: skip
    (alone,) = render(family, [target])
    batched = render(family, [others[0], target, others[1], others[2]])
    assert sum(len(images) for images in batched) == 7
    assert _png(alone[0]) == _png(batched[1][0])


def test_two_families_render_concurrently_in_threads_with_their_own_bytes(
    family: Family,
) -> None:
    """Reproducible renders of two families in threads, started together beside a full-speed
    render of the first family in a third thread, give each family's bytes alone."""
    other_family = make_reference_family(2)
    jobs = {
        "first": (family, [_spec(prompt="a red cube", seed=5, n=2, reproducible=True),
                           _spec(prompt="a green ball", seed=6, reproducible=True)]),
        "second": (other_family, [_spec(prompt="a red cube", seed=5, reproducible=True),
                                  _spec(prompt="a grey star", seed=7, n=2, reproducible=True)]),
        "fast": (family, [_spec(prompt="a pink cone", seed=8, n=3, reproducible=False)]),
    }  # fmt: skip
    alone = {
        name: [[_png(image) for image in images] for spec in specs
               for images in render(fam, [spec])]
        for name, (fam, specs) in jobs.items()
    }  # fmt: skip
    barrier = threading.Barrier(len(jobs), timeout=60)
    together: dict[str, list[list[bytes]]] = {}

    def run(name: str) -> None:
        fam, specs = jobs[name]
        torch.set_num_threads(1)
        barrier.wait()
        together[name] = [[_png(image) for image in images] for images in render(fam, specs)]

    threads = [threading.Thread(target=run, args=(name,)) for name in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert together["first"] == alone["first"]
    assert together["second"] == alone["second"]
    assert together["first"][0] != together["second"][0]  # two families, two images
    assert len(together["fast"][0]) == 3


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
    images = interpolate(family, a, b, [0.0, 0.5, 1.0], seed=4, steps=STEPS, reproducible=True)
    assert len(images) == 3 and all(i.size == (64, 64) for i in images)
    variation = _spec(
        kind="variation",
        prompt="",
        image=a,
        n=3,
        seed=4,
        decoder_guidance=family.defaults.decoder_guidance,
        reproducible=True,  # CLIP encodes the two ends together, the variation's one alone
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
