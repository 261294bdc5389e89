"""Export writers: the HumanBeauty layout and the training jsonl (model_core.formats, field for field).

A writer takes the version's items as a stream of :class:`ExportRow` (sorted: overall-only first, then expert,
each by image name), writes into a fresh directory, and returns the list of files it wrote with their sha256 and
size (what manifest.json lists). Nothing here holds the dataset in memory but that file list.

Byte-identical output for the same rows and options: records are written in the order given, by
model_core.formats (which owns the layout, the records and their one JSON formatting), prompts from a seed.
Images are named `<sha256>.<ext>`: content-addressed, unique, and the same after an export is imported again.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple, Sequence

from model_core import formats
from model_core.formats import (  # noqa: F401 -- the layout's names, re-exported for the datasets app
    DIR_50K,
    DIR_58K,
    IMAGES_DIR,
    LABEL_FILE,
    SPLIT_LABEL_FILES,
    TRAINING_FILES,
    FileEntry,
    dumps,
)
from model_core.standard import DIMENSIONS

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
_BUFFER = 1 << 20


class ExportWriteError(Exception):
    """A file that cannot be written or an image that cannot be read; the message names it."""


class ExportRow(NamedTuple):
    """(A named tuple: 108,000 of them are made per export; a frozen dataclass costs 3x as much to build.)"""

    image_name: str  # <sha256>.<ext>
    image_sha256: str
    image_file: str  # storage key of the original
    image_size: int  # bytes (the catalog's, checked again when archived)
    source: str
    split: str  # "train" | "test"
    is_expert: bool
    scores: tuple[float | None, ...]  # the 12 scores in the standard's order (None where unknown)

    @property
    def overall(self) -> float:
        return self.scores[-1]


# --- images ---------------------------------------------------------------------------------------------------


class ImagePlacer:
    """Puts an image into the export by hard link, symlink or copy.

    `local_path(key)` gives the filesystem path of a stored file (None for storages without one, e.g. S3);
    `open_file(key)` opens it for reading. A hard link that the filesystem refuses (another device, no
    permission) falls back to a copy; a storage without local paths always copies (streamed).

    With `background=True` the placements run in one helper thread, in batches, while the caller formats the
    label files (the link/copy system calls release the GIL); `close()` waits for them and raises the first
    error. The caller must call `close()` before it uses the files.
    """

    BATCH = 1000

    def __init__(self, *, mode: str, local_path: Callable[[str], str | None], open_file: Callable[[str], object],
                 background: bool = False):
        if mode not in ("hardlink", "symlink", "copy"):
            raise ValueError(f"unknown image mode {mode!r}")
        self.mode = mode
        self.local_path = local_path
        self.open_file = open_file
        self.counts = {"hardlink": 0, "symlink": 0, "copy": 0}
        self._pending: list[tuple[ExportRow, str]] = []
        self._executor = None
        self._futures: deque = deque()
        if background:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-images")

    def place(self, row: ExportRow, target: str) -> None:
        if self._executor is None:
            self._place(row, target)
            return
        self._pending.append((row, target))
        if len(self._pending) >= self.BATCH:
            self._submit()

    def _submit(self) -> None:
        batch, self._pending = self._pending, []
        while self._futures and (self._futures[0].done() or len(self._futures) >= 4):  # bounded memory
            self._futures.popleft().result()
        self._futures.append(self._executor.submit(self._place_batch, batch))

    def _place_batch(self, batch: list[tuple[ExportRow, str]]) -> None:
        for row, target in batch:
            self._place(row, target)

    def close(self, *, cancel: bool = False) -> None:
        """Wait for the placements in flight (cancel: drop the queued ones) and raise the first error."""
        if self._executor is None:
            return
        executor, self._executor = self._executor, None
        try:
            if cancel:
                self._pending = []
                for future in self._futures:
                    future.cancel()
            elif self._pending:
                self._futures.append(executor.submit(self._place_batch, self._pending))
                self._pending = []
            while self._futures:
                future = self._futures.popleft()
                if not future.cancelled():
                    error = future.exception()
                    if error is not None and not cancel:
                        raise error
        finally:
            executor.shutdown(wait=True, cancel_futures=True)

    def _place(self, row: ExportRow, target: str) -> None:
        source = self.local_path(row.image_file)
        try:
            if source is not None and self.mode == "hardlink":
                try:
                    os.link(source, target)
                    self.counts["hardlink"] += 1
                    return
                except FileNotFoundError:
                    raise
                except OSError:
                    pass  # another filesystem, or links not allowed: copy below
            if source is not None and self.mode == "symlink":
                if not os.path.isfile(source):
                    raise FileNotFoundError(source)
                os.symlink(os.path.abspath(source), target)
                self.counts["symlink"] += 1
                return
            if source is not None:
                shutil.copyfile(source, target)
            else:
                with self.open_file(row.image_file) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, _BUFFER)
            self.counts["copy"] += 1
        except FileNotFoundError:
            raise ExportWriteError(
                f"the stored file of image {row.image_sha256} ({row.image_file}) is missing"
            ) from None
        except OSError as exc:
            raise ExportWriteError(f"cannot write image {row.image_name}: {exc}") from None


# --- the two formats ------------------------------------------------------------------------------------------


def _write_rows(
    rows: Iterable[ExportRow], *, writer: formats.HumanBeautyWriter | formats.TrainingJsonlWriter,
    add: Callable[[ExportRow], str], root: Path | None = None, placer: ImagePlacer | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[FileEntry]:
    """Each row's records through `add` (which returns where the row's image goes, relative to `root`), its
    image put there by `placer` (when given); the files written, images first. Nothing is left half-running
    after an error: queued image placements are dropped, the record files closed."""
    files: list[FileEntry] = []
    base = str(root)
    try:
        for count, row in enumerate(rows, start=1):
            if row.split not in SPLIT_LABEL_FILES:  # (the training files have the same splits)
                raise ExportWriteError(f"unknown split {row.split!r} for image {row.image_name}")
            relpath = add(row)
            if placer is not None:
                placer.place(row, f"{base}/{relpath}")
                files.append(FileEntry(relpath, row.image_sha256, row.image_size))
            if progress is not None and count % 1000 == 0:
                progress(count)
    except BaseException:
        if placer is not None:
            placer.close(cancel=True)
        writer.abort()
        raise
    if placer is not None:
        placer.close()
    files.extend(writer.close())
    return files


def write_humanbeauty(
    root: Path, rows: Iterable[ExportRow], *, placer: ImagePlacer, progress: Callable[[int], None],
) -> list[FileEntry]:
    """HumanBeauty-58K/ and -50K/ (images/ + label.jsonl), train_label.jsonl and test_label.jsonl."""
    labels = formats.HumanBeautyWriter(root)

    def add(row: ExportRow) -> str:
        return labels.add(image_name=row.image_name, source=row.source, scores=row.scores, is_expert=row.is_expert,
                          split=row.split)

    return _write_rows(rows, writer=labels, add=add, root=root, placer=placer, progress=progress)


def write_training_jsonl(
    root: Path, rows: Iterable[ExportRow], *, placer: ImagePlacer, progress: Callable[[int], None],
    final_root: Path, image_paths: str, prompts: bool, prompt_seed: int,
) -> list[FileEntry]:
    """train.jsonl and test.jsonl with images/<name>; image paths absolute (under `final_root`, where the export
    will be once renamed) or relative to the jsonl's folder."""
    (root / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    records = formats.TrainingJsonlWriter(root, prompt_seed=prompt_seed if prompts else None)
    final_base = str(final_root)

    def add(row: ExportRow) -> str:
        relpath = f"{IMAGES_DIR}/{row.image_name}"
        image_path = f"{final_base}/{relpath}" if image_paths == "absolute" else relpath
        records.add(scores=row.scores, is_expert=row.is_expert, image_path=image_path, split=row.split)
        return relpath

    return _write_rows(rows, writer=records, add=add, root=root, placer=placer, progress=progress)


def write_training_records(root: Path, rows: Iterable[ExportRow], *, image_path: Callable[[ExportRow], str]
                           ) -> list[FileEntry]:
    """train.jsonl and test.jsonl only, each record pointing where `image_path(row)` says (no images written):
    the training data of a version whose images stay where they are stored."""
    records = formats.TrainingJsonlWriter(root)

    def add(row: ExportRow) -> str:
        path = image_path(row)
        records.add(scores=row.scores, is_expert=row.is_expert, image_path=path, split=row.split)
        return path

    return _write_rows(rows, writer=records, add=add)


# --- manifest and archive -------------------------------------------------------------------------------------


def sort_files(files: list[FileEntry]) -> list[FileEntry]:
    files.sort(key=lambda e: e.path)
    return files


def write_manifest(root: Path, manifest: dict, files: Sequence[FileEntry]) -> FileEntry:
    """manifest.json: the given fields (keys sorted, indented), then `files` last: one line per file,
    path -> {"bytes", "sha256"}, sorted by path. (json's indented encoder is pure Python: too slow for 10^5 files.)"""
    if "files" in manifest:
        raise ValueError("the manifest's files are given separately")
    head = json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True)
    writer = formats.HashingLineWriter(root, MANIFEST)
    writer.line(head[:-2] + ",") if manifest else writer.line("{")
    writer.line(' "files": {')
    last = len(files) - 1
    for index, entry in enumerate(files):
        comma = "," if index < last else ""
        writer.line(
            f'  {formats.json_string(entry.path)}: {{"bytes": {entry.size}, "sha256": "{entry.sha256}"}}{comma}'
        )
    writer.line(" }")
    writer.line("}")
    return writer.close()


