"""A plain, sequential tar writer: the oracle the streamed download archive (datasets.writers.iter_archive) is
checked against. It was the export job's archive writer before archives were streamed; only tests use it now."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Sequence

from aesplatform.datasets.writers import ExportWriteError, FileEntry, tar_header

_BUFFER = 1 << 20


def write_archive(root: Path, files: Sequence[FileEntry], archive: Path, *, prefix: str) -> int:
    """An uncompressed tar of the files under `root`, named `prefix/<path>`: entries sorted by path, each folder
    before its first file, fixed mtime/owner, symlinks followed. Returns its size."""
    size = 0
    with open(archive, "wb", buffering=_BUFFER) as out:
        def emit(data: bytes) -> None:
            nonlocal size
            out.write(data)
            size += len(data)

        folders_written: set[str] = set()
        for entry in sorted(files, key=lambda e: e.path):
            parents = entry.path.split("/")[:-1]
            for depth in range(len(parents) + 1):  # every folder above the file, outermost first, once
                folder = "/".join([prefix, *parents[:depth]]) + "/"
                if folder not in folders_written:
                    folders_written.add(folder)
                    emit(tar_header(folder, 0, directory=True))
            emit(tar_header(f"{prefix}/{entry.path}", entry.size))
            data = (root / entry.path).read_bytes()
            if len(data) != entry.size:
                raise ExportWriteError(f"{entry.path} changed size while being archived")
            emit(data)
            if entry.size % tarfile.BLOCKSIZE:
                emit(tarfile.NUL * (tarfile.BLOCKSIZE - entry.size % tarfile.BLOCKSIZE))
        emit(tarfile.NUL * (tarfile.BLOCKSIZE * 2))
        remainder = size % tarfile.RECORDSIZE
        if remainder:
            emit(tarfile.NUL * (tarfile.RECORDSIZE - remainder))
    return size
