"""Low-res input corruptions for upsampler training: Gaussian blur + noise, or BSR-style.

DALL-E 2 (Ramesh et al. 2022, s. C / s. 2.1) trains its first upsampler on low-res inputs
corrupted by Gaussian blur and its second by a more diverse BSR degradation (Zhang et al.
2021, "Designing a practical degradation model for deep blind image super-resolution"):
blur, resampling, noise and JPEG compression applied in a random order. Both make the
upsampler robust to the softer, grainier images the previous stage paints.

Our 32 -> 64 upsampler trains on the blur with FIRST_UPSAMPLER_BLUR; the 64 -> 256 one on the
milder CASCADE_BLUR by default, or on BSR (issue 12): the 32 -> 64 upsampler's outputs are
closest to the true 64 px render blurred with sigma ~0.55 (34.2 dB; residual std ~0.04), so
that blur covers its input at serving without BSR's rescales and JPEG.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from torch import Tensor

Degradation = Literal["blur", "bsr"]
DEGRADATIONS: tuple[Degradation, ...] = ("blur", "bsr")


@dataclass(frozen=True)
class BlurRanges:
    """The "blur" degradation: blur `prob` of the rows with a sigma drawn from `sigma`, then
    add Gaussian noise of a std drawn from [0, noise_std_max] (in the [-1, 1] range)."""

    prob: float
    sigma: tuple[float, float]
    noise_std_max: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"blur prob must be in [0, 1], got {self.prob!r}")
        if not 0.0 < self.sigma[0] <= self.sigma[1]:
            raise ValueError(f"blur sigma range must be 0 < lo <= hi, got {self.sigma!r}")
        if not self.noise_std_max >= 0.0:
            raise ValueError(f"noise_std_max must be >= 0, got {self.noise_std_max!r}")


# DALL-E 2: corrupt the low-res input of the first upsampler by blurring, and Gaussian noise:
# the 32 -> 64 upsampler learns to clean grainy decoder outputs.
FIRST_UPSAMPLER_BLUR = BlurRanges(prob=0.5, sigma=(0.4, 1.0), noise_std_max=0.2)
# 64 -> 256 (issue 12): around the 32 -> 64 upsampler's own softness, a quarter of rows clean.
CASCADE_BLUR = BlurRanges(prob=0.75, sigma=(0.3, 0.8), noise_std_max=0.04)

# BSR-style ranges, milder than BSRGAN's (its inputs are photos; ours are a model's renders).
BSR_BLUR_SIGMA = (0.2, 1.0)  # per axis, for isotropic and anisotropic kernels
BSR_RESCALE = (0.5, 1.0)  # shrink by this factor and resample back
BSR_NOISE_STD = (0.0, 0.06)  # in the [-1, 1] range
BSR_JPEG_QUALITY = (50, 95)
BSR_OP_PROB = 0.5  # each op is applied with this probability, in a shuffled order


def gaussian_blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Blur each image (B, C, H, W) with its own sigma (B,), a 5x5 separable kernel."""
    return anisotropic_blur(x, sigma, sigma, torch.zeros_like(sigma))


def _kernels(sx: Tensor, sy: Tensor, theta: Tensor, radius: int) -> Tensor:
    """(B, K, K) normalised Gaussian kernels with axis sigmas (sx, sy) rotated by theta."""
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(taps, taps, indexing="ij")  # (K, K)
    c, s = torch.cos(theta.double())[:, None, None], torch.sin(theta.double())[:, None, None]
    u = c * xx + s * yy  # (B, K, K) coordinates along the kernel's own axes
    v = -s * xx + c * yy
    k = torch.exp(
        -(u**2) / (2 * sx.double()[:, None, None] ** 2)
        - v**2 / (2 * sy.double()[:, None, None] ** 2)
    )
    return k / k.sum(dim=(1, 2), keepdim=True)


