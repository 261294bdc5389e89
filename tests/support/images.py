"""Small real image files (JPEG, PNG) with known content, for import and upload tests."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def jpeg_bytes(width=160, height=120, *, seed=0, exif_orientation=None, mode="RGB", quality=90) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    pixels[: height // 2, : width // 3] = (250, 20, 20)  # a red block top-left, to check orientation
    image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    kwargs = {}
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif.tobytes()
    image.save(buffer, "JPEG", quality=quality, **kwargs)
    return buffer.getvalue()


def png_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **kwargs)
    return buffer.getvalue()
