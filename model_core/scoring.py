"""Batched inference: ``score_images`` for the platform's pre-scoring, ``predict`` for evaluation and training.

Images are decoded and tiled in DataLoader workers, grouped by tile count (read from the file header, so the
grouping costs no decoding) to keep padding low, and scored many at a time with ONE forward pass per batch
that yields every head and the MetaVoter. Results come back in the order of the input.

``RemoteCodeScorer`` wraps a released HumanAesExpert checkpoint (Hugging Face remote code) found on local disk,
through its own ``score`` / ``expert_score`` / ``run_metavoter`` methods, as another scorer backend.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from model_core.data import (
    DataError, ImageDataset, OnBadImage, Record, image_sizes, image_to_pixels, load_image, num_tiles,
)
from model_core.standard import DIMENSION_KEYS, NUM_DIMENSIONS, score_to_level

logger = logging.getLogger(__name__)
# Tokenisation runs in DataLoader workers (forked); the fast tokenizer's own thread pool must not be used there.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@dataclass
class ImageScore:
    """The scores of one image; ``error`` is set (and the scores are None) when the image was skipped."""

    path: str
    lm_score: float | None = None
    regression_score: float | None = None
    expert_scores: list[float] | None = None  # 12, the standard's order; the overall last
    metavoter_score: float | None = None
    uncertainty: float | None = None  # standard deviation of the LM head's score distribution
    level_probs: list[float] | None = None  # p(bad..excellent) from the LM head
    level: str | None = None  # the MetaVoter score's level
    error: str | None = None

    @property
    def expert_by_key(self) -> dict[str, float] | None:
        return None if self.expert_scores is None else dict(zip(DIMENSION_KEYS, self.expert_scores))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Predictions:
    """Arrays over the scored items (input order); rows of failed items are NaN."""

    lm: np.ndarray  # (N,)
    regression: np.ndarray  # (N,)
    expert: np.ndarray  # (N, 12)
    metavoter: np.ndarray  # (N,)
    spread: np.ndarray  # (N,)
    level_probs: np.ndarray  # (N, 5)
    failed: dict[int, str] = field(default_factory=dict)  # index -> reason

    @property
    def estimates(self) -> np.ndarray:  # (N, 3) [lm, regression, expert overall]
        return np.stack([self.lm, self.regression, self.expert[:, -1]], axis=-1)

    @property
    def ok(self) -> np.ndarray:  # (N,) bool
        return ~np.isnan(self.metavoter)


def _batches_by_tiles(tile_counts: Sequence[int], batch_size: int, max_tiles_per_batch: int | None) -> list[list[int]]:
    """Index batches grouped by tile count (stable), capped by images and by total tiles."""
    order = sorted(range(len(tile_counts)), key=lambda i: (tile_counts[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    tiles = 0
    for i in order:
        if current and (len(current) >= batch_size or
                        (max_tiles_per_batch is not None and tiles + tile_counts[i] > max_tiles_per_batch)):
            batches.append(current)
            current, tiles = [], 0
        current.append(i)
        tiles += tile_counts[i]
    if current:
        batches.append(current)
    return batches


@torch.inference_mode()
def predict(
    model, items: Sequence[Record | str | Path], *, max_tiles: int = 1, batch_size: int = 16, num_workers: int = 0,
    on_bad_image: OnBadImage = "raise", max_tiles_per_batch: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Predictions:
    """Run the model over records or paths; every head in one pass per batch."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(items)
    out = Predictions(lm=np.full(n, np.nan), regression=np.full(n, np.nan), expert=np.full((n, NUM_DIMENSIONS), np.nan),
                      metavoter=np.full(n, np.nan), spread=np.full(n, np.nan), level_probs=np.full((n, 5), np.nan))
    if n == 0:
        return out
    paths = [item.image if isinstance(item, Record) else Path(item) for item in items]
    sizes = image_sizes(paths)
    counts = [num_tiles(*s, max_tiles=max_tiles, tile_size=model.tile_size) if s else 1 for s in sizes]
    dataset = ImageDataset(items, tile_size=model.tile_size, max_tiles=max_tiles, on_bad_image=on_bad_image)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=_batches_by_tiles(counts, batch_size, max_tiles_per_batch),
        collate_fn=model.collator(train=False), num_workers=num_workers,
        pin_memory=model.device.type == "cuda", persistent_workers=False,
    )
    was_training = model.training
    model.eval()
    done = 0
    try:
        for batch in loader:
            for failed in batch.failed:
                out.failed[failed.index] = failed.reason
            if len(batch):
                b = batch.to(model.device)
                heads = model(**b.model_inputs())
                idx = np.asarray(batch.indices)
                out.lm[idx] = heads.lm_score.float().cpu().numpy()
                out.regression[idx] = heads.regression.float().cpu().numpy()
                out.expert[idx] = heads.expert.float().cpu().numpy()
                out.metavoter[idx] = heads.metavoter.float().cpu().numpy()
                out.spread[idx] = heads.lm_spread.float().cpu().numpy()
                out.level_probs[idx] = heads.level_probs.float().cpu().numpy()
            done += len(batch) + len(batch.failed)
            if progress is not None:
                progress(done, n)
    finally:
        model.train(was_training)
    if out.failed:
        logger.warning("%d of %d image(s) could not be read and were skipped", len(out.failed), n)
    return out


