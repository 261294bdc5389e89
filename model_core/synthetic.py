"""Synthetic "human" images whose 12 aesthetic scores are known functions of what is visible.

Why: the platform needs demo data without shipping photos of people, and the model needs a test bed on which
"it learns" can be checked in minutes on a CPU. Each image shows a simple drawn figure (head ellipse with eyes
and mouth, a body, a background with optional clutter). Ten latent factors in [0, 1] (correlated through a shared
"quality" latent, see :data:`SHARED_QUALITY`) control visible properties -- global lighting, sharpness (Gaussian
blur), skin colour, face proportions, contour strength,
outfit saturation, body width, framing (horizontal offset), background clutter, global contrast -- and the 12
scores of the standard are fixed, documented functions of those factors plus a little Gaussian noise
(:func:`scores_from_factors`). The overall score leans on the factors that are visible at any resolution
(lighting, contrast, clutter, sharpness) so that a small model can learn it from a few hundred images.

Everything here is numpy + Pillow only and deterministic for a seed: ``write_humanbeauty(root, seed=0, ...)``
writes byte-identical files every time.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from model_core import formats
from model_core.standard import NUM_DIMENSIONS

logger = logging.getLogger(__name__)

SOURCE = "synthetic"
SWIFT_TRAIN_JSONL = "swift_train.jsonl"  # ms-swift style training records (absolute image paths)
SWIFT_TEST_JSONL = "swift_test.jsonl"
# Real aesthetic dimensions correlate strongly (a good photo tends to be good in many ways); the factors share a
# latent "quality" with this weight. It also lets a small model learn every dimension partly from the easiest cues.
SHARED_QUALITY = 0.55


@dataclass(frozen=True)
class Factors:
    """The latent, visible properties of one synthetic image; each in [0, 1], 1 is "more beautiful"."""

    light: float  # global exposure: dark (0) .. well lit (1)
    sharpness: float  # 1 - normalised Gaussian blur radius
    skin: float  # skin colour: grey-green (0) .. warm, healthy tone (1)
    structure: float  # face proportions: squashed ellipse (0) .. balanced oval (1)
    contour: float  # strength of the drawn face outline
    outfit: float  # outfit colour saturation: grey (0) .. vivid (1)
    body: float  # body proportion: wide block (0) .. slim figure (1)
    framing: float  # composition: figure near the edge (0) .. centred (1)
    tidiness: float  # background: heavy clutter (0) .. clean (1)
    contrast: float  # global contrast: flat (0) .. full range (1)

    @classmethod
    def sample(cls, rng: np.random.Generator, *, shared: float = SHARED_QUALITY) -> "Factors":
        """Each factor = shared x q + (1 - shared) x u_k with q, u_k ~ U(0, 1): correlated, like real photos."""
        quality = rng.uniform(0.0, 1.0)
        own = rng.uniform(0.0, 1.0, size=10)
        return cls(*(float(v) for v in shared * quality + (1.0 - shared) * own))


def scores_from_factors(f: Factors) -> np.ndarray:
    """The noiseless 12 scores (standard order) of an image with factors ``f``; each in [0.05, 0.95].

    The sub-dimensions follow the factor they name (mixed with lighting or sharpness where a person would
    see it), the aggregate dimensions are weighted means, and the overall score (index 11) is dominated by
    lighting, sharpness, contrast and background tidiness: properties visible even at 64 px.
    """
    facial_brightness = 0.8 * f.light + 0.2 * f.skin
    clarity = 0.8 * f.sharpness + 0.2 * f.contrast
    skin_tone = 0.8 * f.skin + 0.2 * f.light
    structure = f.structure
    contour = 0.5 * f.contour + 0.5 * f.sharpness
    facial = (facial_brightness + clarity + skin_tone + structure + contour) / 5.0
    outfit = 0.8 * f.outfit + 0.2 * f.light
    body_shape = f.body
    looks = 0.5 * facial + 0.25 * outfit + 0.25 * body_shape
    environment = 0.6 * f.tidiness + 0.4 * f.framing
    general = 0.4 * looks + 0.3 * f.contrast + 0.3 * f.light
    comprehensive = 0.3 * f.light + 0.25 * f.sharpness + 0.2 * f.tidiness + 0.15 * f.contrast + 0.1 * facial
    raw = np.array(
        [facial_brightness, clarity, skin_tone, structure, contour, facial, outfit, body_shape, looks,
         environment, general, comprehensive],
        dtype=np.float64,
    )
    # Stretch the weighted means (which crowd around 0.5) so that every level occurs, then keep off the edges.
    stretched = 0.5 + (raw - 0.5) * np.array([1.0] * 5 + [1.6, 1.0, 1.0, 1.4, 1.2, 1.4, 1.6])
    return np.clip(0.05 + 0.9 * stretched, 0.05, 0.95)


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    i = int(h * 6.0) % 6
    fr = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - fr * s), v * (1 - (1 - fr) * s)
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return int(r * 255), int(g * 255), int(b * 255)


def render(f: Factors, *, rng: np.random.Generator, size: tuple[int, int] = (224, 224)) -> Image.Image:
    """Draw the figure described by ``f``; ``rng`` only chooses nuisance details (colours, clutter shapes)."""
    width, height = size
    if width < 16 or height < 16:
        raise ValueError(f"synthetic images need at least 16x16 pixels, got {width}x{height}")
    unit = min(width, height)

    # Background: a soft vertical gradient in a random hue, then clutter (the less tidy, the more shapes).
    bg_hue = rng.uniform(0, 1)
    top = np.array(_hsv_to_rgb(bg_hue, 0.25, 0.85), dtype=np.float32)
    bottom = np.array(_hsv_to_rgb(bg_hue, 0.35, 0.6), dtype=np.float32)
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    canvas = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (height, width, 3)).astype(np.uint8)
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for _ in range(int(round((1.0 - f.tidiness) * 20))):
        x0, y0 = rng.uniform(-0.1, 1.0) * width, rng.uniform(-0.1, 1.0) * height
        w, h = rng.uniform(0.06, 0.22) * unit, rng.uniform(0.06, 0.22) * unit
        colour = _hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.6, 1.0), rng.uniform(0.2, 1.0))
        shape = draw.rectangle if rng.uniform() < 0.5 else draw.ellipse
        shape([x0, y0, x0 + w, y0 + h], fill=colour)

    # Figure: centred when framing is 1, pushed towards a random side otherwise.
    side = 1.0 if rng.uniform() < 0.5 else -1.0
    cx = width / 2 + side * (1.0 - f.framing) * 0.32 * width
    head_h = 0.34 * unit
    head_w = head_h * (0.45 + 0.35 * f.structure)  # balanced oval ~0.8, squashed ~0.45
    head_cy = 0.28 * height
    body_w = (0.65 - 0.35 * f.body) * unit
    outfit_rgb = _hsv_to_rgb(rng.uniform(0, 1), 0.05 + 0.9 * f.outfit, 0.75)
    draw.rounded_rectangle(
        [cx - body_w / 2, head_cy + head_h * 0.55, cx + body_w / 2, height * 1.02],
        radius=max(1, int(0.06 * unit)), fill=outfit_rgb,
    )
    # Skin: from a sickly grey-green (hue 0.22, low value) to a warm tone (hue 0.07).
    skin_rgb = _hsv_to_rgb(0.22 - 0.15 * f.skin, 0.15 + 0.3 * f.skin, 0.55 + 0.35 * f.skin)
    outline = int(round(1 + f.contour * 0.03 * unit))
    outline_rgb = tuple(int(c * (1.0 - 0.8 * f.contour)) for c in skin_rgb)
    draw.ellipse(
        [cx - head_w / 2, head_cy - head_h / 2, cx + head_w / 2, head_cy + head_h / 2],
        fill=skin_rgb, outline=outline_rgb, width=outline,
    )
    eye_r = max(1.0, 0.018 * unit)
    for dx in (-0.22, 0.22):
        ex, ey = cx + dx * head_w, head_cy - 0.08 * head_h
        draw.ellipse([ex - eye_r, ey - eye_r, ex + eye_r, ey + eye_r], fill=(30, 25, 25))
    draw.line(
        [cx - 0.18 * head_w, head_cy + 0.22 * head_h, cx + 0.18 * head_w, head_cy + 0.22 * head_h],
        fill=(120, 40, 40), width=max(1, int(0.012 * unit)),
    )

    # Global photographic properties: blur, then contrast around the mean, then exposure, then sensor noise.
    blur = (1.0 - f.sharpness) * 0.05 * unit
    if blur > 0.05:
        image = image.filter(ImageFilter.GaussianBlur(radius=blur))
    pixels = np.asarray(image, dtype=np.float32)
    pixels = pixels.mean() + (pixels - pixels.mean()) * (0.25 + 0.95 * f.contrast)
    pixels = pixels * (0.3 + 0.95 * f.light)
    pixels += rng.normal(0.0, 2.0, size=pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def generate_image(
    *, seed: int | None = None, rng: np.random.Generator | None = None, size: tuple[int, int] = (224, 224),
    noise: float = 0.02,
) -> tuple[Image.Image, list[float]]:
    """One synthetic image and its 12 scores (standard order, floats in [0, 1]).

    Pass either ``seed`` (independent, reproducible image) or ``rng`` (to draw a sequence from one generator).
    ``noise`` is the standard deviation of the label noise added to the noiseless scores.
    """
    if (seed is None) == (rng is None):
        raise ValueError("pass exactly one of seed= or rng=")
    rng = rng if rng is not None else np.random.default_rng(seed)
    factors = Factors.sample(rng)
    image = render(factors, rng=rng, size=size)
    scores = scores_from_factors(factors) + rng.normal(0.0, noise, size=NUM_DIMENSIONS)
    return image, [round(float(s), 4) for s in np.clip(scores, 0.0, 1.0)]


@dataclass
class SyntheticSummary:
    """What :func:`write_humanbeauty` wrote: counts and the files, for the caller's logs or manifest."""

    root: str
    n_overall: int
    n_expert: int
    n_train: int
    n_test: int
    seed: int
    size: tuple[int, int]
    files: dict[str, str]  # role -> path

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_humanbeauty(
    root: str | Path, *, n_overall: int, n_expert: int, seed: int = 0, size: tuple[int, int] = (224, 224),
    test_fraction: float = 0.2, noise: float = 0.02, image_format: str = "png",
) -> SyntheticSummary:
    """Write a synthetic data set in the HumanBeauty layout (model_core.formats) plus ms-swift training jsonl files.

    ``n_overall`` images go to ``HumanBeauty-58K`` (one overall score + ``text_level``), ``n_expert`` to
    ``HumanBeauty-50K`` (12 scores). ``train_label.jsonl`` / ``test_label.jsonl`` hold the same records with
    root-relative ``image_name`` and ``is_expert``; ``swift_train.jsonl`` / ``swift_test.jsonl`` are the
    ms-swift records (absolute image paths, answers from the standard). Each kind is split separately with
    ``test_fraction`` so both splits hold both kinds. Deterministic for ``seed``; image ``i`` of a kind depends
    only on (seed, kind, i), so growing ``n_*`` keeps the earlier images.
    """
    if n_overall < 0 or n_expert < 0 or n_overall + n_expert == 0:
        raise ValueError(f"need a positive number of images, got n_overall={n_overall}, n_expert={n_expert}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if image_format not in ("png", "jpg"):
        raise ValueError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    labels = formats.HumanBeautyWriter(root)
    swift = formats.TrainingJsonlWriter(root, file_names={"train": SWIFT_TRAIN_JSONL, "test": SWIFT_TEST_JSONL})
    n_split = {"train": 0, "test": 0}
    try:
        for count, is_expert in ((n_overall, False), (n_expert, True)):
            if count == 0:
                continue
            n_test = int(round(count * test_fraction))
            order = np.random.default_rng([seed, int(is_expert), 1]).permutation(count)
            test_ids = set(order[:n_test].tolist())
            kind_tag = "expert" if is_expert else "overall"
            for i in range(count):
                image, scores = generate_image(rng=np.random.default_rng([seed, int(is_expert), 0, i]), size=size,
                                               noise=noise)
                split = "test" if i in test_ids else "train"
                n_split[split] += 1
                relpath = labels.add(image_name=f"synth_{kind_tag}_{i:06d}.{image_format}", source=SOURCE,
                                     scores=scores, is_expert=is_expert, split=split)
                path = root / relpath
                if image_format == "png":
                    image.save(path, format="PNG", compress_level=1)  # speed over size: demo data
                else:
                    image.save(path, format="JPEG", quality=92)
                swift.add(scores=scores, is_expert=is_expert, image_path=str(path), split=split)
    except BaseException:
        labels.abort()
        swift.abort()
        raise
    written = [*labels.close(), *swift.close()]
    files = {entry.path: str(root / entry.path) for entry in written}
    summary = SyntheticSummary(root=str(root), n_overall=n_overall, n_expert=n_expert, n_train=n_split["train"],
                               n_test=n_split["test"], seed=seed, size=tuple(size), files=files)
    logger.info("wrote %d synthetic images to %s", n_overall + n_expert, root)
    return summary


def fingerprint(root: str | Path) -> str:
    """sha256 over every file under ``root`` (sorted relative paths and contents): checks determinism."""
    root = Path(root)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        data = path.read_bytes()
        if path.suffix == ".jsonl":  # absolute paths differ between roots; compare the relative form
            data = data.replace(str(root.resolve()).encode(), b"<root>")
        digest.update(rel.encode() + b"\0" + data)
    return digest.hexdigest()
