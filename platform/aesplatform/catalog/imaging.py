"""Validate, hash and thumbnail one image file: pure Pillow/numpy, no Django, no database.

This runs in the import's process pool, so it takes and returns plain picklable values. Everything a bad file
can do (not an image, truncated, a decompression bomb, an unsupported format, an exotic mode) ends as
:class:`ImageRejected` with a message for the import report, never as a crash of the job.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image, UnidentifiedImageError

# Pillow format name -> (file extension, Content-Type). Only these are imported: browsers can show them all
# except TIFF/BMP in some, which is what the thumbnail is for.
SUPPORTED_FORMATS: dict[str, tuple[str, str]] = {
    "JPEG": ("jpg", "image/jpeg"),
    "PNG": ("png", "image/png"),
    "WEBP": ("webp", "image/webp"),
    "BMP": ("bmp", "image/bmp"),
    "TIFF": ("tif", "image/tiff"),
}
THUMBNAIL_FORMAT = "JPEG"
THUMBNAIL_QUALITY = 85
# EXIF orientation -> the transpose that makes the pixels upright (5..8 also swap width and height).
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION_TAG = 0x0112
_REDUCIBLE_MODES = ("RGB", "L", "RGBA", "LA", "CMYK", "I", "F")
# A thumbnail's long side is between this fraction of THUMBNAIL_SIZE and all of it (see _reduce_for_thumbnail).
THUMBNAIL_MIN_FILL = 0.8


class ImageRejected(ValueError):
    """The file is not an importable image; the message goes into the import report as is."""


@dataclass(frozen=True)
class InspectedImage:
    """What the import stores about one valid image (plus the bytes to store)."""

    sha256: str
    phash: str  # 16 hex digits (64-bit DCT perceptual hash of the upright image)
    width: int  # after EXIF orientation
    height: int
    format: str  # Pillow format name, a key of SUPPORTED_FORMATS
    mode: str  # Pillow mode of the original: RGB, CMYK, I;16, P, ...
    file_size: int
    data: bytes  # the original file, unchanged
    thumbnail: bytes  # JPEG, upright, fits in a THUMBNAIL_SIZE square

    @property
    def extension(self) -> str:
        return SUPPORTED_FORMATS[self.format][0]


def content_type_for_format(image_format: str) -> str:
    """A safe Content-Type for a stored original: known formats only, never anything a browser would run."""
    return SUPPORTED_FORMATS.get(image_format, ("", "application/octet-stream"))[1]


def extension_for_format(image_format: str) -> str:
    return SUPPORTED_FORMATS[image_format][0]


def inspect_image(data: bytes, *, max_pixels: int, thumbnail_size: int) -> InspectedImage:
    """Fully decode `data`, hash it and make its thumbnail; raise ImageRejected for anything unimportable."""
    if not data:
        raise ImageRejected("empty file (0 bytes)")
    sha256 = hashlib.sha256(data).hexdigest()
    with warnings.catch_warnings():
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that; our limit is a hard one.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                return _inspect_open_image(image, data=data, sha256=sha256, max_pixels=max_pixels,
                                           thumbnail_size=thumbnail_size)
        except ImageRejected:
            raise
        except UnidentifiedImageError:
            raise ImageRejected("not an image, or an image format that cannot be identified") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageRejected(f"decompression bomb refused: {exc}") from None
        except MemoryError:
            raise ImageRejected("image needs more memory to decode than is available") from None
        except Exception as exc:  # noqa: BLE001 -- Pillow's decoders raise OSError, ValueError, SyntaxError,
            # struct.error, EOFError, ... on corrupt data; every one of them is a per-file error, not a crash.
            raise ImageRejected(f"cannot decode image: {_describe(exc)}") from None


def _inspect_open_image(image: Image.Image, *, data: bytes, sha256: str, max_pixels: int,
                        thumbnail_size: int) -> InspectedImage:
    image_format = image.format or ""
    if image_format == "MPO":
        # A multi-picture JPEG (phones and stereo cameras write them): a baseline JPEG whose first picture every
        # decoder and browser shows; the other pictures ride along in an APP2 segment. It is that first picture.
        image_format = "JPEG"
    if image_format not in SUPPORTED_FORMATS:
        supported = ", ".join(SUPPORTED_FORMATS)
        raise ImageRejected(f"unsupported image format {image_format or 'unknown'} (supported: {supported})")
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageRejected("image has no pixels")
    if width * height > max_pixels:
        raise ImageRejected(
            f"decompression bomb refused: {width}x{height} = {width * height:,} pixels is over the limit of "
            f"{max_pixels:,}"
        )
    original_mode = image.mode
    orientation = _exif_orientation(image)
    # The full decode check: verify() only parses headers, load() runs the decoder over every byte.
    image.load()
    small = _reduce_for_thumbnail(image, thumbnail_size)
    transpose = _ORIENTATION_TRANSPOSE.get(orientation)
    if transpose is not None:
        small = small.transpose(transpose)
        if orientation >= 5:
            width, height = height, width
    rgb = _to_rgb(small)
    thumbnail = _make_thumbnail(rgb, thumbnail_size)
    return InspectedImage(
        sha256=sha256,
        phash=_phash(thumbnail),
        width=width,
        height=height,
        format=image_format,
        mode=original_mode,
        file_size=len(data),
        data=data,
        thumbnail=_encode_thumbnail(thumbnail),
    )


def _exif_orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 -- a broken EXIF block must not reject an otherwise fine image
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _reduce_for_thumbnail(image: Image.Image, thumbnail_size: int) -> Image.Image:
    """Shrink by an integer factor with `reduce` (a box filter, several times cheaper than a resample).

    When one reduction lands the long side between THUMBNAIL_MIN_FILL and 100 % of the thumbnail size, that is
    the thumbnail (a 1024 px photo becomes 341 px for a 384 box) and `_make_thumbnail` has nothing left to do;
    otherwise reduce to just above the size and let the resample finish. Only modes `reduce` supports; the
    rest (P, 1, I;16, ...) are converted first by `_to_rgb` and resampled.
    """
    if image.mode not in _REDUCIBLE_MODES:
        return image
    long_side = max(image.size)
    factor = -(-long_side // thumbnail_size)  # ceil
    if factor >= 2 and long_side / factor >= THUMBNAIL_MIN_FILL * thumbnail_size:
        return image.reduce(factor)
    factor = long_side // thumbnail_size
    return image.reduce(factor) if factor >= 2 else image


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB for the thumbnail: CMYK, 16-bit, palette-with-transparency etc. converted, not rejected."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode in ("I", "F"):
        # Pillow's own I;16 -> RGB conversion clips at 255 (a white image); scale the range down instead.
        values = np.asarray(image, dtype=np.float64)
        peak = float(values.max()) if values.size else 0.0
        scale = 255.0 / 65535.0 if (mode.startswith("I;16") or peak > 255.0) else 1.0
        if mode == "F" and peak <= 1.0:
            scale = 255.0
        grey = np.clip(values * scale, 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")  # uint8, 2-D: mode L
    if mode == "P" and "transparency" in image.info or mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    return image.convert("RGB")


def _make_thumbnail(rgb: Image.Image, thumbnail_size: int) -> Image.Image:
    width, height = rgb.size
    scale = min(1.0, thumbnail_size / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size == rgb.size:
        return rgb
    return rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)


def _encode_thumbnail(thumbnail: Image.Image) -> bytes:
    buffer = io.BytesIO()
    thumbnail.save(buffer, THUMBNAIL_FORMAT, quality=THUMBNAIL_QUALITY)
    return buffer.getvalue()


def _phash(thumbnail: Image.Image) -> str:
    """imagehash's 64-bit phash; computing it on the thumbnail gives the same hash as on the full image
    (phash itself shrinks to 32x32 first) at a fraction of the cost."""
    return str(imagehash.phash(thumbnail.convert("L").reduce(_phash_reduce_factor(thumbnail))))


def _phash_reduce_factor(thumbnail: Image.Image) -> int:
    # phash resizes to 32x32 with LANCZOS; pre-shrinking to >= 64 px keeps that cheap without changing the hash
    # beyond noise.
    return max(1, min(thumbnail.size) // 64)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:300]
