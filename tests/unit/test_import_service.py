"""Import jobs through the services, on the real database: folders, zips, uploads, HumanBeauty folders, bad
input of every kind, duplicates, server paths outside the roots, and resuming an interrupted job."""

from __future__ import annotations

import io
import json
import os
import stat
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

from aesplatform.annotation.models import Consensus
from aesplatform.catalog import services
from aesplatform.catalog.models import Image, ImportItem, ImportJob
from aesplatform.common.exceptions import ServiceError
from model_core.standard import NUM_DIMENSIONS, OVERALL_INDEX
from tests import factories
from tests.support.images import jpeg_bytes, png_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def curator(db):
    return factories.curator()


def run_folder(curator, folder: Path, **kwargs) -> ImportJob:
    job = services.import_job_create(created_by=curator, kind="folder", path=str(folder), enqueue=False)
    return services.import_job_run(job_id=job.pk, **kwargs)


def outcomes(job: ImportJob) -> dict[str, tuple[str, str]]:
    return {item.name: (item.outcome, item.message) for item in job.items.all()}


def test_a_folder_imports_each_image_with_its_files_stored_content_addressed(curator, import_root):
    folder = import_root / "shoot"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(jpeg_bytes(seed=1))
    (folder / "sub").mkdir()
    (folder / "sub" / "b.png").write_bytes(png_bytes(PILImage.new("RGB", (90, 60), "blue")))
    job = run_folder(curator, folder)
    assert job.state == "succeeded"
    assert (job.total, job.processed, job.imported_count, job.error_count) == (2, 2, 2, 0)
    image = Image.objects.get(original_name="b.png")
    assert image.file.name == f"images/{image.sha256[:2]}/{image.sha256}.png"
    assert image.thumbnail.name == f"thumbs/{image.sha256[:2]}/{image.sha256}.jpg"
    assert default_storage.exists(image.file.name) and default_storage.exists(image.thumbnail.name)
    assert (image.width, image.height, image.format, image.source) == (90, 60, "PNG", "shoot")
    assert outcomes(job)["sub/b.png"][0] == "imported"


def test_bad_files_each_get_a_clear_error_and_leave_nothing_stored(curator, import_root):
    folder = import_root / "bad"
    folder.mkdir()
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("this is text, not a JPEG\n")
    (folder / "half.jpg").write_bytes(jpeg_bytes(300, 200)[:1500])
    bomb = PILImage.new("L", (3000, 3000))
    (folder / "bomb.png").write_bytes(png_bytes(bomb))
    gif = io.BytesIO()
    PILImage.new("RGB", (10, 10)).save(gif, "GIF")
    (folder / "anim.gif").write_bytes(gif.getvalue())
    settings.AESP_IMPORT["MAX_IMAGE_PIXELS"] = 4_000_000
    job = run_folder(curator, folder)
    report = outcomes(job)
    assert job.state == "succeeded" and job.error_count == 5 and job.imported_count == 0
    assert report["empty.jpg"] == ("error", "empty file (0 bytes)")
    assert "not an image" in report["notes.jpg"][1]
    assert "cannot decode" in report["half.jpg"][1]
    assert "decompression bomb" in report["bomb.png"][1]
    assert "unsupported image format GIF" in report["anim.gif"][1]
    assert Image.objects.count() == 0
    assert not default_storage.exists("images") or default_storage.listdir("images") == ([], [])


def test_cmyk_16_bit_and_palette_images_import(curator, import_root):
    import numpy as np

    folder = import_root / "modes"
    folder.mkdir()
    (folder / "cmyk.jpg").write_bytes(jpeg_bytes(mode="CMYK"))
    (folder / "deep.png").write_bytes(png_bytes(PILImage.fromarray(np.full((40, 50), 40000, dtype=np.uint16))))
    palette = PILImage.new("P", (30, 30), 1)
    palette.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    (folder / "palette.png").write_bytes(png_bytes(palette, transparency=0))
    job = run_folder(curator, folder)
    assert job.imported_count == 3, outcomes(job)
    modes = dict(Image.objects.values_list("original_name", "mode"))
    assert modes["cmyk.jpg"] == "CMYK" and modes["deep.png"].startswith("I") and modes["palette.png"] == "P"
    stored = default_storage.open(Image.objects.get(original_name="cmyk.jpg").file.name).read()
    assert stored == (folder / "cmyk.jpg").read_bytes()  # the original is kept as it was


