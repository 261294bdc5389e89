"""Server files are opened without following links (the check happens when a file is read, not only when the
import was planned); multi-picture JPEGs import as their first picture; uploads leave no staging folder."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

from aesplatform.catalog import services
from aesplatform.catalog.models import Image, ImportJob
from aesplatform.catalog.sources import LinkRefused, open_server_file
from tests import factories
from tests.support.images import jpeg_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def curator(db):
    return factories.curator()


def mpo_bytes() -> bytes:
    left = PILImage.new("RGB", (48, 32), (200, 40, 40))
    right = PILImage.new("RGB", (48, 32), (40, 40, 200))
    buffer = io.BytesIO()
    left.save(buffer, "MPO", save_all=True, append_images=[right])
    return buffer.getvalue()


def test_a_file_swapped_for_a_link_after_planning_is_not_read(curator, import_root, tmp_path):
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(jpeg_bytes(seed=7))
    folder = import_root / "swap"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(jpeg_bytes(seed=8))
    job = services.import_job_create(created_by=curator, kind="folder", path=str(folder), enqueue=False)
    (folder / "a.jpg").unlink()
    os.symlink(secret, folder / "a.jpg")  # planned as a regular file; a link when the worker reads it
    job = services.import_job_run(job_id=job.pk)
    item = job.items.get()
    assert (item.outcome, item.message) == ("error", "symbolic link refused (links are not followed)")
    assert Image.objects.count() == 0


def test_a_link_in_a_parent_folder_that_leaves_the_roots_is_refused_when_opened(import_root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.jpg").write_bytes(b"data")
    os.symlink(outside, import_root / "door")
    with pytest.raises(LinkRefused, match="outside the allowed import folders"):
        open_server_file(import_root / "door" / "x.jpg")
    (import_root / "inside.jpg").write_bytes(b"data")
    with open_server_file(import_root / "inside.jpg") as handle:
        assert handle.read() == b"data"


def _humanbeauty_root(import_root: Path) -> Path:
    root = import_root / "hb"
    (root / "HumanBeauty-58K" / "images").mkdir(parents=True)
    (root / "HumanBeauty-58K" / "images" / "p1.jpg").write_bytes(jpeg_bytes(seed=41))
    return root


def test_a_humanbeauty_label_file_that_is_a_link_is_refused(curator, import_root, tmp_path):
    root = _humanbeauty_root(import_root)
    outside = tmp_path / "label.jsonl"
    outside.write_text(json.dumps({"image_name": "p1.jpg", "source": "s", "score": 0.5}) + "\n")
    os.symlink(outside, root / "HumanBeauty-58K" / "label.jsonl")
    job = services.import_job_create(created_by=curator, kind="humanbeauty", path=str(root), enqueue=False)
    job = services.import_job_run(job_id=job.pk)
    assert job.state == "failed" and "symbolic link refused" in job.error
    assert Image.objects.count() == 0


def test_a_humanbeauty_image_that_is_a_link_is_refused_at_planning(curator, import_root):
    root = _humanbeauty_root(import_root)
    images = root / "HumanBeauty-58K" / "images"
    os.symlink(images / "p1.jpg", images / "p2.jpg")  # even inside the roots
    lines = [json.dumps({"image_name": name, "source": "s", "score": 0.5}) for name in ("p1.jpg", "p2.jpg")]
    (root / "HumanBeauty-58K" / "label.jsonl").write_text("\n".join(lines) + "\n")
    job = services.import_job_create(created_by=curator, kind="humanbeauty", path=str(root), enqueue=False)
    job = services.import_job_run(job_id=job.pk)
    messages = dict(job.items.values_list("name", "message"))
    assert "symbolic link" in messages["HumanBeauty-58K/images/p2.jpg"]
    assert job.imported_count == 1


def test_a_multi_picture_jpeg_imports_as_its_first_picture(curator, import_root):
    data = mpo_bytes()
    assert PILImage.open(io.BytesIO(data)).format == "MPO"
    folder = import_root / "mpo"
    folder.mkdir()
    (folder / "stereo.jpg").write_bytes(data)
    job = services.import_job_create(created_by=curator, kind="folder", path=str(folder), enqueue=False)
    job = services.import_job_run(job_id=job.pk)
    assert job.imported_count == 1, list(job.items.values_list("message", flat=True))
    image = Image.objects.get()
    assert (image.format, image.width, image.height) == ("JPEG", 48, 32)
    with default_storage.open(image.thumbnail.name) as handle:
        picture = PILImage.open(handle)
        picture.load()
        red, _, blue = picture.convert("RGB").getpixel((picture.width // 2, picture.height // 2))
    assert red > 150 and blue < 100  # the first (red) picture, not the second (blue) one


def test_an_upload_import_leaves_no_staging_folder(curator, import_root):
    files = [SimpleUploadedFile("a.jpg", jpeg_bytes(seed=51)), SimpleUploadedFile("b.jpg", jpeg_bytes(seed=52))]
    job = services.import_job_create(created_by=curator, kind="upload", files=files, enqueue=False)
    staging = Path(default_storage.path(f"{services.STAGING_PREFIX}/{job.pk}"))
    assert staging.is_dir()
    services.import_job_run(job_id=job.pk)
    assert not staging.exists()
    assert ImportJob.objects.get().imported_count == 2
