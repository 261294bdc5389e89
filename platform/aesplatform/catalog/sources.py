"""Where an import's files come from: server paths (inside the allowed roots), zips, HumanBeauty folders.

Two halves:
- planning (in the job's main process): list what a folder, zip or label.jsonl holds as `PlannedItem`s, with
  per-member refusals (unsafe zip paths, symlinks, zip bombs, malformed label lines) already decided;
- reading (in the import's process pool): `inspect_source` reads one file's bytes, with the size limits
  enforced while reading, and hands them to `imaging.inspect_image`. No database access on this side.
"""

from __future__ import annotations

import errno
import os
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from aesplatform.common.exceptions import ServiceError
from model_core import formats
from model_core.formats import DIR_50K, DIR_58K, HUMANBEAUTY_DIRS, IMAGES_DIR, LABEL_FILE

from .imaging import ImageRejected, InspectedImage, inspect_image

# Files that operating systems and archivers leave behind; never images, never worth an error line.
IGNORED_NAMES = frozenset({"Thumbs.db", "desktop.ini"})
# A single member may be compressed this much before its ratio counts as a bomb: tiny files of one colour
# compress absurdly well and are harmless.
ZIP_RATIO_MIN_BYTES = 1024 * 1024
READ_CHUNK_BYTES = 1024 * 1024
NAME_MAX_LENGTH = 1024


@dataclass(frozen=True)
class ImportLimits:
    max_image_pixels: int
    max_file_bytes: int
    max_zip_members: int
    max_zip_uncompressed_bytes: int
    max_zip_ratio: int
    thumbnail_size: int

    @classmethod
    def from_settings(cls) -> "ImportLimits":
        from django.conf import settings

        limits = settings.AESP_IMPORT
        return cls(
            max_image_pixels=limits["MAX_IMAGE_PIXELS"],
            max_file_bytes=limits["MAX_FILE_BYTES"],
            max_zip_members=limits["MAX_ZIP_MEMBERS"],
            max_zip_uncompressed_bytes=limits["MAX_ZIP_UNCOMPRESSED_BYTES"],
            max_zip_ratio=limits["MAX_ZIP_RATIO"],
            thumbnail_size=limits["THUMBNAIL_SIZE"],
        )


@dataclass(frozen=True)
class FileSource:
    """How to read one item's bytes: a server file, a zip member, or a file in Django's storage."""

    kind: str  # "path" | "zip" | "storage"
    location: str  # absolute path, or storage key (for "storage", and for "zip" when `in_storage`)
    member: str = ""  # the zip member name
    in_storage: bool = False  # for "zip": the archive is an uploaded file in Django's storage


@dataclass
class PlannedItem:
    name: str
    message: str = ""  # non-empty: refused at planning, recorded as an error
    label: dict[str, Any] | None = None


@dataclass
class HumanBeautyPart:
    folder_name: str  # DIR_58K or DIR_50K
    path: Path


@dataclass
class ZipSummary:
    members: int
    declared_bytes: int
    archive_bytes: int
    items: list[PlannedItem] = field(default_factory=list)


# --- server paths --------------------------------------------------------------------------------------------


def allowed_roots() -> list[Path]:
    from django.conf import settings

    return [Path(root).resolve() for root in settings.AESP_IMPORT["ALLOWED_ROOTS"]]


