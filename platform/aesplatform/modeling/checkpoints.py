"""Trained checkpoints on the object store: uploaded by the training worker, fetched whole by any worker.

On local storage a model version's checkpoint is the folder `checkpoint_path` on this machine. On an object store
(AESP_STORAGE_BACKEND=s3) the training worker uploads the final checkpoint folder under `models/job-<id>/` (its
files, then the manifest of their sizes and sha256 last: common.object_transfer.tree_upload), and the model
version records that prefix (`checkpoint_key`). A worker on any host that scores or evaluates with it fetches the
folder into its bounded storage cache as one unit (common.objectstore.LocalCache.tree: a temporary folder, every
file checked, one rename; evicted as a whole) and loads it from there: no folder is shared between hosts.

Checkpoints registered by path (a released HumanAesExpert folder, or a converted one) stay path-based: every
worker that scores with them must have that folder at that path (docs/storage-exports.md).
"""

from __future__ import annotations

from pathlib import Path

from aesplatform.common.exceptions import ServiceError
from aesplatform.common.object_transfer import object_size, tree_upload
from aesplatform.common.objectstore import TREE_MANIFEST, storage_cache, storage_is_local

from .models import ModelVersion, TrainingJob


def checkpoint_prefix(job: TrainingJob) -> str:
    return f"models/job-{job.pk}/"


def job_final_checkpoint(job: TrainingJob) -> Path:
    return Path(job.output_dir) / "run" / "final"


def checkpoint_upload(*, job: TrainingJob) -> str:
    """Upload a finished training job's final checkpoint folder (the training worker); returns its prefix. A
    second call replaces the first's objects (the same files)."""
    final = job_final_checkpoint(job)
    if not final.is_dir():
        raise ServiceError(f"Training job {job.pk}: its final checkpoint {final} is not on this machine.",
                           code="checkpoint_missing")
    prefix = checkpoint_prefix(job)
    tree_upload(final, prefix)
    return prefix


def checkpoint_stored(prefix: str) -> bool:
    """Whether the whole checkpoint is on the store (its manifest, uploaded last, is there)."""
    try:
        object_size(f"{prefix}{TREE_MANIFEST}")
    except FileNotFoundError:
        return False
    return True


def checkpoint_dir(version: ModelVersion) -> str:
    """A folder on this machine holding the version's checkpoint: the cached copy of the stored one, or the
    registered path. StorageUnavailable while the store does not answer (the job fails and can be resumed)."""
    if version.checkpoint_key and not storage_is_local():
        try:
            return str(storage_cache().tree(version.checkpoint_key))
        except FileNotFoundError:
            raise ServiceError(f"{version.name}: its checkpoint {version.checkpoint_key} is missing from the object "
                               "store.", code="checkpoint_missing") from None
    return version.checkpoint_path


def checkpoint_available(version: ModelVersion) -> bool:
    """Whether the version's checkpoint can be loaded (stored whole, or its folder on this machine)."""
    if version.checkpoint_key and not storage_is_local():
        return checkpoint_stored(version.checkpoint_key)
    return Path(version.checkpoint_path).is_dir()


def config_localized(config: dict) -> dict:
    """A job config whose starting checkpoint (init_model_version) is stored: its init_checkpoint pointed at this
    host's cached copy (the path resolved when the job was created is the creating host's)."""
    version_id = config.get("init_model_version")
    if not version_id or storage_is_local():
        return config
    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None or not version.checkpoint_key:
        return config  # registered by path: the same folder on every host
    return {**config, "train": {**config["train"], "init_checkpoint": checkpoint_dir(version)}}
