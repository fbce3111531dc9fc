"""bench/render_flops.py counts a convolution's FLOPs by its input shape and rates its speed."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.render_flops import conv_rate, render_flops


def test_flops_are_counted_per_convolution_shape() -> None:
    x, w = torch.randn(2, 8, 16, 16), torch.randn(4, 8, 3, 3)
    total, per_conv = render_flops(lambda: (F.conv2d(x, w, padding=1), F.conv2d(x, w, padding=1)))
    per_call = 2 * 2 * 4 * 8 * 3 * 3 * 16 * 16  # 2 FLOPs per multiply-add, every output value
    assert per_conv == {((2, 8, 16, 16), (4, 8, 3, 3)): 2 * per_call}
    assert total == 2 * per_call


def test_conv_rate_is_a_positive_speed() -> None:
    assert conv_rate((1, 8, 16, 16), (8, 8, 3, 3), repeats=1) > 0
