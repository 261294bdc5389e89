"""Data: readers for the training jsonl and the HumanBeauty layout, InternVL dynamic tiling, batching.

Readers turn files into :class:`Record` objects and fail with a :class:`DataError` that names the file and the
line. A bad *record* (malformed JSON, wrong number of scores, a score out of [0, 1]) is always an error: it is a
bug in whoever wrote the file. A missing or undecodable *image* is a property of the storage, so the caller
chooses with ``on_bad_image``: ``"raise"`` (default) or ``"skip"`` (skipped and counted).

Tiling follows the reference InternVL preprocessing exactly (``find_closest_aspect_ratio`` /
``dynamic_preprocess``): the image is resized to the grid of tiles whose aspect ratio is closest to the image's,
cut into tiles of ``tile_size`` pixels, and a thumbnail of the whole image is appended when there is more than
one tile. ``max_tiles=1`` gives a single resized tile: the fast pre-scoring mode.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from model_core import formats
from model_core.standard import NUM_DIMENSIONS
from model_core.text import Encoded

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OnBadImage = Literal["raise", "skip"]


class DataError(ValueError):
    """A data file, record or image that cannot be used; the message names the file and line."""


# ---------------------------------------------------------------------------------------------------------------
# Records and readers
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One labelled image. ``scores`` always has 12 floats; for overall-only records the first 11 are
    placeholders (0.0) that ``is_expert=False`` masks out of every loss and metric."""

    image: Path
    scores: tuple[float, ...]
    is_expert: bool
    source: str = ""
    origin: str = ""  # "file:line" the record came from, for error messages
    # The level word an overall-only HumanBeauty record carries (`text_level`); the reference evaluation takes
    # it as the true level of such records. None where the source gives none.
    text_level: str | None = None

    @property
    def overall(self) -> float:
        return self.scores[-1]


@dataclass
class ReadResult:
    records: list[Record]
    skipped: list[str] = field(default_factory=list)  # "file:line: reason" for each skipped record

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)


