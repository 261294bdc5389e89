"""The batched scoring pipeline: files -> decode (DataLoader workers) -> CLIP + pixel signals -> ScoredImage.

CPU: each DataLoader worker (started from a forkserver, see _worker_context) reads a file, decodes it with Pillow
(JPEG draft mode), computes the pixel
signals (faces, sharpness, exposure) and the CLIP crop; the main process batches the crops through the model in
fp32. CUDA: the workers only read bytes; the main process decodes the JPEGs of a batch together on the GPU
(torchvision.io.decode_jpeg on device = nvjpeg), crops and measures there, runs the model in bf16, and the face
detector runs on small grey copies in a thread pool (OpenCV releases the GIL). Files that are not JPEG are
decoded by the workers on both paths. A file that vanished or no longer decodes becomes a ScoredImage with
`error` set; the run goes on.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .clip import ClipScorer
from .signals import SIGNAL_SIZE, DecodeError, clip_crop, decode_rgb, faces_detect, gray_signals, pixel_signals

Reader = Callable[[str], bytes]


def read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@dataclass(frozen=True)
class ImageItem:
    key: int  # the caller's id (a FilterResult id)
    path: str  # what `reader` reads (a local path by default)


@dataclass
class ScoredImage:
    key: int
    error: str = ""
    probabilities: dict[str, float] = field(default_factory=dict)
    embedding: np.ndarray | None = None  # float32, L2-normalised
    face_count: int | None = None
    largest_face_fraction: float | None = None
    blur_variance: float | None = None
    exposure: dict[str, float] = field(default_factory=dict)
    digest: str = ""


class _FileDataset(Dataset):
    def __init__(self, items: Sequence[ImageItem], *, clip_size: int, reader: Reader, raw_jpeg: bool):
        self.items, self.clip_size, self.reader, self.raw_jpeg = items, clip_size, reader, raw_jpeg

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        try:
            data = self.reader(item.path)
        except FileNotFoundError:
            return {"key": item.key, "error": f"file missing: {item.path}"}
        except OSError as exc:
            return {"key": item.key, "error": f"cannot read the file: {exc}"}
        if self.raw_jpeg and data[:3] == b"\xff\xd8\xff":
            return {"key": item.key, "jpeg": torch.frombuffer(bytearray(data), dtype=torch.uint8)}
        try:
            rgb = decode_rgb(data, min_short=self.clip_size)
        except DecodeError as exc:
            return {"key": item.key, "error": str(exc)}
        signals = pixel_signals(rgb)
        crop = torch.from_numpy(clip_crop(rgb, self.clip_size)).permute(2, 0, 1).contiguous()
        return {"key": item.key, "pixels": crop, "signals": signals}


def _collate(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return samples


def _worker_context():
    """Decode workers start from a forkserver, not by forking this process.

    A plain fork copies whatever this process holds: in a Celery worker, kombu's pooled broker connections,
    whose after-fork hook then blocks the child on the parent's socket (seen as a hung run). The forkserver is
    a clean process, started once, with this module (torch, OpenCV, Pillow) already imported, so a worker starts
    in milliseconds. The dataset and the reader must therefore be picklable (module-level functions).
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def _make_loader(items, *, scorer: ClipScorer, batch_size: int, num_workers: int, reader: Reader) -> DataLoader:
    dataset = _FileDataset(items, clip_size=scorer.image_size, reader=reader, raw_jpeg=scorer.device.type == "cuda")
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=_collate,
        prefetch_factor=4 if num_workers else None, persistent_workers=False,
        multiprocessing_context=_worker_context() if num_workers else None,
    )