_USTAR_MAX_SIZE = 8**11 - 1


def _ustar_split(encoded: bytes) -> tuple[bytes, bytes]:
    """(prefix, name) of a ustar header; a name that does not fit is left whole (longer than 100)."""
    if len(encoded) > 100:
        cut = encoded.rfind(b"/", 0, 156)
        if cut > 0 and len(encoded) - cut - 1 <= 100:
            return encoded[:cut], encoded[cut + 1:]
    return b"", encoded


def tar_header(name: str, size: int, *, directory: bool = False) -> bytes:
    """One POSIX ustar header (mtime 0, owner 0/0, no user names), built here rather than by tarfile, because
    the archive is rebuilt at every download and a resumed download (Range + If-Range on an ETag made of the
    export's id, size and manifest) must get the very bytes of the first part, whatever Python serves it:
    - tarfile's header bytes are not ours to fix: it splits a long name at the first "/" that fits where this
      splits at the last one (every image member of an export is such a name), and it leaves devmajor/devminor
      empty where this writes zeros; switching would change every archive already being downloaded;
    - speed: tarfile's ustar path costs ~20 µs a member and its PAX path ~100 µs, this ~6 µs: most of the time
      of an archive of 100,000 small files.
    Names that do not fit ustar (or files of 8 GiB and more) get tarfile's PAX header."""
    encoded = name.encode("utf-8")
    prefix, base = _ustar_split(encoded)
    if len(base) > 100 or len(prefix) > 155 or size > _USTAR_MAX_SIZE:
        info = tarfile.TarInfo(name)
        info.size = 0 if directory else size
        info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
        info.mode = 0o755 if directory else 0o644
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8")
    header = bytearray(512)
    header[0:len(base)] = base
    header[100:108] = b"0000755\0" if directory else b"0000644\0"
    header[108:116] = b"0000000\0"
    header[116:124] = b"0000000\0"
    header[124:136] = b"%011o\0" % (0 if directory else size)
    header[136:148] = b"00000000000\0"
    header[148:156] = b"        "
    header[156:157] = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    header[257:265] = b"ustar\x0000"
    header[329:337] = b"0000000\0"
    header[337:345] = b"0000000\0"
    header[345:345 + len(prefix)] = prefix
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