def anisotropic_blur(x: Tensor, sx: Tensor, sy: Tensor, theta: Tensor, radius: int = 2) -> Tensor:
    """Blur each image (B, C, H, W) by its own rotated Gaussian (sigmas (B,), angle (B,))."""
    b, c, h, w = x.shape
    k = _kernels(sx, sy, theta, radius).to(x.dtype)  # (B, K, K)
    weight = k.repeat_interleave(c, dim=0)[:, None]  # (B*C, 1, K, K)
    padded = F.pad(x.reshape(1, b * c, h, w), (radius,) * 4, mode="replicate")
    return F.conv2d(padded, weight, groups=b * c).reshape(b, c, h, w)


def blur_noise_degrade(
    low_res: Tensor, gen: torch.Generator, ranges: BlurRanges = FIRST_UPSAMPLER_BLUR
) -> Tensor:
    """Random blur (ranges.prob of the rows) and Gaussian noise on the low-res condition."""
    b = low_res.shape[0]
    dev = low_res.device
    blur = torch.rand(b, generator=gen, device=dev) < ranges.prob
    lo, hi = ranges.sigma
    sigma = lo + (hi - lo) * torch.rand(b, generator=gen, device=dev)
    out = torch.where(blur[:, None, None, None], gaussian_blur(low_res, sigma), low_res)
    std = ranges.noise_std_max * torch.rand(b, generator=gen, device=dev)
    noise = torch.randn(low_res.shape, generator=gen, device=dev)
    return (out + std[:, None, None, None] * noise).clamp(-1.0, 1.0)


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(*bounds))


def _bsr_blur(x: Tensor, rng: np.random.Generator) -> Tensor:
    sx = _uniform(rng, BSR_BLUR_SIGMA)
    sy = sx if rng.random() < 0.5 else _uniform(rng, BSR_BLUR_SIGMA)  # iso or anisotropic
    theta = _uniform(rng, (0.0, float(np.pi)))
    one = torch.tensor([1.0])
    radius = 3 if max(sx, sy) > 1.0 else 2
    return anisotropic_blur(x[None], one * sx, one * sy, one * theta, radius)[0]


def _bsr_rescale(x: Tensor, rng: np.random.Generator) -> Tensor:
    side = x.shape[-1]
    small = max(4, round(side * _uniform(rng, BSR_RESCALE)))
    modes = ("bilinear", "bicubic", "area")
    down = F.interpolate(x[None], size=(small, small), mode=modes[rng.integers(3)])
    up_mode = ("bilinear", "bicubic", "nearest")[rng.integers(3)]
    return F.interpolate(down, size=(side, side), mode=up_mode)[0]


def _bsr_noise(x: Tensor, rng: np.random.Generator) -> Tensor:
    std = _uniform(rng, BSR_NOISE_STD)
    seed = int(rng.integers(2**31))
    gen = torch.Generator().manual_seed(seed)
    if rng.random() < 0.3:  # luminance noise, the same in every channel
        noise = torch.randn((1, *x.shape[1:]), generator=gen).expand_as(x)
    else:
        noise = torch.randn(x.shape, generator=gen)
    return x + std * noise


def _bsr_jpeg(x: Tensor, rng: np.random.Generator) -> Tensor:
    quality = int(rng.integers(BSR_JPEG_QUALITY[0], BSR_JPEG_QUALITY[1] + 1))
    pixels = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    decoded = np.asarray(PIL.Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return torch.from_numpy(decoded.copy()).permute(2, 0, 1).float().div(127.5).sub(1.0)


BSR_OPS = (_bsr_blur, _bsr_rescale, _bsr_noise, _bsr_jpeg)


def bsr_degrade(low_res: Tensor, rng: np.random.Generator) -> Tensor:
    """Per image (B, 3, h, w) in [-1, 1]: blur, rescale, noise, JPEG, each with probability
    BSR_OP_PROB, in a random order per image (BSRGAN's shuffled pipeline, milder ranges)."""
    out = []
    for image in low_res.detach().float().cpu():
        for index in rng.permutation(len(BSR_OPS)):
            if rng.random() < BSR_OP_PROB:
                image = BSR_OPS[index](image, rng)
        out.append(image.clamp(-1.0, 1.0))
    return torch.stack(out).to(low_res.device, low_res.dtype)