def resolve_import_path(raw_path: str, *, expect: str) -> Path:
    """Resolve a user-given server path (symlinks too) and refuse anything outside the allowed roots.

    `expect` is "dir" or "file". Relative paths are taken relative to the first allowed root.
    """
    text = (raw_path or "").strip()
    if not text:
        raise ServiceError("A server path is required for this kind of import.", code="path_required")
    if "\x00" in text:
        raise ServiceError("The path contains a NUL byte.", code="path_invalid")
    roots = allowed_roots()
    if not roots:
        raise ServiceError("Server-side imports are disabled (no import roots are configured).", code="path_forbidden")
    candidate = Path(text)
    if not candidate.is_absolute():
        candidate = roots[0] / candidate
    try:
        resolved = candidate.resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        # Say the same for "outside" and "missing" paths below the roots only; outside ones are refused first.
        resolved = candidate.resolve(strict=False)
        if not _inside_any(resolved, roots):
            raise _outside_roots(text, roots) from None
        raise ServiceError(f"The path {text!r} does not exist.", code="path_not_found") from None
    except (OSError, RuntimeError) as exc:  # symlink loops, permission problems
        raise ServiceError(f"The path {text!r} cannot be resolved: {exc}", code="path_invalid") from None
    if not _inside_any(resolved, roots):
        raise _outside_roots(text, roots)
    if expect == "dir" and not resolved.is_dir():
        raise ServiceError(f"The path {text!r} is not a folder.", code="path_not_dir")
    if expect == "file" and not resolved.is_file():
        raise ServiceError(f"The path {text!r} is not a file.", code="path_not_file")
    return resolved