def _parsed_records(path: Path, parse: Callable[[dict[str, Any]], Any]) -> Iterable[tuple[str, Any]]:
    """("file:line", parse(record)) for each record of a jsonl file; a DataError names the file and line."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with path.open("r", encoding="utf-8") as handle:
        for line_no, record in formats.iter_jsonl(handle):
            origin = f"{path}:{line_no}"
            if isinstance(record, formats.MalformedLine):
                exc = record.error  # (text mode: only a JSONDecodeError; an undecodable line raised while reading)
                raise DataError(f"{origin}: malformed JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(record, dict):
                raise DataError(f"{origin}: expected a JSON object, got {type(record).__name__}")
            try:
                yield origin, parse(record)
            except formats.FormatError as exc:
                raise DataError(f"{origin}: {exc}") from None


def check_image(path: Path) -> str | None:
    """None when ``path`` is a readable image, else the reason. Cheap: parses the header and structure only."""
    if not path.is_file():
        return f"image not found: {path}"
    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return f"corrupt image {path}: {exc}"
    return None


def _finish(records: list[Record], *, check_images: bool, on_bad_image: OnBadImage) -> ReadResult:
    result = ReadResult(records=[])
    for record in records:
        problem = check_image(record.image) if check_images else None
        if problem is None:
            result.records.append(record)
        elif on_bad_image == "skip":
            result.skipped.append(f"{record.origin}: {problem}")
        else:
            raise DataError(f"{record.origin}: {problem}")
    if result.skipped:
        logger.warning("skipped %d record(s) with a missing or corrupt image; first: %s", result.n_skipped,
                       result.skipped[0])
    return result


def _check_on_bad_image(on_bad_image: str) -> None:
    if on_bad_image not in ("raise", "skip"):
        raise ValueError(f"on_bad_image must be 'raise' or 'skip', got {on_bad_image!r}")


def read_training_jsonl(
    path: str | Path, *, on_bad_image: OnBadImage = "raise", check_images: bool = True
) -> ReadResult:
    """Read an ms-swift style training jsonl (model_core.formats): ``images[0]``, ``scores`` (12), ``is_expert``.

    Relative image paths are resolved against the jsonl's folder.
    """
    _check_on_bad_image(on_bad_image)
    path = Path(path)
    pending: list[Record] = []
    for origin, parsed in _parsed_records(path, formats.parse_training_record):
        image = Path(parsed.image)
        pending.append(Record(image=image if image.is_absolute() else path.parent / image, scores=parsed.scores,
                              is_expert=parsed.is_expert, source=parsed.source, origin=origin))
    return _finish(pending, check_images=check_images, on_bad_image=on_bad_image)


def read_humanbeauty(
    root: str | Path, *, split: Literal["train", "test"], on_bad_image: OnBadImage = "raise",
    check_images: bool = True,
) -> ReadResult:
    """Read ``<root>/<split>_label.jsonl`` of the HumanBeauty layout (root-relative ``image_name``, ``is_expert``)."""
    _check_on_bad_image(on_bad_image)
    if split not in formats.SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    path = root / formats.SPLIT_LABEL_FILES[split]
    pending = [Record(image=root / parsed.image_name, scores=parsed.scores, is_expert=parsed.is_expert,
                      source=parsed.source, origin=origin, text_level=parsed.text_level)
               for origin, parsed in _parsed_records(path, formats.parse_split_record)]
    return _finish(pending, check_images=check_images, on_bad_image=on_bad_image)


def read_records(
    path: str | Path, *, split: Literal["train", "test"] = "train", on_bad_image: OnBadImage = "raise",
    check_images: bool = True,
) -> ReadResult:
    """A HumanBeauty root (a folder: reads ``<split>_label.jsonl``) or a training jsonl file."""
    path = Path(path)
    if path.is_dir():
        return read_humanbeauty(path, split=split, on_bad_image=on_bad_image, check_images=check_images)
    return read_training_jsonl(path, on_bad_image=on_bad_image, check_images=check_images)


# ---------------------------------------------------------------------------------------------------------------
# Tiling (the reference InternVL preprocessing)
# ---------------------------------------------------------------------------------------------------------------


def target_ratios(min_num: int, max_num: int) -> list[tuple[int, int]]:
    """All (columns, rows) grids with min_num <= columns*rows <= max_num, sorted by tile count (stable)."""
    ratios = {(i, j) for n in range(min_num, max_num + 1) for i in range(1, n + 1) for j in range(1, n + 1)
              if min_num <= i * j <= max_num}
    return sorted(ratios, key=lambda r: r[0] * r[1])


def find_closest_aspect_ratio(
    aspect_ratio: float, ratios: Sequence[tuple[int, int]], width: int, height: int, image_size: int
) -> tuple[int, int]:
    """The reference rule: closest aspect ratio; on a tie, the larger grid if the image has the pixels for it."""
    best_diff = float("inf")
    best = (1, 1)
    area = width * height
    for ratio in ratios:
        diff = abs(aspect_ratio - ratio[0] / ratio[1])
        if diff < best_diff:
            best_diff, best = diff, ratio
        elif diff == best_diff and area > 0.5 * image_size * image_size * ratio[0] * ratio[1]:
            best = ratio
    return best


def tile_grid(width: int, height: int, *, max_tiles: int, tile_size: int, min_tiles: int = 1) -> tuple[int, int]:
    """(columns, rows) of the tiling of a width x height image; known from the header alone."""
    if max_tiles < 1 or min_tiles < 1 or min_tiles > max_tiles:
        raise ValueError(f"need 1 <= min_tiles <= max_tiles, got min_tiles={min_tiles}, max_tiles={max_tiles}")
    return find_closest_aspect_ratio(width / height, target_ratios(min_tiles, max_tiles), width, height, tile_size)


def num_tiles(width: int, height: int, *, max_tiles: int, tile_size: int, use_thumbnail: bool = True) -> int:
    cols, rows = tile_grid(width, height, max_tiles=max_tiles, tile_size=tile_size)
    blocks = cols * rows
    return blocks + 1 if use_thumbnail and blocks != 1 else blocks


def dynamic_preprocess(
    image: Image.Image, *, max_tiles: int = 12, tile_size: int = 448, min_tiles: int = 1,
    use_thumbnail: bool = True,
) -> list[Image.Image]:
    """Cut ``image`` into the reference InternVL tiles (+ thumbnail when tiled)."""
    width, height = image.size
    cols, rows = tile_grid(width, height, max_tiles=max_tiles, tile_size=tile_size, min_tiles=min_tiles)
    resized = image.resize((tile_size * cols, tile_size * rows), Image.Resampling.BICUBIC)
    tiles = [
        resized.crop((c * tile_size, r * tile_size, (c + 1) * tile_size, (r + 1) * tile_size))
        for r in range(rows) for c in range(cols)
    ]
    if use_thumbnail and len(tiles) != 1:
        tiles.append(image.resize((tile_size, tile_size), Image.Resampling.BICUBIC))
    return tiles


def normalize_tiles(tiles: Sequence[Image.Image]) -> torch.Tensor:
    """PIL tiles -> float tensor (n_tiles, 3, S, S) with ImageNet normalisation."""
    array = np.stack([np.asarray(t, dtype=np.uint8) for t in tiles])  # (n, S, S, 3) uint8
    pixels = torch.from_numpy(array).permute(0, 3, 1, 2).float().div_(255.0)  # (n, 3, S, S) in [0, 1]
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (pixels - mean) / std


def load_image(path: str | Path) -> Image.Image:
    """Decode an image fully to RGB; a :class:`DataError` naming the file when it is missing or corrupt."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"corrupt image {path}: {exc}") from None