def test_the_same_file_twice_is_a_duplicate_within_a_job_and_across_jobs(curator, import_root):
    folder = import_root / "dups"
    folder.mkdir()
    data = jpeg_bytes(seed=7)
    (folder / "one.jpg").write_bytes(data)
    (folder / "copy-of-one.jpg").write_bytes(data)
    first = run_folder(curator, folder)
    assert (first.imported_count, first.duplicate_count) == (1, 1)
    image = Image.objects.get()
    duplicate = first.items.get(outcome="duplicate")
    assert duplicate.image == image and f"duplicate of image {image.pk}" in duplicate.message

    again = run_folder(curator, folder)
    assert (again.imported_count, again.duplicate_count) == (0, 2)
    assert Image.objects.count() == 1
    assert set(again.items.values_list("image", flat=True)) == {image.pk}


def test_the_process_pool_path_imports_a_larger_folder_and_finds_duplicates(curator, import_root, monkeypatch):
    monkeypatch.setattr(services, "POOL_MIN_ITEMS", 4)
    monkeypatch.setattr(services, "CHUNK_SIZE", 8)
    folder = import_root / "many"
    folder.mkdir()
    for index in range(20):
        (folder / f"{index:02d}.jpg").write_bytes(jpeg_bytes(64, 48, seed=index % 15))
    (folder / "zz-broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    job = run_folder(curator, folder, processes=2)
    assert (job.total, job.imported_count, job.duplicate_count, job.error_count) == (21, 15, 5, 1)
    assert Image.objects.count() == 15


def test_symbolic_links_inside_a_folder_are_refused_not_followed(curator, import_root, tmp_path):
    secret = tmp_path / "outside.jpg"
    secret.write_bytes(jpeg_bytes(seed=3))
    folder = import_root / "links"
    folder.mkdir()
    os.symlink(secret, folder / "link.jpg")
    job = run_folder(curator, folder)
    assert outcomes(job)["link.jpg"] == ("error", "symbolic link refused (links are not followed)")
    assert Image.objects.count() == 0


@pytest.mark.parametrize("path", ["../", "/etc", "../../../../etc/passwd", "nope/../../x"])
def test_server_paths_outside_the_allowed_roots_are_refused(curator, import_root, path):
    with pytest.raises(ServiceError) as caught:
        services.import_job_create(created_by=curator, kind="folder", path=path, enqueue=False)
    assert caught.value.status_code == 400
    assert ImportJob.objects.count() == 0


def test_a_symlink_out_of_the_roots_is_refused_as_a_server_path(curator, import_root, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    os.symlink(outside, import_root / "sneaky")
    with pytest.raises(ServiceError, match="outside the allowed import folders"):
        services.import_job_create(created_by=curator, kind="folder", path="sneaky", enqueue=False)


def test_a_missing_server_path_inside_the_roots_is_a_clear_400(curator, import_root):
    with pytest.raises(ServiceError, match="does not exist"):
        services.import_job_create(created_by=curator, kind="folder", path=str(import_root / "nope"), enqueue=False)


# --- zips ----------------------------------------------------------------------------------------------------


def _zip_with(entries) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for entry in entries:
            if isinstance(entry, zipfile.ZipInfo):
                archive.writestr(entry, b"/etc/passwd")
            else:
                archive.writestr(*entry)
    return buffer.getvalue()


def test_a_zip_imports_its_images_and_refuses_unsafe_members(curator, import_root, tmp_path):
    link = zipfile.ZipInfo("link.jpg")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    data = _zip_with([
        ("photos/a.jpg", jpeg_bytes(seed=11)),
        ("../escape.jpg", jpeg_bytes(seed=12)),
        ("/abs.jpg", jpeg_bytes(seed=13)),
        link,
        ("__MACOSX/._a.jpg", b"junk"),
    ])
    archive = import_root / "set.zip"
    archive.write_bytes(data)
    job = services.import_job_create(created_by=curator, kind="zip", path=str(archive), enqueue=False)
    job = services.import_job_run(job_id=job.pk)
    report = outcomes(job)
    assert report["photos/a.jpg"][0] == "imported"
    assert "'..'" in report["../escape.jpg"][1]
    assert "absolute" in report["/abs.jpg"][1]
    assert report["link.jpg"] == ("error", "symbolic link refused")
    assert "__MACOSX/._a.jpg" not in report
    assert Image.objects.count() == 1
    assert not (import_root.parent / "escape.jpg").exists() and not Path("/abs.jpg").exists()


def test_an_uploaded_zip_is_staged_imported_and_its_staging_removed(curator, import_root):
    upload = SimpleUploadedFile("holiday.zip", _zip_with([("x.jpg", jpeg_bytes(seed=21))]))
    job = services.import_job_create(created_by=curator, kind="zip", files=[upload], enqueue=False)
    assert job.source_name == "holiday" and default_storage.exists(f"imports/staging/{job.pk}/archive.zip")
    job = services.import_job_run(job_id=job.pk)
    assert job.imported_count == 1
    assert not default_storage.exists(f"imports/staging/{job.pk}/archive.zip")


def test_a_zip_bomb_by_declared_size_is_refused_with_a_400(curator, import_root, settings):
    settings.AESP_IMPORT = {**settings.AESP_IMPORT, "MAX_ZIP_UNCOMPRESSED_BYTES": 1_000_000}
    archive = import_root / "bomb.zip"
    archive.write_bytes(_zip_with([("zeros.bin", b"\0" * 2_000_000)]))
    with pytest.raises(ServiceError, match="Zip bomb refused") as caught:
        services.import_job_create(created_by=curator, kind="zip", path=str(archive), enqueue=False)
    assert caught.value.status_code == 400


def test_a_zip_bomb_by_ratio_is_refused(curator, import_root):
    archive = import_root / "ratio.zip"
    archive.write_bytes(_zip_with([("zeros.bmp", b"\0" * 5_000_000), ("ok.jpg", jpeg_bytes(seed=5))]))
    with pytest.raises(ServiceError, match="ratio"):
        services.import_job_create(created_by=curator, kind="zip", path=str(archive), enqueue=False)


def test_a_member_that_inflates_past_its_declared_size_is_stopped_while_reading(curator, import_root):
    # Forge the central directory: the member claims 2,000 bytes but inflates to 3 MB.
    payload = jpeg_bytes(seed=8) + b"\0" * 3_000_000
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("liar.jpg", payload)
    raw = bytearray(buffer.getvalue())
    import struct

    central = raw.rfind(b"PK\x01\x02")
    struct.pack_into("<I", raw, central + 24, 2000)  # uncompressed size in the central directory
    local = raw.find(b"PK\x03\x04")
    struct.pack_into("<I", raw, local + 22, 2000)
    (import_root / "liar.zip").write_bytes(bytes(raw))
    job = services.import_job_create(created_by=curator, kind="zip", path=str(import_root / "liar.zip"), enqueue=False)
    job = services.import_job_run(job_id=job.pk)
    outcome, message = outcomes(job)["liar.jpg"]
    assert outcome == "error" and ("zip bomb" in message or "corrupt zip member" in message)
    assert Image.objects.count() == 0


def test_not_a_zip_is_a_400(curator, import_root):
    (import_root / "fake.zip").write_text("not a zip")
    with pytest.raises(ServiceError, match="Not a valid zip"):
        services.import_job_create(created_by=curator, kind="zip", path=str(import_root / "fake.zip"), enqueue=False)


# --- uploads -------------------------------------------------------------------------------------------------


def test_uploaded_files_are_staged_then_imported_and_unstaged(curator, import_root):
    files = [SimpleUploadedFile("a.jpg", jpeg_bytes(seed=31)), SimpleUploadedFile("a.jpg", jpeg_bytes(seed=32)),
             SimpleUploadedFile("../../evil.jpg", b"")]
    job = services.import_job_create(created_by=curator, kind="upload", files=files, enqueue=False)
    names = list(job.items.order_by("id").values_list("name", flat=True))
    assert names == ["a.jpg", "a (2).jpg", "evil.jpg"]
    staged = list(job.items.values_list("staged_file", flat=True))
    assert all(default_storage.exists(key) for key in staged)
    job = services.import_job_run(job_id=job.pk)
    assert (job.imported_count, job.error_count) == (2, 1)
    assert not any(default_storage.exists(key) for key in staged)
    assert set(job.items.values_list("staged_file", flat=True)) == {""}


def test_an_upload_without_files_is_a_400(curator, import_root):
    with pytest.raises(ServiceError, match="at least one file"):
        services.import_job_create(created_by=curator, kind="upload", files=[], enqueue=False)


# --- HumanBeauty ---------------------------------------------------------------------------------------------


def _write_humanbeauty(root: Path) -> None:
    for name in ("HumanBeauty-58K", "HumanBeauty-50K"):
        (root / name / "images").mkdir(parents=True)
    (root / "HumanBeauty-58K/images/p1.jpg").write_bytes(jpeg_bytes(seed=41))
    (root / "HumanBeauty-58K/images/p2.jpg").write_bytes(jpeg_bytes(seed=42))
    (root / "HumanBeauty-58K/images/p3.jpg").write_bytes(jpeg_bytes(seed=43))
    (root / "HumanBeauty-50K/images/e1.jpg").write_bytes(jpeg_bytes(seed=44))
    (root / "HumanBeauty-50K/images/e2.jpg").write_bytes(jpeg_bytes(seed=45))
    lines_58k = [
        json.dumps({"image_name": "p1.jpg", "source": "FFHQ", "score": 0.73, "text_level": "good"}),
        "{not json",
        json.dumps({"image_name": "p2.jpg", "source": "FFHQ", "score": 1.5, "text_level": "excellent"}),
        json.dumps({"image_name": "missing.jpg", "source": "FFHQ", "score": 0.5, "text_level": "fair"}),
        json.dumps({"image_name": "../p3.jpg", "source": "FFHQ", "score": 0.5}),
        "",
        json.dumps({"image_name": "p3.jpg", "source": "CelebA", "score": 0.15, "text_level": "bad"}),
    ]
    (root / "HumanBeauty-58K/label.jsonl").write_text("\n".join(lines_58k) + "\n")
    scores = [round(0.05 + 0.07 * i, 2) for i in range(NUM_DIMENSIONS)]
    lines_50k = [
        json.dumps({"image_name": "e1.jpg", "source": "expert-set", "score": scores}),
        json.dumps({"image_name": "e2.jpg", "source": "expert-set", "score": scores[:11]}),
    ]
    (root / "HumanBeauty-50K/label.jsonl").write_text("\n".join(lines_50k) + "\n")


def test_a_humanbeauty_folder_stores_labels_as_imported_consensus(curator, import_root):
    root = import_root / "hb"
    _write_humanbeauty(root)
    job = services.import_job_create(created_by=curator, kind="humanbeauty", path=str(root), enqueue=False)
    job = services.import_job_run(job_id=job.pk)
    report = outcomes(job)
    assert job.state == "succeeded"
    assert job.imported_count == 3 and job.labels_count == 3

    p1 = Image.objects.get(original_name="p1.jpg")
    overall = Consensus.objects.get(image=p1)
    assert (overall.dimension, overall.score, overall.origin, overall.method, overall.label_source) == (
        OVERALL_INDEX, 0.73, "imported", "imported", "FFHQ")
    assert p1.source == "FFHQ"
    e1 = Image.objects.get(original_name="e1.jpg")
    expert = list(Consensus.objects.filter(image=e1).order_by("dimension").values_list("dimension", "score"))
    assert [d for d, _ in expert] == list(range(NUM_DIMENSIONS)) and expert[0][1] == 0.05

    # per-record errors, each naming its line
    assert report["HumanBeauty-58K/label.jsonl:2"][1].startswith("label.jsonl line 2: not valid JSON")
    assert (
        "line 3" in report["HumanBeauty-58K/label.jsonl:3"][1]
        and "[0, 1]" in report["HumanBeauty-58K/label.jsonl:3"][1]
    )
    assert report["HumanBeauty-58K/images/missing.jpg"] == (
        "error", "label.jsonl line 4: image file not found: images/missing.jpg")
    assert (
        "line 5" in report["HumanBeauty-58K/label.jsonl:5"][1]
        and "file name inside images/" in report["HumanBeauty-58K/label.jsonl:5"][1]
    )
    assert report["HumanBeauty-50K/label.jsonl:2"] == (
        "error", "label.jsonl line 2: expert scores must have 12 values, got 11")
    assert not Image.objects.filter(original_name__in=["p2.jpg", "e2.jpg"]).exists()


def test_reimporting_a_humanbeauty_folder_adds_no_consensus_twice(curator, import_root):
    root = import_root / "hb"
    _write_humanbeauty(root)
    for _ in range(2):
        job = services.import_job_create(created_by=curator, kind="humanbeauty", path=str(root), enqueue=False)
        job = services.import_job_run(job_id=job.pk)
    assert job.duplicate_count == 3 and job.imported_count == 0
    assert Consensus.objects.count() == 1 + 1 + NUM_DIMENSIONS


def test_a_folder_without_label_files_is_refused_as_humanbeauty(curator, import_root):
    (import_root / "plain").mkdir()
    with pytest.raises(ServiceError, match="No HumanBeauty label file"):
        services.import_job_create(created_by=curator, kind="humanbeauty", path="plain", enqueue=False)


# --- resuming ------------------------------------------------------------------------------------------------


def test_a_half_processed_job_resumes_with_only_its_pending_items(curator, import_root, monkeypatch):
    folder = import_root / "resume"
    folder.mkdir()
    for index in range(6):
        (folder / f"{index}.jpg").write_bytes(jpeg_bytes(48, 32, seed=100 + index))
    monkeypatch.setattr(services, "CHUNK_SIZE", 2)
    job = services.import_job_create(created_by=curator, kind="folder", path=str(folder), enqueue=False)
    calls = {"n": 0}
    real_store = services._store_chunk

    def crash_after_two_chunks(**kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("worker killed")
        return real_store(**kwargs)

    monkeypatch.setattr(services, "_store_chunk", crash_after_two_chunks)
    with pytest.raises(RuntimeError):
        services.import_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.state == "failed" and (job.processed, job.imported_count) == (4, 4)
    assert ImportItem.objects.filter(job=job, outcome="pending").count() == 2

    monkeypatch.setattr(services, "_store_chunk", real_store)
    services.import_job_resume(job=job)
    job = services.import_job_run(job_id=job.pk)
    assert job.state == "succeeded" and (job.total, job.processed, job.imported_count) == (6, 6, 6)
    assert Image.objects.count() == 6


def test_running_a_finished_job_again_changes_nothing(curator, import_root):
    folder = import_root / "twice"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(jpeg_bytes(seed=200))
    job = run_folder(curator, folder)
    finished_at = job.finished_at
    again = services.import_job_run(job_id=job.pk)
    assert again.finished_at == finished_at and Image.objects.count() == 1 and again.items.count() == 1


def test_a_crash_after_the_files_but_before_the_rows_leaves_a_retry_without_orphans(curator, import_root, monkeypatch):
    folder = import_root / "crash"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(jpeg_bytes(seed=300))
    job = services.import_job_create(created_by=curator, kind="folder", path=str(folder), enqueue=False)

    def rows_fail(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(services, "_store_chunk_rows", rows_fail)
    with pytest.raises(RuntimeError):
        services.import_job_run(job_id=job.pk)
    assert Image.objects.count() == 0
    monkeypatch.undo()
    services.import_job_resume(job=job)
    job = services.import_job_run(job_id=job.pk)
    image = Image.objects.get()
    _, files = default_storage.listdir(f"images/{image.sha256[:2]}")
    assert files == [f"{image.sha256}.jpg"]  # rewritten under the same key, no second copy


def test_a_resume_of_a_finished_job_is_a_conflict(curator, import_root):
    folder = import_root / "done"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(jpeg_bytes(seed=400))
    job = run_folder(curator, folder)
    with pytest.raises(ServiceError) as caught:
        services.import_job_resume(job=job)
    assert caught.value.status_code == 409


def test_image_ingest_imports_bytes_once(curator, import_root):
    data = jpeg_bytes(seed=500)
    image, created = services.image_ingest(data=data, name="x.jpg", source="demo")
    again, created_again = services.image_ingest(data=data, name="y.jpg", source="demo")
    assert created and not created_again and again.pk == image.pk
    with pytest.raises(ServiceError, match="not an image"):
        services.image_ingest(data=b"nope", name="z.jpg", source="demo")
