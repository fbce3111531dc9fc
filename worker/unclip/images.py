"""PIL <-> tensor conversion, edit masks, and resizing inputs to a family's resolutions."""

from __future__ import annotations

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

# In a grey or RGB mask, pixels at least this bright mark the area to repaint.
_WHITE_THRESHOLD = 128


def center_square(image: PIL.Image.Image) -> PIL.Image.Image:
    """Crop the largest centred square; outputs are square, so inputs are made square too."""
    width, height = image.size
    side = min(width, height)
    if width == height:
        return image
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))


def image_to_tensor(image: PIL.Image.Image, size: int) -> torch.Tensor:
    """An image as a (3, size, size) float32 tensor in [-1, 1] (centre square, bicubic resize)."""
    square = center_square(image).convert("RGB")
    if square.size != (size, size):
        square = square.resize((size, size), PIL.Image.Resampling.BICUBIC)
    pixels = torch.from_numpy(np.asarray(square, dtype=np.uint8).copy())  # (H, W, 3)
    return pixels.permute(2, 0, 1).to(torch.float32) / 127.5 - 1.0


def to_pil_images(x: torch.Tensor) -> list[PIL.Image.Image]:
    """(B, 3, H, W) in [-1, 1] -> RGB images; values are rounded, so exact pixels round-trip."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a (B, 3, H, W) tensor, got shape {tuple(x.shape)}")
    pixels = ((x.detach().to("cpu", torch.float32) + 1.0) * 127.5).round().clamp(0, 255)
    array = pixels.to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [PIL.Image.fromarray(np.ascontiguousarray(a), mode="RGB") for a in array]


def _repaint_from_mask(mask: PIL.Image.Image) -> np.ndarray:
    """True where the mask marks the area to repaint (RGBA/LA: alpha == 0; grey/RGB: white)."""
    if mask.mode == "P":
        mask = mask.convert("RGBA" if "transparency" in mask.info else "RGB")
    if mask.mode in ("RGBA", "LA", "PA"):
        alpha = np.asarray(mask.getchannel("A"))
        return np.asarray(alpha == 0)
    if mask.mode in ("1", "L", "I", "I;16", "F", "RGB", "CMYK", "YCbCr"):
        grey = np.asarray(mask.convert("L"))
        return np.asarray(grey >= _WHITE_THRESHOLD)
    raise ValueError(
        f"unsupported mask mode {mask.mode!r}; use RGBA (alpha 0 = repaint) "
        "or a grey/RGB image (white = repaint)"
    )


def edit_repaint_mask(
    image: PIL.Image.Image, mask: PIL.Image.Image | None, size: int
) -> torch.Tensor:
    """A (1, size, size) bool tensor, True where an edit repaints.

    Without a mask, an RGBA edit image's own alpha marks the area (alpha == 0).
    """
    if mask is None:
        if image.mode not in ("RGBA", "LA", "PA") and "transparency" not in image.info:
            raise ValueError(
                f"an edit needs a mask: give a mask, or an RGBA image whose alpha = 0 "
                f"marks the area to repaint (got a {image.mode} image without a mask)"
            )
        mask = image
    if image.size != mask.size:
        raise ValueError(f"mask size {mask.size} must equal the image size {image.size}")
    repaint = _repaint_from_mask(center_square(mask))
    tensor = torch.from_numpy(repaint.astype(np.float32))[None, None]  # (1, 1, h, w)
    # Nearest keeps the mask binary at the output size, so pasted pixels stay exact.
    resized = F.interpolate(tensor, size=(size, size), mode="nearest-exact")
    return resized[0] > 0.5


def keep_at(repaint: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 1, S, S) repaint masks -> (N, 1, size, size) float keep masks (1 = known pixel).

    A low-resolution pixel counts as known only if every pixel it covers is known.
    """
    repaint_f = repaint.to(torch.float32)
    if repaint_f.shape[-1] == size:
        return 1.0 - repaint_f
    low = F.interpolate(repaint_f, size=(size, size), mode="area")
    return (low <= 0.0).to(torch.float32)