def _inside_any(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


class LinkRefused(OSError):
    """A server file that is a symbolic link, or that resolves outside the import roots, when it is opened."""


def open_server_file(path: str | Path, *, roots: list[Path] | None = None):
    """Open a file below the import roots for reading, refusing links when it is OPENED, not only when the import
    was planned: a file swapped for a link in between would otherwise be read from wherever the link points.

    The last component is opened with O_NOFOLLOW; a link in a parent folder is caught by asking the kernel where
    the open descriptor really is. Returns a binary file object; raises LinkRefused, or OSError as open() does."""
    roots = allowed_roots() if roots is None else roots
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LinkRefused(errno.ELOOP, "symbolic link refused (links are not followed)") from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise LinkRefused(errno.EINVAL, "not a regular file")
        where = Path(f"/proc/self/fd/{descriptor}")
        real = Path(os.readlink(where)) if where.is_symlink() else Path(path).resolve()
        if not _inside_any(real, roots):
            raise LinkRefused(errno.EXDEV, "the file links outside the allowed import folders")
    except BaseException:
        os.close(descriptor)
        raise
    return os.fdopen(descriptor, "rb")


def _outside_roots(text: str, roots: list[Path]) -> ServiceError:
    listed = ", ".join(str(root) for root in roots)
    return ServiceError(
        f"The path {text!r} is outside the allowed import folders ({listed}); '..' and symbolic links that lead "
        f"out of them are refused.",
        code="path_forbidden",
    )


def plan_folder(root: Path) -> list[PlannedItem]:
    """Every regular file below `root` (sorted, hidden ones skipped); symbolic links are refused, not followed."""
    items: list[PlannedItem] = []
    for directory, dir_names, file_names in os.walk(root, followlinks=False):
        dir_names[:] = sorted(d for d in dir_names if not d.startswith(".") and d != "__MACOSX")
        for file_name in sorted(file_names):
            if file_name.startswith(".") or file_name in IGNORED_NAMES:
                continue
            path = Path(directory, file_name)
            name = _item_name(path.relative_to(root).as_posix())
            try:
                mode = path.lstat().st_mode
            except OSError as exc:
                items.append(PlannedItem(name=name, message=f"cannot read: {exc.strerror or exc}"))
                continue
            if stat.S_ISLNK(mode):
                items.append(PlannedItem(name=name, message="symbolic link refused (links are not followed)"))
            elif stat.S_ISREG(mode):
                items.append(PlannedItem(name=name))
    return items


def _item_name(name: str) -> str:
    return name if len(name) <= NAME_MAX_LENGTH else name[: NAME_MAX_LENGTH - 1] + "…"


# --- zips ----------------------------------------------------------------------------------------------------


def plan_zip(archive: zipfile.ZipFile, *, archive_bytes: int, limits: ImportLimits) -> ZipSummary:
    """Check a zip's central directory. Archive-wide problems raise ServiceError (the request is refused);
    members that must not be read become refused PlannedItems. Nothing is extracted to disk, ever."""
    infos = archive.infolist()
    if len(infos) > limits.max_zip_members:
        raise ServiceError(
            f"The zip has {len(infos):,} members; the limit is {limits.max_zip_members:,}.", code="zip_too_many_members"
        )
    declared = sum(info.file_size for info in infos)
    if declared > limits.max_zip_uncompressed_bytes:
        raise ServiceError(
            f"Zip bomb refused: its members declare {declared:,} bytes uncompressed; the limit is "
            f"{limits.max_zip_uncompressed_bytes:,}.",
            code="zip_bomb",
        )
    if archive_bytes and declared > ZIP_RATIO_MIN_BYTES and declared / archive_bytes > limits.max_zip_ratio:
        raise ServiceError(
            f"Zip bomb refused: {declared:,} bytes uncompressed from a {archive_bytes:,}-byte archive is a ratio of "
            f"{declared / archive_bytes:,.0f}; the limit is {limits.max_zip_ratio}.",
            code="zip_bomb",
        )
    summary = ZipSummary(members=len(infos), declared_bytes=declared, archive_bytes=archive_bytes)
    seen: set[str] = set()
    for info in infos:
        if info.is_dir() or _zip_member_ignored(info.filename):
            continue
        name = _item_name(info.filename)
        if name in seen:
            continue  # a second member of the same name: UNIQUE(job, name) keeps the first
        seen.add(name)
        summary.items.append(PlannedItem(name=name, message=zip_member_refusal(info, limits)))
    return summary


def _zip_member_ignored(name: str) -> bool:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return bool(parts) and (parts[0] == "__MACOSX" or parts[-1].startswith(".") or parts[-1] in IGNORED_NAMES)


def zip_member_refusal(info: zipfile.ZipInfo, limits: ImportLimits) -> str:
    """Why a member must not be read ("" if it may be)."""
    name = info.filename
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        return "unsafe path refused: absolute paths are not allowed in a zip"
    if ".." in PurePosixPath(normalised).parts:
        return "unsafe path refused: '..' is not allowed in a zip member name"
    if "\x00" in name:
        return "unsafe path refused: NUL byte in the member name"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link refused"
    if info.flag_bits & 0x1:
        return "encrypted zip members are not supported"
    if info.file_size > limits.max_file_bytes:
        return f"file is larger than the limit: {info.file_size:,} bytes declared, limit {limits.max_file_bytes:,}"
    if info.file_size > ZIP_RATIO_MIN_BYTES and info.file_size / max(info.compress_size, 1) > limits.max_zip_ratio:
        return (
            f"zip bomb refused: {info.file_size:,} bytes from {info.compress_size:,} compressed is a ratio over "
            f"{limits.max_zip_ratio}"
        )
    return ""


def open_zip(source: FileSource) -> zipfile.ZipFile:
    """Open the archive of a zip source (an uploaded one from Django's storage, or a server file)."""
    try:
        if source.in_storage:
            from aesplatform.common.objectstore import local_copy

            # a local file (the stored file itself, or this host's cached copy): zipfile seeks all over it, and an
            # object store's file object would hold the whole archive in memory
            return zipfile.ZipFile(open(local_copy(source.location), "rb"))
        return zipfile.ZipFile(open_server_file(source.location))
    except zipfile.BadZipFile as exc:
        raise ServiceError(f"Not a valid zip file: {exc}", code="zip_invalid") from None
    except OSError as exc:
        raise ServiceError(f"The zip cannot be read: {exc.strerror or exc}", code="zip_unreadable") from None


def read_zip_member(archive: zipfile.ZipFile, member: str, limits: ImportLimits) -> bytes:
    """A member's bytes, counting while inflating: declared sizes can lie, so the count is what limits."""
    try:
        info = archive.getinfo(member)
    except KeyError:
        raise ImageRejected("member not found in the zip") from None
    refusal = zip_member_refusal(info, limits)
    if refusal:
        raise ImageRejected(refusal)
    allowed = min(info.file_size, limits.max_file_bytes)
    buffer = bytearray()
    try:
        with archive.open(info) as handle:
            while chunk := handle.read(READ_CHUNK_BYTES):
                buffer += chunk
                if len(buffer) > allowed:
                    raise ImageRejected(
                        f"zip bomb refused: the member inflates past its declared {info.file_size:,} bytes"
                    )
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:  # zlib.error is an Exception subclass too
        raise ImageRejected(f"corrupt zip member: {exc}") from None
    except Exception as exc:  # noqa: BLE001 -- zlib.error and friends: a broken member, not a broken job
        raise ImageRejected(f"corrupt zip member: {exc}") from None
    return bytes(buffer)


# --- HumanBeauty folders -------------------------------------------------------------------------------------


def humanbeauty_parts(root: Path) -> list[HumanBeautyPart]:
    """The HumanBeauty-58K / -50K folders of a data set root (or `root` itself when it is one of them)."""
    if root.name in HUMANBEAUTY_DIRS and (root / LABEL_FILE).is_file():
        return [HumanBeautyPart(root.name, root)]
    return [HumanBeautyPart(name, root / name) for name in HUMANBEAUTY_DIRS if (root / name / LABEL_FILE).is_file()]


def humanbeauty_base(root: Path) -> Path:
    """The folder item names are relative to (`<base>/HumanBeauty-58K/images/<file>`)."""
    return root.parent if root.name in HUMANBEAUTY_DIRS and (root / LABEL_FILE).is_file() else root


def require_humanbeauty_layout(root: Path) -> list[HumanBeautyPart]:
    parts = humanbeauty_parts(root)
    if not parts:
        raise ServiceError(
            f"No HumanBeauty label file found: expected {DIR_58K}/{LABEL_FILE} and/or {DIR_50K}/{LABEL_FILE} in "
            f"the folder (or the folder to be one of {DIR_58K}, {DIR_50K}).",
            code="humanbeauty_layout",
        )
    return parts


def plan_humanbeauty(root: Path) -> list[PlannedItem]:
    """One item per label.jsonl record; malformed records, bad scores and missing images are refused here, each
    naming its line."""
    parts = require_humanbeauty_layout(root)
    roots = allowed_roots()
    items: list[PlannedItem] = []
    for part in parts:
        items.extend(_plan_label_file(part, roots))
    return items


def _plan_label_file(part: HumanBeautyPart, roots: list[Path]) -> Iterator[PlannedItem]:
    label_path = part.path / LABEL_FILE
    images_dir = (part.path / IMAGES_DIR).resolve()
    first_line_of: dict[str, int] = {}
    try:
        handle = open_server_file(label_path, roots=roots)
    except OSError as exc:
        raise ServiceError(f"{part.folder_name}/{LABEL_FILE} cannot be read: {exc.strerror or exc}",
                           code="humanbeauty_layout") from None
    with handle:
        for line_number, record in formats.iter_jsonl(handle):
            line_item = f"{part.folder_name}/{LABEL_FILE}:{line_number}"
            if isinstance(record, formats.MalformedLine):
                yield PlannedItem(name=line_item,
                                  message=f"{LABEL_FILE} line {line_number}: not valid JSON ({record.error})")
                continue
            problem = formats.label_record_problem(record, is_expert=part.folder_name == DIR_50K)
            if problem:
                yield PlannedItem(name=line_item, message=f"{LABEL_FILE} line {line_number}: {problem}")
                continue
            image_name = record["image_name"]
            name = _item_name(f"{part.folder_name}/{IMAGES_DIR}/{image_name}")
            if image_name in first_line_of:
                yield PlannedItem(
                    name=line_item,
                    message=f"{LABEL_FILE} line {line_number}: {image_name!r} was already labelled on line "
                    f"{first_line_of[image_name]}",
                )
                continue
            first_line_of[image_name] = line_number
            label = {**record, "line": line_number}
            image_path = images_dir / image_name
            if image_path.is_symlink():
                yield PlannedItem(
                    name=name, label=label,
                    message=f"{LABEL_FILE} line {line_number}: images/{image_name} is a symbolic link, refused (links "
                    "are not followed; export with the images copied or hard-linked)",
                )
            elif not image_path.is_file():
                yield PlannedItem(
                    name=name, label=label,
                    message=f"{LABEL_FILE} line {line_number}: image file not found: images/{image_name}",
                )
            elif not _inside_any(image_path.resolve(), roots):
                yield PlannedItem(
                    name=name, label=label,
                    message=f"{LABEL_FILE} line {line_number}: image file links outside the allowed import folders",
                )
            else:
                yield PlannedItem(name=name, label=label)


def label_scores(label: dict[str, Any], *, item_name: str) -> dict[int, float]:
    """The consensus a HumanBeauty record stands for: {dimension index: score} (58K: the overall one only)."""
    from model_core.standard import OVERALL_INDEX

    scores = formats.label_scores(label, is_expert=item_name.startswith(f"{DIR_50K}/"))
    return dict(enumerate(scores)) if isinstance(scores, list) else {OVERALL_INDEX: scores}


# --- reading (process pool side) -----------------------------------------------------------------------------

class OpenArchive:
    """The zip archive last read from, kept open for the next member: reopening a large zip's central directory
    for every member is slow. Owned by whoever reads an import's files in one process (the import run, or one
    process of its pool), which closes it when done (a context manager); never shared between processes or jobs.
    """

    def __init__(self) -> None:
        self._source: FileSource | None = None
        self._archive: zipfile.ZipFile | None = None

    def archive_for(self, source: FileSource) -> zipfile.ZipFile:
        key = FileSource("zip", source.location, in_storage=source.in_storage)
        if self._archive is None or self._source != key:
            self.close()
            self._archive = open_zip(key)
            self._source = key
        return self._archive

    def close(self) -> None:
        if self._archive is not None:
            self._archive.close()
        self._source, self._archive = None, None

    def __enter__(self) -> OpenArchive:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def read_source(source: FileSource, limits: ImportLimits, *, archives: OpenArchive) -> bytes:
    from aesplatform.common.objectstore import StorageUnavailable, storage_guard

    if source.kind == "zip":
        try:
            archive = archives.archive_for(source)
        except StorageUnavailable:
            raise  # not the file's fault: the job stops and is retried
        except ServiceError as exc:
            raise ImageRejected(exc.message) from None
        return read_zip_member(archive, source.member, limits)
    try:
        if source.kind == "storage":
            from django.core.files.storage import default_storage

            with storage_guard(f"reading the upload {source.location}"):
                with default_storage.open(source.location, "rb") as handle:
                    data = handle.read(limits.max_file_bytes + 1)
        else:
            with open_server_file(source.location) as handle:
                data = handle.read(limits.max_file_bytes + 1)
    except FileNotFoundError:
        raise ImageRejected("file not found (it was moved or deleted after the import started)") from None
    except LinkRefused as exc:
        raise ImageRejected(exc.strerror) from None
    except OSError as exc:
        raise ImageRejected(f"cannot read file: {exc.strerror or exc}") from None
    if len(data) > limits.max_file_bytes:
        raise ImageRejected(f"file is larger than the limit of {limits.max_file_bytes:,} bytes")
    return data


def inspect_source(source: FileSource, limits: ImportLimits, *, archives: OpenArchive) -> InspectedImage | str:
    """Read and inspect one file (`archives`: the reader's open zip, see OpenArchive). Returns the result, or the
    reason it was rejected (a str): the pool hands values back, and an exception object's pickling is not worth
    depending on."""
    try:
        data = read_source(source, limits, archives=archives)
        return inspect_image(data, max_pixels=limits.max_image_pixels, thumbnail_size=limits.thumbnail_size)
    except ImageRejected as exc:
        return str(exc)


def zip_archive_size(source: FileSource) -> int:
    if source.in_storage:
        from django.core.files.storage import default_storage

        from aesplatform.common.objectstore import storage_guard

        with storage_guard(f"reading the size of {source.location}"):
            return default_storage.size(source.location)
    return os.path.getsize(source.location)
