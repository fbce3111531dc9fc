"""Upload handling: bodies read under a byte cap, images sniffed by Pillow, masks checked."""

from __future__ import annotations

import base64
import binascii
import io
import threading
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError
from starlette.requests import Request

from shared.errors import InvalidImage, InvalidInput, PayloadTooLarge
from shared.settings import Limits

ALLOWED_FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
# What the worker reads as a mask (worker/unclip/images.py): alpha 0, or white, marks the edit.
MASK_MODES = ("RGBA", "LA", "PA", "P", "L", "1", "RGB")
# Modes Pillow writes as PNG unchanged; others (CMYK, YCbCr JPEGs, PA) are converted.
PNG_MODES = ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA")
# Room for the JSON or multipart framing and the scalar fields around the uploads.
FRAMING_BYTES = 64 * 1024
# warnings.catch_warnings swaps process-wide filters; uploads are sniffed in a thread pool.
_WARNINGS_LOCK = threading.Lock()


@dataclass(frozen=True)
class UploadedImage:
    """An upload that Pillow decoded as an allowed format, re-encoded as PNG for storage."""

    data: bytes
    format: str  # PNG | JPEG | WEBP
    width: int
    height: int
    mode: str
    transparency: bool = False  # a palette or grey image with a transparent colour
    source_format: str = "PNG"  # what the client sent; `data` is always a re-encoded PNG

    @property
    def extension(self) -> str:
        return ALLOWED_FORMATS[self.format]

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    @property
    def has_alpha(self) -> bool:
        return self.transparency or self.mode in ("RGBA", "LA", "PA", "RGBa", "La")


def body_limit(limits: Limits, *, base64_encoded: bool) -> int:
    """Most bytes a job request may have: two uploads (image and mask) plus framing."""
    uploads = 2 * limits.max_upload_bytes
    if base64_encoded:
        uploads = (uploads + 2) // 3 * 4
    return uploads + FRAMING_BYTES


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"request body of {declared} bytes exceeds the limit of {limit} bytes", param="body"
        )
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes", param="body")
        chunks.append(chunk)
    return b"".join(chunks)


def check_upload_size(data: bytes, *, param: str, limits: Limits) -> None:
    """413 unless `data` fits limits.max_upload_bytes."""
    if len(data) > limits.max_upload_bytes:
        raise PayloadTooLarge(
            # `data` may be a read cut at one byte past the limit: its length is no size to name.
            f"{param} is larger than {limits.max_upload_bytes} bytes, the most an upload may be",
            param=param,
        )


def decode_base64(text: str, *, param: str, limits: Limits) -> bytes:
    """Bytes of a base64 field (a data: URL prefix is allowed); 400 if it is not base64."""
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    if len(text) > (limits.max_upload_bytes + 2) // 3 * 4 + 4:
        raise PayloadTooLarge(
            f"{param} holds more than {limits.max_upload_bytes} bytes once decoded; uploads may "
            f"be at most {limits.max_upload_bytes} bytes",
            param=param,
        )
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(
            f"{param} is not valid base64 ({exc}); send the image bytes base64-encoded",
            param=param,
        ) from exc
    check_upload_size(data, param=param, limits=limits)
    return data


def _open_checked(data: bytes, param: str, limits: Limits) -> Image.Image:
    allowed = ", ".join(ALLOWED_FORMATS)
    with _WARNINGS_LOCK, warnings.catch_warnings():
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that: make it an error.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise PayloadTooLarge(
                f"{param} has too many pixels ({exc}); at most {limits.max_image_pixels} "
                "pixels are allowed",
                param=param,
            ) from exc
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise InvalidImage(
                f"{param} is not a {allowed} image (its bytes are not one, whatever its name "
                "or content type says)",
                param=param,
                code="invalid_image_format",
            ) from exc
    return image


def sniff_image(data: bytes, *, param: str, limits: Limits) -> UploadedImage:
    """Decode an upload with Pillow: an allowed format, within the pixel limit, not corrupt."""
    check_upload_size(data, param=param, limits=limits)
    image = _open_checked(data, param, limits)
    width, height = image.size
    if width * height > limits.max_image_pixels:
        raise PayloadTooLarge(
            f"{param} is {width}x{height} = {width * height} pixels; at most "
            f"{limits.max_image_pixels} pixels are allowed",
            param=param,
        )
    try:
        image.load()
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidImage(
            f"{param} is a {image.format} whose data cannot be decoded ({exc}); send an intact "
            "image",
            param=param,
        ) from exc
    transparency = "transparency" in image.info
    stored, mode = _reencode(image, param)
    return UploadedImage(
        data=stored,
        format="PNG",
        width=width,
        height=height,
        mode=mode,
        transparency=transparency,
        source_format=str(image.format),
    )


def _reencode(image: Image.Image, param: str) -> tuple[bytes, str]:
    """The decoded pixels as a fresh PNG: no metadata, no trailing bytes, no polyglot; the
    stored input is what Pillow decoded, not what the client sent."""
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if image.mode not in PNG_MODES:
        image = image.convert("RGBA" if has_alpha else "RGB")
    options = {}
    if "transparency" in image.info and image.mode in ("P", "L", "RGB", "1"):
        options["transparency"] = image.info["transparency"]
    buffer = io.BytesIO()
    try:
        image.save(buffer, format="PNG", **options)
    except (OSError, ValueError) as exc:
        raise InvalidImage(
            f"{param} could not be re-encoded ({exc}); send an RGB or RGBA image", param=param
        ) from exc
    return buffer.getvalue(), image.mode


def check_square(image: UploadedImage, *, param: str) -> None:
    """400 unless the image is square (the renderer works on square images)."""
    if image.width != image.height:
        raise InvalidImage(
            f"{param} is {image.width}x{image.height}; it must be square (width == height)",
            param=param,
        )


def check_mask(image: UploadedImage, mask: UploadedImage | None) -> None:
    """An edit needs a mask of the image's size, or an image whose alpha channel is the mask."""
    if mask is None:
        if not image.has_alpha:
            raise InvalidImage(
                f"image has mode {image.mode} and no mask was sent; send a mask, or an image "
                "with an alpha channel (RGBA or LA) whose transparent pixels mark the area to edit",
                param="image",
            )
        return
    if (mask.width, mask.height) != (image.width, image.height):
        raise InvalidImage(
            f"mask is {mask.width}x{mask.height} but image is {image.width}x{image.height}; the "
            "mask must be the same size as the image",
            param="mask",
        )
    if mask.mode not in MASK_MODES:
        raise InvalidImage(
            f"mask has mode {mask.mode}; it must be one of {list(MASK_MODES)} (alpha 0 in "
            "RGBA/LA, or white in grey/RGB, marks the area to edit)",
            param="mask",
        )
