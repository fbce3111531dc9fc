"""UNet blocks: without autograd the in-place path gives the out-of-place results bit for bit."""

from __future__ import annotations

import pytest
import torch

from worker.unclip.nets.unet import GroupNorm32, ResBlock, upsample_2x


@pytest.mark.parametrize(
    ("scale_shift", "updown", "out"),
    [(True, {}, 64), (False, {}, 32), (True, {"down": True}, 32), (False, {"up": True}, 64)],
)
def test_resblock_in_place_equals_out_of_place(
    scale_shift: bool, updown: dict[str, bool], out: int
) -> None:
    torch.manual_seed(0)
    block = ResBlock(32, 48, 0.0, out, use_scale_shift_norm=scale_shift, **updown).eval()
    for p in block.parameters():  # the output conv starts at zero: give it weights
        p.data.normal_(0.0, 0.1)
    x, emb = torch.randn(3, 32, 8, 8), torch.randn(3, 48)
    with torch.enable_grad():
        reference = block(x, emb)
    assert reference.requires_grad  # the out-of-place path ran
    with torch.inference_mode():
        fast = block(x, emb)
    assert torch.equal(fast, reference)


def test_in_place_path_leaves_inputs_alone() -> None:
    torch.manual_seed(1)
    block = ResBlock(32, 48, 0.0, 32, use_scale_shift_norm=True).eval()
    norm = GroupNorm32(32, silu=True)
    x, emb = torch.randn(2, 32, 4, 4), torch.randn(2, 48)
    x_before, emb_before = x.clone(), emb.clone()
    with torch.inference_mode():
        block(x, emb)
        norm(x)
    assert torch.equal(x, x_before) and torch.equal(emb, emb_before)


@pytest.mark.parametrize(
    ("shape", "channels_last"),
    [((2, 64, 16, 16), False), ((1, 8, 32, 32), False), ((2, 128, 8, 8), False),
     ((3, 16, 16, 16), True)],  # fmt: skip
)
def test_upsample_2x_equals_nearest_interpolate(
    shape: tuple[int, int, int, int], channels_last: bool
) -> None:
    x = torch.randn(*shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = upsample_2x(x)
    assert torch.equal(out, torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"))
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
