"""The upsampler cascade: a family with a second upsampler runs it only for requests that want
its size, saves and loads it with its native sizes, and reports progress as one stage."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from shared.family_info import read_family_info
from worker.unclip.configs import DiffusionConfig, UpsamplerConfig
from worker.unclip.family import Family, FamilyError, load_family, save_family
from worker.unclip.nets import UpsamplerPair, resize_low_res
from worker.unclip.reference_family import make_reference_family
from worker.unclip.render_spec import RenderSpec, StageSteps, StepProgress
from worker.unclip.upsampler_stage import run_upsampler

STEPS = StageSteps(prior=2, decoder=2, upsampler=2)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _second_upsampler() -> UpsamplerPair:
    cfg = UpsamplerConfig(
        image_size=128,
        low_res_size=64,
        model_channels=32,
        channel_mult=(1, 1),
        num_res_blocks=1,
        last_step_model=False,
        patch_size=2,
        diffusion=DiffusionConfig("cosine", 1000, "x0", "fixed_small"),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        pair = UpsamplerPair(cfg)
        for p in pair.parameters():  # the zero-initialised output conv would hide the net
            p.data.normal_(0.0, 0.05)
    return pair.eval()


@pytest.fixture(scope="module")
def family() -> Family:
    return dataclasses.replace(make_reference_family(0), cascade=(_second_upsampler(),))


def _low(n: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, 3, 32, 32), generator=g) * 2 - 1


def _spec(**kw: object) -> RenderSpec:
    return RenderSpec(kind="generate", prompt="a red cube", n=1, seed=1, steps=STEPS, **kw)  # type: ignore[arg-type]


def test_each_request_gets_its_native_size(family: Family) -> None:
    sizes = [None, 64, 100, 128, 512]  # 100 runs to 128; 512 stops at the largest, 128
    out = run_upsampler(family, [_spec(size=s) for s in sizes], [_low(seed=i) for i in range(5)])
    assert [t.shape[-1] for t in out] == [64, 64, 128, 128, 128]
    assert family.native_sides == (64, 128)
    assert [family.output_side(s) for s in sizes] == [64, 64, 128, 128, 128]


def test_the_second_pass_is_conditioned_on_the_first_ones_output(
    family: Family, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(family, "frozen_graphs", False)  # module hooks run on eager calls only
    low = _low(seed=3)
    (at_64,) = run_upsampler(family, [_spec(size=64)], [low])
    alone = run_upsampler(dataclasses.replace(family, cascade=()), [_spec()], [low])[0]
    assert torch.equal(at_64, alone)  # a family's cascade does not change its 64 px images
    seen: list[torch.Tensor] = []

    def record(_module: object, _args: object, kwargs: dict[str, torch.Tensor]) -> None:
        seen.append(kwargs["low_res"].clone())

    net = family.cascade[0].model_first_steps
    handle = net.register_forward_pre_hook(record, with_kwargs=True)
    try:
        (at_128,) = run_upsampler(family, [_spec(size=128)], [low])
    finally:
        handle.remove()
    assert at_128.shape == (1, 3, 128, 128) and len(seen) == STEPS.upsampler
    expected = resize_low_res(at_64, 128)
    assert all(torch.allclose(cond, expected, atol=1e-6) for cond in seen)


def test_progress_counts_both_passes_as_one_stage(family: Family) -> None:
    seen: list[StepProgress] = []
    run_upsampler(
        family, [_spec(size=128), _spec(size=64)], [_low(), _low(seed=1)], callback=seen.append
    )
    assert [p.step for p in seen] == [1, 2, 3, 4]
    assert {p.total for p in seen} == {4} and {p.stage for p in seen} == {"upsampler"}


def test_an_edit_keeps_its_pixels_at_the_cascade_size(family: Family) -> None:
    array = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    image = PIL.Image.fromarray(array, mode="RGB")
    mask = PIL.Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 32, 32))
    spec = RenderSpec(
        kind="edit", prompt="x", n=1, seed=1, steps=STEPS, image=image, mask=mask, size=128
    )
    (out,) = run_upsampler(family, [spec], [_low()])
    from worker.unclip.images import edit_repaint_mask, image_to_tensor

    keep = ~edit_repaint_mask(image, mask, 128)
    given = image_to_tensor(image, 128)
    assert out.shape[-1] == 128
    assert torch.equal(out[0][:, keep[0]], given[:, keep[0]])


def test_save_and_load_keep_the_cascade_and_its_sizes(family: Family, tmp_path: Path) -> None:
    save_family(family, tmp_path, dtype=torch.float32)
    meta = json.loads((tmp_path / "family.json").read_text())
    assert meta["native_sizes"] == ["64x64", "128x128"] and meta["native_size"] == "128x128"
    assert (tmp_path / "upsampler128.safetensors").is_file()
    loaded = load_family(tmp_path)
    assert loaded.native_sides == (64, 128) and loaded.cascade[0].cfg.patch_size == 2
    low = _low(seed=5)
    a = run_upsampler(family, [_spec(size=128)], [low])[0]
    b = run_upsampler(loaded, [_spec(size=128)], [low])[0]
    assert torch.equal(a, b)
    info = read_family_info(tmp_path)
    assert info.native_sizes == ("64x64", "128x128")
    assert [info.native_size_for(s) for s in (None, "64x64", "128x128", "1024x1024")] == [
        "128x128",
        "64x64",
        "128x128",
        "128x128",
    ]
    (tmp_path / "upsampler128.json").unlink()
    with pytest.raises(FamilyError, match="upsampler128.json is missing"):
        load_family(tmp_path)


def test_a_cascade_upsampler_can_take_its_own_step_count(family: Family) -> None:
    defaults = dataclasses.replace(family.defaults, cascade_steps={"upsampler128": 1})
    own = dataclasses.replace(family, defaults=defaults)
    seen: list[StepProgress] = []
    (out,) = run_upsampler(own, [_spec(size=128)], [_low()], callback=seen.append)
    assert out.shape[-1] == 128
    assert [(p.step, p.total) for p in seen] == [(1, 3), (2, 3), (3, 3)]  # 2 + 1 steps
    with pytest.raises(FamilyError, match="cascade_steps"):
        dataclasses.replace(family.defaults, cascade_steps={"decoder": 1})