def image_to_pixels(image: Image.Image, *, max_tiles: int, tile_size: int) -> torch.Tensor:
    """(n_tiles, 3, tile_size, tile_size) normalised pixel values of one RGB image."""
    return normalize_tiles(dynamic_preprocess(image.convert("RGB"), max_tiles=max_tiles, tile_size=tile_size))


# ---------------------------------------------------------------------------------------------------------------
# Dataset and collate
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Example:
    """One decoded item: tiles plus what the collate needs to build the text."""

    index: int  # position in the dataset (to put results back in order)
    pixel_values: torch.Tensor  # (n_tiles, 3, S, S)
    scores: tuple[float, ...]
    is_expert: bool
    path: str


@dataclass
class Failed:
    """An item whose image could not be decoded (only with on_bad_image="skip")."""

    index: int
    path: str
    reason: str


class ImageDataset(torch.utils.data.Dataset):
    """Decodes and tiles images in DataLoader workers. Items are :class:`Example` or :class:`Failed`."""

    def __init__(
        self, items: Sequence[Record | str | Path], *, tile_size: int, max_tiles: int,
        on_bad_image: OnBadImage = "raise",
    ) -> None:
        _check_on_bad_image(on_bad_image)
        self.items = list(items)
        self.tile_size = tile_size
        self.max_tiles = max_tiles
        self.on_bad_image = on_bad_image

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Example | Failed:
        item = self.items[index]
        if isinstance(item, Record):
            path, scores, is_expert, origin = item.image, item.scores, item.is_expert, item.origin
        else:
            path, scores, is_expert, origin = Path(item), (0.0,) * NUM_DIMENSIONS, False, str(item)
        try:
            image = load_image(path)
        except DataError as exc:
            if self.on_bad_image == "skip":
                return Failed(index=index, path=str(path), reason=str(exc))
            raise DataError(f"{origin}: {exc}" if origin != str(path) else str(exc)) from None
        pixels = image_to_pixels(image, max_tiles=self.max_tiles, tile_size=self.tile_size)
        return Example(index=index, pixel_values=pixels, scores=scores, is_expert=is_expert, path=str(path))


