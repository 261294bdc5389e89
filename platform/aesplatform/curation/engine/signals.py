"""Per-image signals that need pixels but no model: decoding, faces, sharpness, exposure, a pixel digest.

Decoding uses Pillow's JPEG draft mode (DCT scaling) so a 12-megapixel photo decodes at a fraction of the cost;
the signals run on a copy whose longest side is SIGNAL_SIZE, which also makes the Laplacian variance comparable
across resolutions. Face detection uses the Haar cascades that OpenCV ships.
"""

from __future__ import annotations

import hashlib
import io
import threading
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

SIGNAL_SIZE = 512  # longest side of the copy the technical checks run on
FACE_SIZE = 320  # longest side of the grey copy the face detector runs on
DARK_LEVEL = 16  # luminance at or below: under-exposed pixel
BRIGHT_LEVEL = 239  # luminance at or above: over-exposed pixel
FACE_CASCADE = "haarcascade_frontalface_default.xml"

cv2.setNumThreads(1)  # parallelism comes from the DataLoader workers, not from OpenCV's own pool

_local = threading.local()


class DecodeError(ValueError):
    """The file is not a decodable image any more (truncated, replaced, ...)."""


def _face_detector() -> cv2.CascadeClassifier:
    detector = getattr(_local, "face_detector", None)
    if detector is None:
        detector = cv2.CascadeClassifier(cv2.data.haarcascades + FACE_CASCADE)
        if detector.empty():
            raise RuntimeError(f"OpenCV could not load its face cascade {FACE_CASCADE}")
        _local.face_detector = detector
    return detector


@dataclass(frozen=True)
class PixelSignals:
    face_count: int
    largest_face_fraction: float
    blur_variance: float
    exposure: dict[str, float]
    digest: str  # of the signal-size pixels: equal for pixel-identical images, whatever their file bytes


def decode_rgb(data: bytes, *, min_short: int, min_long: int = SIGNAL_SIZE) -> np.ndarray:
    """Decode to an upright RGB uint8 array, JPEGs DCT-scaled down but to no less than `min_short` on the
    shortest side and `min_long` on the longest (where the file is that large)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format == "JPEG":
                # draft() keeps the result at least as large as asked (scales 1, 1/2, 1/4, 1/8)
                w, h = image.size
                scale = min(1.0, max(min_short / max(1, min(w, h)), min_long / max(1, w, h), 1 / 8))
                image.draft("RGB", (max(1, int(w * scale)), max(1, int(h * scale))))
            image = ImageOps.exif_transpose(image)
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(image, dtype=np.float32)
                array = array * (255.0 / max(1.0, float(array.max())))
                image = Image.fromarray(array.astype(np.uint8), "L")
            image = image.convert("RGB")
            return np.asarray(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        message = "not an image file Pillow can read" if isinstance(exc, UnidentifiedImageError) else str(exc)
        raise DecodeError(f"cannot decode the image: {message}") from exc


def resize_longest(array: np.ndarray, size: int) -> np.ndarray:
    h, w = array.shape[:2]
    scale = size / max(h, w)
    if scale >= 1:
        return array
    return cv2.resize(array, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def clip_crop(array: np.ndarray, size: int) -> np.ndarray:
    """open_clip's default eval transform on uint8: resize the shortest side to `size` (bicubic), centre crop."""
    h, w = array.shape[:2]
    scale = size / min(h, w)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(array, (nw, nh), interpolation=interpolation)
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(resized[top : top + size, left : left + size])


def faces_detect(gray: np.ndarray) -> tuple[int, float]:
    """(number of frontal faces, largest face area / image area) on a grey uint8 image."""
    small = resize_longest(gray, FACE_SIZE)
    h, w = small.shape[:2]
    min_side = max(16, round(min(h, w) * 0.06))
    faces = _face_detector().detectMultiScale(
        cv2.equalizeHist(small), scaleFactor=1.15, minNeighbors=5, minSize=(min_side, min_side)
    )
    if len(faces) == 0:
        return 0, 0.0
    largest = max(int(fw) * int(fh) for _, _, fw, fh in faces)
    return len(faces), largest / float(h * w)


def gray_signals(gray: np.ndarray) -> tuple[float, dict[str, float]]:
    """(Laplacian variance, exposure fractions) on a grey uint8 image of at most SIGNAL_SIZE."""
    laplacian = cv2.Laplacian(gray, cv2.CV_16S)  # exact for uint8 input (|value| <= 4 * 255 * 2)
    _, std = cv2.meanStdDev(laplacian)
    blur = float(std[0, 0]) ** 2
    histogram = cv2.calcHist([gray], [0], None, [256], [0, 256]).ravel()
    total = float(gray.size)
    exposure = {
        "under": round(float(histogram[: DARK_LEVEL + 1].sum()) / total, 6),
        "over": round(float(histogram[BRIGHT_LEVEL:].sum()) / total, 6),
        "mean": round(float(histogram @ np.arange(256)) / total / 255.0, 6),
    }
    return blur, exposure


def pixel_signals(rgb: np.ndarray) -> PixelSignals:
    """Faces, sharpness, exposure and a pixel digest of an RGB uint8 array (any size)."""
    small = resize_longest(rgb, SIGNAL_SIZE)
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    blur, exposure = gray_signals(gray)
    face_count, largest = faces_detect(gray)
    digest = hashlib.blake2b(gray.tobytes(), digest_size=16, person=b"aesp-pixels")
    digest.update(np.asarray(gray.shape, dtype=np.int64).tobytes())
    return PixelSignals(face_count, round(largest, 6), round(blur, 3), exposure, digest.hexdigest())
