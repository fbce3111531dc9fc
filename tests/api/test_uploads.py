"""Upload sniffing: formats by their bytes, pixel limits, and Pillow's bomb warning as an error."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from api.uploads import check_mask, decode_base64, sniff_image
from shared.errors import InvalidImage, InvalidInput, PayloadTooLarge
from shared.settings import Limits


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_allowed_formats_are_recognised_by_content(fmt: str) -> None:
    upload = sniff_image(_encode(Image.new("RGB", (20, 20)), fmt), param="image", limits=Limits())
    assert upload.source_format == fmt and (upload.width, upload.height) == (20, 20)
    assert upload.format == "PNG" and upload.data.startswith(b"\x89PNG")  # re-encoded


def test_reencoding_drops_metadata_and_trailing_bytes() -> None:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Comment", "<script>alert(1)</script>")
    buffer = io.BytesIO()
    Image.new("RGBA", (16, 16), (1, 2, 3, 0)).save(buffer, format="PNG", pnginfo=info)
    sent = buffer.getvalue() + b"PK\x03\x04 a zip polyglot tail"
    upload = sniff_image(sent, param="image", limits=Limits())
    assert b"<script>" not in upload.data and b"PK\x03\x04" not in upload.data
    with Image.open(io.BytesIO(upload.data)) as stored:
        assert stored.mode == "RGBA" and stored.getpixel((0, 0)) == (1, 2, 3, 0)


def test_cmyk_jpeg_is_stored_as_rgb_png() -> None:
    upload = sniff_image(_encode(Image.new("CMYK", (8, 8)), "JPEG"), param="image",
                         limits=Limits())  # fmt: skip
    assert upload.source_format == "JPEG" and upload.mode == "RGB"


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_other_formats_are_refused(fmt: str) -> None:
    with pytest.raises(InvalidImage, match="PNG, JPEG, WEBP"):
        sniff_image(_encode(Image.new("RGB", (20, 20)), fmt), param="image", limits=Limits())


def test_pillow_bomb_warning_becomes_an_error_even_above_our_limit() -> None:
    limits = Limits(max_image_pixels=10**9)  # our own check would let it through
    pixels = Image.MAX_IMAGE_PIXELS or 89_478_485
    side = int((pixels * 1.2) ** 0.5)
    data = _encode(Image.new("1", (side, side)), "PNG")
    with pytest.raises(PayloadTooLarge, match="too many pixels"):
        sniff_image(data, param="image", limits=limits)


def test_pixel_limit_names_the_size() -> None:
    data = _encode(Image.new("L", (300, 300)), "PNG")
    with pytest.raises(PayloadTooLarge, match="300x300 = 90000 pixels; at most 10000"):
        sniff_image(data, param="mask", limits=Limits(max_image_pixels=10_000))


def test_base64_data_url_and_garbage() -> None:
    raw = _encode(Image.new("RGB", (8, 8)), "PNG")
    import base64

    text = "data:image/png;base64," + base64.b64encode(raw).decode()
    assert decode_base64(text, param="image", limits=Limits()) == raw
    with pytest.raises(InvalidInput, match="base64"):
        decode_base64("not base64!!", param="image", limits=Limits())
    with pytest.raises(PayloadTooLarge):
        decode_base64(
            base64.b64encode(b"x" * 2000).decode(),
            param="image",
            limits=Limits(max_upload_bytes=1000),
        )


def test_mask_mode_must_carry_the_edit_area() -> None:
    limits = Limits()
    image = sniff_image(_encode(Image.new("RGB", (16, 16)), "PNG"), param="image", limits=limits)
    deep = sniff_image(_encode(Image.new("I;16", (16, 16)), "PNG"), param="mask", limits=limits)
    with pytest.raises(InvalidImage, match="mode I;16"):
        check_mask(image, deep)
    grey = sniff_image(_encode(Image.new("L", (16, 16)), "PNG"), param="mask", limits=limits)
    check_mask(image, grey)
    alpha = sniff_image(_encode(Image.new("RGBA", (16, 16)), "PNG"), param="mask", limits=limits)
    check_mask(image, alpha)
    palette = Image.new("P", (16, 16))
    palette.info["transparency"] = 0
    keyed = sniff_image(_encode(palette, "PNG"), param="image", limits=limits)
    check_mask(keyed, None)  # its transparent colour is the mask