# --- the archive, streamed at download time -------------------------------------------------------------------
#
# The job does not write the tar: it is a function of the export's files (path, size and content), so the download
# builds it on the fly, byte for byte what a plain sequential tar writer writes (a test holds the two equal). Its
# layout (every member's offset) follows from the paths and sizes alone, which the manifest lists: a Range request
# reads only
# the files its bytes come from.


def _dir_names(files: Sequence[FileEntry], prefix: str) -> Iterator[tuple[str, FileEntry | None]]:
    """(member name, entry) in archive order (by path, each folder before its first file); folders have no entry."""
    dirs_done: set[str] = set()
    for entry in sorted(files, key=lambda e: e.path):
        folder = entry.path.rpartition("/")[0]
        if folder not in dirs_done:
            parts = folder.split("/") if folder else []
            for depth in range(len(parts) + 1):
                directory = "/".join([prefix, *parts[:depth]])
                if directory not in dirs_done:
                    dirs_done.add(directory)
                    yield directory + "/", None
            dirs_done.add(folder)
        yield f"{prefix}/{entry.path}", entry


def _header_length(name: str, size: int) -> int:
    """len(tar_header(name, size)) without building it: 512 for ustar, more for a PAX header."""
    prefix, base = _ustar_split(name.encode("utf-8"))
    if len(base) <= 100 and len(prefix) <= 155 and size <= _USTAR_MAX_SIZE:
        return tarfile.BLOCKSIZE
    return len(tar_header(name, size, directory=name.endswith("/")))