def _gpu_prepare(jpegs: list[torch.Tensor], *, scorer: ClipScorer, pool: ThreadPoolExecutor) -> tuple[list, list]:
    """nvjpeg-decode a batch on the device; return (crops or errors, futures of pixel signals)."""
    import torch.nn.functional as F
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        decoded = decode_jpeg(jpegs, mode=ImageReadMode.RGB, device=scorer.device, apply_exif_orientation=True)
    except RuntimeError:  # one bad file fails the batch call: decode one by one to find it
        decoded = []
        for data in jpegs:
            try:
                decoded.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=scorer.device,
                                           apply_exif_orientation=True))
            except RuntimeError as exc:
                decoded.append(DecodeError(f"cannot decode the image: {exc}"))
    size = scorer.image_size
    weights = torch.tensor([0.299, 0.587, 0.114], device=scorer.device).view(1, 3, 1, 1)
    crops, futures = [], []
    for image in decoded:
        if isinstance(image, Exception):
            crops.append(image)
            futures.append(None)
            continue
        x = image.unsqueeze(0).float()
        h, w = x.shape[-2:]
        scale = min(1.0, SIGNAL_SIZE / max(h, w))
        small = (
            F.interpolate(x, size=(max(1, round(h * scale)), max(1, round(w * scale))), mode="area") if scale < 1 else x
        )
        gray = (small * weights).sum(dim=1)[0].round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        futures.append(pool.submit(_gray_pixel_signals, gray))
        s = size / min(h, w)
        nh, nw = max(size, round(h * s)), max(size, round(w * s))
        resized = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
        top, left = (nh - size) // 2, (nw - size) // 2
        crops.append(resized[0, :, top : top + size, left : left + size].round().clamp(0, 255).to(torch.uint8))
    return crops, futures


def _gray_pixel_signals(gray: np.ndarray):
    from .signals import PixelSignals

    blur, exposure = gray_signals(gray)
    count, largest = faces_detect(gray)
    digest = hashlib.blake2b(gray.tobytes(), digest_size=16, person=b"aesp-pixels")
    digest.update(np.asarray(gray.shape, dtype=np.int64).tobytes())
    return PixelSignals(count, round(largest, 6), round(blur, 3), exposure, digest.hexdigest())


def pipeline_run(
    items: Sequence[ImageItem],
    scorer: ClipScorer,
    *,
    batch_size: int = 64,
    num_workers: int = 2,
    reader: Reader = read_file,
) -> Iterator[list[ScoredImage]]:
    """Score `items` in order, yielding one list of ScoredImage per batch (every item exactly once)."""
    loader = _make_loader(items, scorer=scorer, batch_size=batch_size, num_workers=num_workers, reader=reader)
    pool = ThreadPoolExecutor(max_workers=max(2, num_workers)) if scorer.device.type == "cuda" else None
    try:
        for samples in loader:
            yield _score_batch(samples, scorer=scorer, pool=pool)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)


def _score_batch(
    samples: list[dict[str, Any]], *, scorer: ClipScorer, pool: ThreadPoolExecutor | None
) -> list[ScoredImage]:
    out = [ScoredImage(key=s["key"], error=s.get("error", "")) for s in samples]
    crops: dict[int, torch.Tensor] = {}
    pending: dict[int, Any] = {}
    jpeg_positions = [i for i, s in enumerate(samples) if "jpeg" in s]
    if jpeg_positions:
        assert pool is not None
        gpu_crops, futures = _gpu_prepare([samples[i]["jpeg"] for i in jpeg_positions], scorer=scorer, pool=pool)
        for i, crop, future in zip(jpeg_positions, gpu_crops, futures):
            if isinstance(crop, Exception):
                out[i].error = str(crop)
            else:
                crops[i], pending[i] = crop, future
    for i, s in enumerate(samples):
        if "pixels" in s:
            crops[i] = s["pixels"]
            _apply_signals(out[i], s["signals"])
    if crops:
        order = sorted(crops)
        batch = torch.stack([crops[i].to(scorer.device, non_blocking=True) for i in order])
        result = scorer.encode(batch)
        for row, i in enumerate(order):
            out[i].embedding = result.embeddings[row]
            out[i].probabilities = result.probabilities[row]
    for i, future in pending.items():
        _apply_signals(out[i], future.result())
    return out


def _apply_signals(target: ScoredImage, signals) -> None:
    target.face_count = signals.face_count
    target.largest_face_fraction = signals.largest_face_fraction
    target.blur_variance = signals.blur_variance
    target.exposure = signals.exposure
    target.digest = signals.digest


def model_only_throughput(scorer: ClipScorer, *, batch_size: int, batches: int) -> float:
    """Images/s of the image tower + zero-shot head alone on random uint8 input already on the device."""
    x = torch.randint(0, 256, (batch_size, 3, scorer.image_size, scorer.image_size), dtype=torch.uint8,
                      device=scorer.device)
    scorer.encode(x)  # warm-up
    if scorer.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(batches):
        scorer.encode(x)
    if scorer.device.type == "cuda":
        torch.cuda.synchronize()
    return batch_size * batches / (time.perf_counter() - start)


def iter_chunks(values: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for value in values:
        chunk.append(value)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
