"""Batched inference: ``score_images`` for the platform's pre-scoring, ``predict`` for evaluation and training.

Images are decoded and tiled in DataLoader workers, grouped by tile count (read from the file header, so the
grouping costs no decoding) to keep padding low, and scored many at a time with ONE forward pass per batch
that yields every head and the MetaVoter. Results come back in the order of the input.

``RemoteCodeScorer`` wraps a released HumanAesExpert checkpoint (Hugging Face remote code) found on local disk,
through its own ``run_metavoter`` / ``expert_score`` methods, as another scorer backend; it needs the runtime the
release was made for (``remote_code_runtime_check``, `make humanaesexpert-runtime`).
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from model_core.data import (
    DataError,
    ImageDataset,
    OnBadImage,
    Record,
    image_sizes,
    image_to_pixels,
    load_image,
    num_tiles,
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

# What the released checkpoints were made for (the reference repository's requirements.txt); the same pins are in
# requirements-humanaesexpert.lock, which `make humanaesexpert-runtime` installs as an overlay on the main venv.
REMOTE_CODE_TRANSFORMERS = "4.44.2"
REMOTE_CODE_RUNTIME_TARGET = "make humanaesexpert-runtime"
REMOTE_CODE_PACKAGES = ("einops", "timm")  # imported at the top of the InternVL2 remote code
SENTENCEPIECE_FILE = "tokenizer.model"  # a sentencepiece tokenizer (the 8B's InternLM2Tokenizer) needs the package
SENTENCEPIECE_TOKENIZERS = ("InternLM2Tokenizer", "LlamaTokenizer")  # slow tokenizers built on sentencepiece
REFERENCE_QUESTION = "<image>\nRate the aesthetics of this human picture."
REFERENCE_MAX_TILES = 12  # the reference's load_image(max_num=12): 12 tiles + a thumbnail


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def _needs_sentencepiece(source: Path) -> bool:
    """A sentencepiece model file, or a tokenizer class that reads one (the 8B's InternLM2Tokenizer)."""
    if (source / SENTENCEPIECE_FILE).is_file():
        return True
    try:
        config = (source / "tokenizer_config.json").read_text()
    except OSError:
        return False
    return any(name in config for name in SENTENCEPIECE_TOKENIZERS)


def remote_code_runtime_check(source: str | Path | None = None) -> str:
    """Raise ModelLoadError unless this Python can run the released remote code (of ``source``, if given).

    Names what is missing (einops, timm; sentencepiece for a checkpoint with a sentencepiece tokenizer) or a
    transformers other than the pinned one, and the make target that sets the runtime up. Returns a one-line
    description of the runtime."""
    from model_core.model import ModelLoadError

    needed = list(REMOTE_CODE_PACKAGES)
    if source is None or _needs_sentencepiece(Path(source)):
        needed.append("sentencepiece")
    missing = [name for name in needed if not _importable(name)]
    if missing:
        raise ModelLoadError(
            f"the released HumanAesExpert code needs the Python package(s) {', '.join(missing)}, which this "
            f"environment ({sys.executable}) lacks: set up its runtime with `{REMOTE_CODE_RUNTIME_TARGET}` and run "
            "with that directory first on PYTHONPATH (the platform's `humanaesexpert` worker does so)")
    import transformers

    if transformers.__version__ != REMOTE_CODE_TRANSFORMERS:
        raise ModelLoadError(
            f"the released HumanAesExpert code was made for transformers {REMOTE_CODE_TRANSFORMERS}; this "
            f"environment has {transformers.__version__}: set up its runtime with `{REMOTE_CODE_RUNTIME_TARGET}` and "
            "run with that directory first on PYTHONPATH (the platform's `humanaesexpert` worker does so)")
    return f"transformers {transformers.__version__} on torch {torch.__version__}, " + ", ".join(
        f"{name} {getattr(importlib.import_module(name), '__version__', '?')}" for name in needed)


def _remote_code_dtype(precision: str, device: torch.device) -> torch.dtype:
    """'auto' -> fp16 on CUDA (as the reference runs it), fp32 on CPU."""
    from model_core.model import PrecisionError

    if precision not in ("auto", "fp16", "bf16", "fp32"):
        raise ValueError(f"precision must be 'auto', 'fp16', 'bf16' or 'fp32', got {precision!r}")
    if precision in ("fp16", "bf16") and device.type != "cuda":
        raise PrecisionError(f"{precision} was requested on {device}; CPU runs use fp32 (precision 'auto' or 'fp32')")
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise PrecisionError(f"bf16 was requested but {device} has no bf16 support; use 'fp16' or 'auto'")
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return torch.float32
    return torch.bfloat16 if precision == "bf16" else torch.float16


def _local_checkpoint(source: str | Path) -> Path:
    """A directory, or a repo id already in the Hugging Face cache; never a download."""
    from model_core.model import ModelLoadError

    path = Path(source)
    if not path.is_dir() and "/" in str(source) and not path.is_absolute():
        try:
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(str(source), local_files_only=True))
        except Exception:  # noqa: BLE001 - any failure means: not on this machine
            pass
    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"no local copy of the HumanAesExpert checkpoint {str(source)!r} (a directory with config.json, the "
            "remote code and the weights); download it once (e.g. `huggingface-cli download "
            "HumanBeauty/HumanAesExpert-1B --local-dir /models/HumanAesExpert-1B`) and pass its directory")
    return path