@dataclass(frozen=True)
class ArchiveLayout:
    """Where each member of the archive lies: offsets[i] is where member i's header starts."""

    names: list[str]
    entries: list[FileEntry | None]
    offsets: list[int]
    header_lengths: list[int]
    size: int


def archive_layout(files: Sequence[FileEntry], *, prefix: str) -> ArchiveLayout:
    names, entries, offsets, lengths = [], [], [], []
    offset = 0
    for name, entry in _dir_names(files, prefix):
        size = entry.size if entry is not None else 0
        length = _header_length(name, size)
        names.append(name)
        entries.append(entry)
        offsets.append(offset)
        lengths.append(length)
        offset += length + size + (-size % tarfile.BLOCKSIZE)
    offset += 2 * tarfile.BLOCKSIZE
    offset += -offset % tarfile.RECORDSIZE
    return ArchiveLayout(names, entries, offsets, lengths, offset)


def archive_size(files: Sequence[FileEntry], *, prefix: str) -> int:
    return archive_layout(files, prefix=prefix).size


def iter_archive(root: Path, layout: ArchiveLayout, *, start: int = 0, end: int | None = None,
                 chunk: int = _BUFFER) -> Iterator[bytes]:
    """Bytes [start, end] (inclusive) of the archive of the files under `root`, in chunks of about `chunk` bytes.
    A file whose size differs from its entry raises ExportWriteError (the archive would not match its layout)."""
    import bisect

    end = layout.size - 1 if end is None else min(end, layout.size - 1)
    if start > end:
        return
    base = str(root)
    buffer = bytearray()
    position = start
    first = max(0, bisect.bisect_right(layout.offsets, start) - 1)
    for index in range(first, len(layout.offsets)):
        member_start = layout.offsets[index]
        if member_start > end:
            break
        entry = layout.entries[index]
        size = entry.size if entry is not None else 0
        header_length = layout.header_lengths[index]
        member_end = member_start + header_length + size + (-size % tarfile.BLOCKSIZE)  # exclusive
        if member_end <= position:
            continue
        header = tar_header(layout.names[index], size, directory=entry is None)
        if len(header) != header_length:
            raise ExportWriteError(f"archive layout mismatch at {layout.names[index]}")
        data_start = member_start + header_length
        pad = -size % tarfile.BLOCKSIZE
        # the member's three parts: header, file data, padding
        if position < data_start:
            hi = min(data_start, end + 1)
            buffer += header[position - member_start:hi - member_start]
            position = hi
        if entry is not None and size and data_start <= position <= end and position < data_start + size:
            hi = min(data_start + size, end + 1)
            with open(f"{base}/{entry.path}", "rb") as handle:
                if os.fstat(handle.fileno()).st_size != size:
                    raise ExportWriteError(f"{entry.path} changed size since the export was written")
                handle.seek(position - data_start)
                while position < hi:
                    piece = handle.read(min(chunk, hi - position))
                    if not piece:
                        raise ExportWriteError(f"{entry.path} changed size since the export was written")
                    buffer += piece
                    position += len(piece)
                    if len(buffer) >= chunk:
                        yield bytes(buffer)
                        buffer.clear()
        if pad and position <= end and position < member_end:
            hi = min(member_end, end + 1)
            buffer += tarfile.NUL * (hi - position)
            position = hi
        if len(buffer) >= chunk:
            yield bytes(buffer)
            buffer.clear()
        if position > end:
            break
    if position <= end:  # the end-of-archive blocks
        buffer += tarfile.NUL * (end + 1 - position)
    if buffer:
        yield bytes(buffer)


def read_manifest_files(root: Path) -> list[FileEntry]:
    """The files of a finished export as its manifest lists them, plus manifest.json itself (its size on disk)."""
    with open(root / MANIFEST, "rb") as handle:
        manifest = json.load(handle)
    files = [FileEntry(path, entry["sha256"], entry["bytes"]) for path, entry in manifest["files"].items()]
    files.append(FileEntry(MANIFEST, "", os.path.getsize(root / MANIFEST)))
    return files


def iter_chunks(iterable: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for item in iterable:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


DIMENSION_COUNT = len(DIMENSIONS)
