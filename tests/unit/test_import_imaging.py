"""Validation, hashing and thumbnails of single files (no database): every kind of bad file is rejected with a
clear message, exotic but valid modes are imported, EXIF orientation is applied."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from aesplatform.catalog.imaging import ImageRejected, content_type_for_format, inspect_image
from tests.support.images import jpeg_bytes, png_bytes

LIMITS = {"max_pixels": 50_000_000, "thumbnail_size": 64}


def thumbnail_of(result) -> Image.Image:
    return Image.open(io.BytesIO(result.thumbnail))


def test_a_jpeg_gets_sha256_phash_size_and_a_jpeg_thumbnail():
    data = jpeg_bytes(320, 240)
    result = inspect_image(data, **LIMITS)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert len(result.phash) == 16 and int(result.phash, 16) >= 0
    assert (result.width, result.height, result.format, result.mode) == (320, 240, "JPEG", "RGB")
    assert result.file_size == len(data) and result.data == data
    thumb = thumbnail_of(result)
    assert thumb.format == "JPEG" and max(thumb.size) <= 64 and max(thumb.size) >= 0.8 * 64


def test_the_same_pixels_give_the_same_phash_whatever_the_encoding():
    first = inspect_image(jpeg_bytes(320, 240, quality=95), **LIMITS)
    second = inspect_image(jpeg_bytes(320, 240, quality=70), **LIMITS)
    assert first.sha256 != second.sha256
    distance = bin(int(first.phash, 16) ^ int(second.phash, 16)).count("1")
    assert distance <= 6


def test_a_zero_byte_file_is_rejected():
    with pytest.raises(ImageRejected, match="empty file"):
        inspect_image(b"", **LIMITS)


def test_a_text_file_named_jpg_is_rejected():
    with pytest.raises(ImageRejected, match="not an image"):
        inspect_image(b"hello, I am not a picture\n" * 10, **LIMITS)


def test_a_truncated_jpeg_is_rejected_by_the_full_decode():
    data = jpeg_bytes(400, 300)
    truncated = data[: len(data) // 2]
    Image.open(io.BytesIO(truncated)).verify()  # the header alone looks fine: verify() is not enough
    with pytest.raises(ImageRejected, match="cannot decode"):
        inspect_image(truncated, **LIMITS)


def test_a_decompression_bomb_is_rejected_before_decoding():
    bomb = png_bytes(Image.new("L", (3000, 3000)))  # 9 MP of zeros: a few kB on disk
    with pytest.raises(ImageRejected, match="decompression bomb"):
        inspect_image(bomb, max_pixels=4_000_000, thumbnail_size=64)


def test_pillows_bomb_warning_is_an_error_too(monkeypatch):
    # Our own limit is generous here, Pillow's is tight: its DecompressionBombWarning must reject, not warn.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    with pytest.raises(ImageRejected, match="decompression bomb"):
        inspect_image(png_bytes(Image.new("L", (1200, 1000))), max_pixels=50_000_000, thumbnail_size=64)


def test_an_unsupported_format_is_rejected_naming_it():
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), "red").save(buffer, "GIF")
    with pytest.raises(ImageRejected, match="unsupported image format GIF"):
        inspect_image(buffer.getvalue(), **LIMITS)


def test_a_cmyk_jpeg_imports_with_an_rgb_thumbnail_and_the_original_kept():
    data = jpeg_bytes(200, 100, mode="CMYK")
    result = inspect_image(data, **LIMITS)
    assert result.mode == "CMYK" and result.data == data
    assert thumbnail_of(result).mode == "RGB"


def test_a_16_bit_greyscale_png_imports_without_clipping_to_white():
    ramp = (np.linspace(0, 65535, 200, dtype=np.uint16)[None, :].repeat(100, axis=0))
    image = Image.fromarray(ramp)
    assert image.mode.startswith("I;16")
    result = inspect_image(png_bytes(image), **LIMITS)
    assert result.mode.startswith("I") and result.format == "PNG"
    thumb = np.asarray(thumbnail_of(result).convert("L"), dtype=np.int32)
    assert thumb[:, :5].mean() < 40 and thumb[:, -5:].mean() > 215  # a ramp, not a white sheet


def test_a_palette_png_with_transparency_imports_on_white():
    image = Image.new("P", (120, 80), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(1, (60, 0, 120, 80))
    data = png_bytes(image, transparency=0)
    result = inspect_image(data, **LIMITS)
    assert result.mode == "P"
    thumb = thumbnail_of(result).convert("RGB")
    assert thumb.getpixel((2, 2))[0] > 240 and thumb.getpixel((2, 2))[1] > 240  # transparent -> white
    assert thumb.getpixel((thumb.width - 3, 2))[1] < 40  # opaque red stays red


@pytest.mark.parametrize("orientation, upright_size", [(6, (120, 160)), (8, (120, 160)), (3, (160, 120))])
def test_exif_orientation_is_applied_to_dimensions_and_thumbnail(orientation, upright_size):
    result = inspect_image(jpeg_bytes(160, 120, exif_orientation=orientation), **LIMITS)
    assert (result.width, result.height) == upright_size
    thumb = thumbnail_of(result)
    assert (thumb.width > thumb.height) == (upright_size[0] > upright_size[1])


def test_orientation_6_puts_the_top_left_corner_top_right():
    result = inspect_image(jpeg_bytes(160, 120, exif_orientation=6), **LIMITS)
    thumb = thumbnail_of(result).convert("RGB")
    red_top_right = thumb.getpixel((thumb.width - 3, 3))
    assert red_top_right[0] > 180 and red_top_right[1] < 90


def test_content_types_are_image_types_and_unknown_formats_are_octet_stream():
    assert content_type_for_format("JPEG") == "image/jpeg"
    assert content_type_for_format("PNG") == "image/png"
    assert content_type_for_format("WEBP") == "image/webp"
    assert content_type_for_format("HTML") == "application/octet-stream"