class RemoteCodeScorer:
    """A released HumanAesExpert checkpoint (e.g. ``HumanBeauty/HumanAesExpert-1B``) loaded from local disk.

    Runs as the reference does (its test.py / eval script): the image as 12 tiles + a thumbnail (our tiling is
    the reference's ``load_image``), fp16 on CUDA (fp32 on CPU), and the checkpoint's own methods:
    ``run_metavoter(tokenizer, pixel_values)`` (two passes) for the overall score and ``expert_score(tokenizer,
    pixel_values)`` -> (12 scores, text) for the dimensions. ``score(tokenizer, pixel_values, question)`` (one
    pass, the reference question) is available as :meth:`score`, but not stored as any head's score: the
    reference does not say which head it reads. The remote code gives no regression-head score and no
    uncertainty, so those stay None.

    Needs the runtime the release was made for (transformers 4.44.2, einops, timm, sentencepiece for the 8B's
    tokenizer): `make humanaesexpert-runtime`; anything else is refused before loading, naming what is wrong.
    Only files already on disk are used (``local_files_only``); remote code runs with ``trust_remote_code``, so
    only point this at checkpoints you trust.
    """

    QUESTION = REFERENCE_QUESTION

    def __init__(self, source: str | Path, *, device: str | None = "auto", precision: str = "auto",
                 max_tiles: int = REFERENCE_MAX_TILES) -> None:
        from model_core.model import ModelLoadError, resolve_device

        if not 1 <= max_tiles <= 40:
            raise ValueError(f"max_tiles must be between 1 and 40, got {max_tiles}")
        path = _local_checkpoint(source)
        self.runtime = remote_code_runtime_check(path)
        self.device = resolve_device(device)
        self.dtype = _remote_code_dtype(precision, self.device)
        self.max_tiles = max_tiles
        from transformers import AutoModel, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=True, use_fast=False,
                                                           local_files_only=True)
            self.model = AutoModel.from_pretrained(
                str(path), torch_dtype=self.dtype, trust_remote_code=True, local_files_only=True,
                low_cpu_mem_usage=True, use_flash_attn=self.device.type == "cuda" and _importable("flash_attn"))
        except (OSError, ValueError, ImportError) as exc:
            raise ModelLoadError(f"could not load the HumanAesExpert checkpoint {str(path)!r}: {exc}") from None
        for name in ("score", "expert_score", "run_metavoter"):
            if not callable(getattr(self.model, name, None)):
                raise ModelLoadError(f"{path}: the loaded model has no {name}() method; is it a HumanAesExpert "
                                     "checkpoint?")
        self.model.to(self.device).eval()
        vision = getattr(self.model.config, "vision_config", None)
        self.tile_size = int(getattr(self.model.config, "force_image_size", None)
                             or getattr(vision, "image_size", 448) or 448)
        logger.info("HumanAesExpert checkpoint %s on %s (%s, %d tiles + thumbnail); %s", path, self.device,
                    str(self.dtype).removeprefix("torch."), self.max_tiles, self.runtime)

    def _pixels(self, path: str | Path, max_tiles: int | None = None) -> torch.Tensor:
        image = load_image(path)
        pixels = image_to_pixels(image, max_tiles=max_tiles or self.max_tiles, tile_size=self.tile_size)
        return pixels.to(self.device, self.dtype)  # (tiles [+ thumbnail], 3, tile, tile)

    @torch.inference_mode()
    def score(self, path: str | Path, *, question: str = REFERENCE_QUESTION) -> float:
        return float(self.model.score(self.tokenizer, self._pixels(path), question))

    @torch.inference_mode()
    def _expert(self, pixels: torch.Tensor) -> list[float]:
        scores, _text = self.model.expert_score(self.tokenizer, pixels)
        values = _floats(scores)
        if len(values) != NUM_DIMENSIONS:
            raise ModelOutputError(f"expert_score returned {len(values)} values, expected {NUM_DIMENSIONS}")
        return values

    @torch.inference_mode()
    def _metavoter(self, pixels: torch.Tensor) -> float:
        values = _floats(self.model.run_metavoter(self.tokenizer, pixels))
        if len(values) != 1:
            raise ModelOutputError(f"run_metavoter returned {len(values)} values, expected 1")
        return values[0]

    def expert_score(self, path: str | Path) -> list[float]:
        return self._expert(self._pixels(path))

    def run_metavoter(self, path: str | Path) -> float:
        return self._metavoter(self._pixels(path))

    def score_images(self, paths: Sequence[str | Path], *, max_tiles: int | None = None,
                     on_bad_image: OnBadImage = "skip") -> list[ImageScore]:
        """Same result type as :func:`score_images`: the MetaVoter and the 12 expert scores; the LM and regression
        heads' scores and the uncertainty are not given by the remote code, so they stay None."""
        results = []
        for path in paths:
            try:
                pixels = self._pixels(path, max_tiles)
            except DataError as exc:
                if on_bad_image == "raise":
                    raise
                results.append(ImageScore(path=str(path), error=str(exc)))
                continue
            mv = self._metavoter(pixels)
            results.append(ImageScore(path=str(path), expert_scores=self._expert(pixels), metavoter_score=mv,
                                      level=score_to_level(min(max(mv, 0.0), 1.0))))
        return results


class ModelOutputError(RuntimeError):
    """A model's method returned something of the wrong shape."""


def _floats(values: Any) -> list[float]:
    """Python floats from what remote code returns: a tensor (any device, dtype), a number, or lists of them."""
    if isinstance(values, torch.Tensor):
        return [float(v) for v in values.detach().float().cpu().reshape(-1).tolist()]
    if isinstance(values, (list, tuple)):
        return [x for v in values for x in _floats(v)]
    if isinstance(values, np.ndarray):
        return [float(v) for v in values.reshape(-1)]
    return [float(values)]