@dataclass
class Batch:
    """A model-ready batch. Tiles of all images are concatenated; ``tiles_per_image`` says which are whose."""

    pixel_values: torch.Tensor  # (total_tiles, 3, S, S)
    tiles_per_image: torch.Tensor  # (B,) long
    input_ids: torch.Tensor  # (B, T) long, right-padded
    attention_mask: torch.Tensor  # (B, T) long
    labels: torch.Tensor  # (B, T) long, -100 outside the answer tokens
    head_index: torch.Tensor  # (B,) long: where the regression and expert heads read (see model_core.text)
    lm_index: torch.Tensor  # (B,) long: where the LM head reads the level distribution (last answer-prefix token)
    scores: torch.Tensor  # (B, 12) float
    is_expert: torch.Tensor  # (B,) bool
    indices: list[int]
    paths: list[str]
    failed: list[Failed] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.indices)

    def to(self, device: torch.device | str, *, dtype: torch.dtype | None = None) -> "Batch":
        moved = {}
        for name in ("pixel_values", "tiles_per_image", "input_ids", "attention_mask", "labels", "head_index",
                     "lm_index", "scores", "is_expert"):
            tensor = getattr(self, name)
            if name == "pixel_values" and dtype is not None:
                tensor = tensor.to(dtype)
            moved[name] = tensor.to(device, non_blocking=True)
        return Batch(**moved, indices=self.indices, paths=self.paths, failed=self.failed)

    def model_inputs(self) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.pixel_values, "input_ids": self.input_ids,
                "attention_mask": self.attention_mask, "head_index": self.head_index, "lm_index": self.lm_index}


class Collator:
    """Builds the token sequences (via ``encode``) and pads them; drops and reports :class:`Failed` items.

    ``encode(n_image_tokens, is_expert, scores, index, train)`` comes from the model's
    :class:`~model_core.text.PromptBuilder` and returns an :class:`~model_core.text.Encoded`.
    """

    def __init__(self, encode: Callable[..., Encoded], *, tokens_per_tile: int,
                 pad_token_id: int, train: bool) -> None:
        self.encode = encode
        self.tokens_per_tile = tokens_per_tile
        self.pad_token_id = pad_token_id
        self.train = train

    def __call__(self, items: Sequence[Example | Failed]) -> Batch:
        examples = [x for x in items if isinstance(x, Example)]
        failed = [x for x in items if isinstance(x, Failed)]
        encoded = [
            self.encode(n_image_tokens=x.pixel_values.shape[0] * self.tokens_per_tile, is_expert=x.is_expert,
                        scores=x.scores, index=x.index, train=self.train)
            for x in examples
        ]
        length = max((len(e.input_ids) for e in encoded), default=0)
        batch_size = len(examples)
        input_ids = torch.full((batch_size, length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((batch_size, length), -100, dtype=torch.long)
        attention_mask = torch.zeros((batch_size, length), dtype=torch.long)
        for row, e in enumerate(encoded):
            input_ids[row, : len(e.input_ids)] = torch.tensor(e.input_ids)
            labels[row, : len(e.labels)] = torch.tensor(e.labels)
            attention_mask[row, : len(e.input_ids)] = 1
        tile_size = examples[0].pixel_values.shape[-1] if examples else 1
        return Batch(
            pixel_values=(torch.cat([x.pixel_values for x in examples]) if examples
                          else torch.zeros(0, 3, tile_size, tile_size)),
            tiles_per_image=torch.tensor([x.pixel_values.shape[0] for x in examples], dtype=torch.long),
            input_ids=input_ids,
            attention_mask=attention_mask,
            labels=labels,
            head_index=torch.tensor([e.head_index for e in encoded], dtype=torch.long),
            lm_index=torch.tensor([e.lm_index for e in encoded], dtype=torch.long),
            scores=torch.tensor([x.scores for x in examples], dtype=torch.float32).reshape(batch_size, NUM_DIMENSIONS),
            is_expert=torch.tensor([x.is_expert for x in examples], dtype=torch.bool),
            indices=[x.index for x in examples],
            paths=[x.path for x in examples],
            failed=failed,
        )


def image_sizes(paths: Sequence[str | Path]) -> list[tuple[int, int] | None]:
    """(width, height) from each file's header, None when unreadable: lets callers group by tile count."""
    sizes: list[tuple[int, int] | None] = []
    for path in paths:
        try:
            with Image.open(path) as image:
                sizes.append(image.size)
        except (OSError, UnidentifiedImageError, ValueError):
            sizes.append(None)
    return sizes