def score_images(
    model, paths: Sequence[str | Path], *, max_tiles: int = 1, batch_size: int = 32, num_workers: int = 0,
    on_bad_image: OnBadImage = "skip", progress: Callable[[int, int], None] | None = None,
) -> list[ImageScore]:
    """Score images for pre-scoring: one :class:`ImageScore` per path, in input order.

    ``max_tiles=1`` (default) is the fast mode (one 448 px tile per image); 12 is the reference resolution.
    With ``on_bad_image="skip"`` (default) an unreadable image gets ``error`` set instead of failing the batch.
    """
    preds = predict(model, paths, max_tiles=max_tiles, batch_size=batch_size, num_workers=num_workers,
                    on_bad_image=on_bad_image, progress=progress)
    results = []
    for i, path in enumerate(paths):
        if i in preds.failed or math.isnan(preds.metavoter[i]):
            results.append(ImageScore(path=str(path), error=preds.failed.get(i, "not scored")))
            continue
        mv = float(preds.metavoter[i])
        results.append(ImageScore(
            path=str(path), lm_score=float(preds.lm[i]), regression_score=float(preds.regression[i]),
            expert_scores=[float(v) for v in preds.expert[i]], metavoter_score=mv,
            uncertainty=float(preds.spread[i]), level_probs=[float(v) for v in preds.level_probs[i]],
            level=score_to_level(min(max(mv, 0.0), 1.0)),
        ))
    return results


# ---------------------------------------------------------------------------------------------------------------
# The released HumanAesExpert checkpoint as a scorer backend
# ---------------------------------------------------------------------------------------------------------------


class RemoteCodeScorer:
    """A released HumanAesExpert checkpoint (e.g. ``KwaiVGI/HumanAesExpert-1B``) loaded from local disk.

    Uses the checkpoint's own remote-code methods: ``score(tokenizer, pixel_values, question)`` (LM head, one
    pass), ``expert_score(tokenizer, pixel_values)`` (12 scores + text) and ``run_metavoter(tokenizer,
    pixel_values)`` (two passes). One image per call, as that code is written. Only files already on disk are
    used (``local_files_only``); remote code runs with ``trust_remote_code``, so only point this at checkpoints
    you trust.
    """

    QUESTION = "<image>\nRate the aesthetics of this human picture."

    def __init__(self, source: str | Path, *, device: str | None = "auto", precision: str = "auto",
                 max_tiles: int = 12) -> None:
        from transformers import AutoModel, AutoTokenizer

        from model_core.model import ModelLoadError, resolve_device, resolve_dtype

        self.device = resolve_device(device)
        dtype = resolve_dtype(precision, self.device)
        self.max_tiles = max_tiles
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(source), trust_remote_code=True, use_fast=False,
                                                           local_files_only=True)
            self.model = AutoModel.from_pretrained(str(source), dtype=dtype, trust_remote_code=True,
                                                   local_files_only=True, low_cpu_mem_usage=True)
        except (OSError, ValueError, ImportError) as exc:
            raise ModelLoadError(
                f"no usable local copy of the HumanAesExpert checkpoint {str(source)!r} ({exc}); download it "
                "once (e.g. `huggingface-cli download KwaiVGI/HumanAesExpert-1B`) and pass its directory"
            ) from None
        for name in ("score", "expert_score", "run_metavoter"):
            if not callable(getattr(self.model, name, None)):
                raise ModelLoadError(f"{source}: the loaded model has no {name}() method; is it a HumanAesExpert "
                                     "checkpoint?")
        self.model.to(self.device).eval()
        self.dtype = dtype
        vision = getattr(self.model.config, "vision_config", None)
        self.tile_size = int(getattr(vision, "image_size", 448) or 448)

    def _pixels(self, path: str | Path) -> torch.Tensor:
        image = load_image(path)
        return image_to_pixels(image, max_tiles=self.max_tiles, tile_size=self.tile_size).to(self.device, self.dtype)

    @torch.inference_mode()
    def score(self, path: str | Path) -> float:
        return float(self.model.score(self.tokenizer, self._pixels(path), self.QUESTION))

    @torch.inference_mode()
    def expert_score(self, path: str | Path) -> list[float]:
        scores, _text = self.model.expert_score(self.tokenizer, self._pixels(path))
        values = [float(v) for v in (scores.tolist() if hasattr(scores, "tolist") else scores)]
        values = list(np.ravel(values))
        if len(values) != NUM_DIMENSIONS:
            raise DataError(f"expert_score returned {len(values)} values, expected {NUM_DIMENSIONS}")
        return values

    @torch.inference_mode()
    def run_metavoter(self, path: str | Path) -> float:
        return float(self.model.run_metavoter(self.tokenizer, self._pixels(path)))

    def score_images(self, paths: Sequence[str | Path], *, on_bad_image: OnBadImage = "skip") -> list[ImageScore]:
        """Same result type as :func:`score_images`; regression score and uncertainty are not exposed by the
        remote code, so they stay None."""
        results = []
        for path in paths:
            try:
                expert = self.expert_score(path)
                mv = self.run_metavoter(path)
                results.append(ImageScore(path=str(path), lm_score=self.score(path), expert_scores=expert,
                                          metavoter_score=mv, level=score_to_level(min(max(mv, 0.0), 1.0))))
            except DataError as exc:
                if on_bad_image == "raise":
                    raise
                results.append(ImageScore(path=str(path), error=str(exc)))
        return results
