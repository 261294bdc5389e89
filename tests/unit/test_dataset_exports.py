"""Exports: the HumanBeauty layout and the training jsonl as model_core.formats defines them, read back by model_core;
byte-identical for the same version and options; manifest; bad input leaves nothing half-written."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from django.db import IntegrityError, transaction

from aesplatform.common.exceptions import ConflictError, ServiceError
from aesplatform.datasets import services
from aesplatform.datasets.models import Export
from model_core.data import read_humanbeauty, read_records, read_training_jsonl
from model_core.standard import DIMENSIONS, LEVELS
from tests import factories
from tests.support.archive import write_archive
from tests.support.datasets import archive_bytes, labelled_set

pytestmark = pytest.mark.django_db


@pytest.fixture
def export_root(settings, tmp_path):
    root = tmp_path / "exports"
    settings.AESP_EXPORT_ROOT = root
    settings.AESP_EXPORT_ROOTS = [tmp_path / "targets"]
    (tmp_path / "targets").mkdir()
    return root


@pytest.fixture
def curator(db):
    return factories.curator()


@pytest.fixture
def version(curator):
    labelled_set(12, 8, groups={0: 5, 2: 5})
    draft = services.dataset_version_create(created_by=curator, name="HB set", split_seed=1, test_ratio=0.25)
    return services.dataset_version_freeze(version=draft)


def run_export(version, curator, format, options=None) -> Export:
    export, created = services.export_create(version=version, format=format, options=options or {},
                                             created_by=curator, enqueue=False)
    assert created
    return services.export_run(export_id=export.pk)


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_humanbeauty_layout_field_for_field_and_read_by_model_core(version, curator, export_root):
    export = run_export(version, curator, "humanbeauty")
    assert export.state == "succeeded", export.error
    root = Path(export.path)
    assert root.parent == export_root and not list(export_root.glob(".*"))  # no temporary leftovers
    labels_58k = read_lines(root / "HumanBeauty-58K/label.jsonl")
    labels_50k = read_lines(root / "HumanBeauty-50K/label.jsonl")
    assert len(labels_58k) == 12 and len(labels_50k) == 8
    rec = labels_58k[0]
    assert list(rec) == ["image_name", "source", "score", "text_level"]
    assert isinstance(rec["score"], float) and rec["text_level"] in LEVELS
    assert (root / "HumanBeauty-58K/images" / rec["image_name"]).is_file()
    assert "/" not in rec["image_name"]
    rec = labels_50k[0]
    assert list(rec) == ["image_name", "source", "score"] and len(rec["score"]) == 12
    assert [r["image_name"] for r in labels_58k] == sorted(r["image_name"] for r in labels_58k)
    train, test = read_lines(root / "train_label.jsonl"), read_lines(root / "test_label.jsonl")
    assert len(train) + len(test) == 20
    assert len(test) == version.counts["by_split"]["test"]["total"]
    for record in train + test:
        assert record["is_expert"] is (record["image_name"].startswith("HumanBeauty-50K/images/"))
        assert list(record)[-1] == "is_expert"
    # model_core reads it as written (images decoded and checked)
    read_train = read_humanbeauty(root, split="train")
    read_test = read_records(root, split="test")
    assert len(read_train.records) == len(train) and len(read_test.records) == len(test)
    assert {r.is_expert for r in read_train.records} == {True, False}
    expected = {i.image.sha256: i for i in version.items.select_related("image")}
    for record in read_train.records + read_test.records:
        item = expected[record.image.stem]
        assert record.overall == item.overall_score
        if item.is_expert:
            assert list(record.scores) == item.scores_list()


def test_a_default_training_export_holds_no_absolute_path_and_the_trainer_reads_it(version, curator, export_root):
    export = run_export(version, curator, "training_jsonl")
    assert export.state == "succeeded", export.error
    assert export.options["image_paths"] == "relative"
    root = Path(export.path)
    for name in ("train.jsonl", "test.jsonl"):
        text = (root / name).read_text()
        assert str(export_root) not in text and str(root) not in text
        records = read_lines(root / name)
        assert records and all(r["images"][0].startswith("images/") for r in records)
        assert not any(os.path.isabs(r["images"][0]) for r in records)
        # model_core resolves the relative paths against the jsonl's folder (images decoded and checked)
        assert [r.image for r in read_training_jsonl(root / name).records] == \
            [root / r["images"][0] for r in records]
    # the downloadable archive holds no server path either
    assert str(export_root).encode() not in archive_bytes(export)


def test_training_jsonl_field_for_field_absolute_and_relative_and_read_by_model_core(version, curator, export_root):
    export = run_export(version, curator, "training_jsonl", {"image_paths": "absolute"})
    assert export.state == "succeeded", export.error
    root = Path(export.path)
    records = read_lines(root / "train.jsonl") + read_lines(root / "test.jsonl")
    assert len(records) == 20
    for record in records:
        assert list(record) == ["query", "response", "history", "images", "scores", "is_expert"]
        assert record["query"] == "" and record["history"] == [] and record["is_expert"] in (0, 1)
        assert os.path.isabs(record["images"][0]) and Path(record["images"][0]).is_file()
        assert len(record["scores"]) == 12
        if record["is_expert"]:
            lines = record["response"].split("\n")
            assert len(lines) == 12 and not record["response"].endswith("\n")
            for i, (line, dim) in enumerate(zip(lines, DIMENSIONS), start=1):
                assert line.startswith(f"{i}. {dim.name} : ") and line.split(" : ")[1] in LEVELS
            assert lines[-1].startswith("12. Comprehensive Aesthetic Score : ")
        else:
            assert record["scores"][:11] == [0.0] * 11
            assert record["response"].startswith("The aesthetics of the human image is ")
            assert record["response"].split()[-1] in LEVELS and not record["response"].endswith(".")
    result = read_training_jsonl(root / "train.jsonl")
    assert len(result.records) == version.counts["by_split"]["train"]["total"]

    relative = run_export(version, curator, "training_jsonl", {"image_paths": "relative", "prompts": True,
                                                               "archive": False})
    rel_root = Path(relative.path)
    rel_records = read_lines(rel_root / "test.jsonl")
    assert all(r["images"][0].startswith("images/") for r in rel_records)
    assert all(r["query"] for r in rel_records)  # prompts filled from the seed
    assert len(read_training_jsonl(rel_root / "test.jsonl").records) == len(rel_records)
    assert relative.archive_path == "" and not Path(rel_root.parent, rel_root.name + ".tar").exists()


def test_manifest_counts_and_a_sha256_of_every_file(version, curator, export_root):
    export = run_export(version, curator, "humanbeauty", {"images": "copy"})
    root = Path(export.path)
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["split_seed"] == 1 and manifest["consensus_method"] == version.consensus_method == "p910_mle"
    assert manifest["code_version"] == version.code_version
    assert manifest["dataset_version"]["name"] == "HB set" and manifest["dataset_version"]["version"] == 1
    assert manifest["counts"]["by_kind"] == {"overall": 12, "expert": 8}
    assert set(manifest["counts"]["by_split"]) == {"train", "test"}
    on_disk = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != "manifest.json")
    assert sorted(manifest["files"]) == on_disk and len(on_disk) == 20 + 4
    for name, entry in manifest["files"].items():
        data = (root / name).read_bytes()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert export.manifest["files_count"] == len(on_disk) + 1 and export.manifest["images"]["copy"] == 20


def test_the_same_version_and_options_give_byte_identical_exports(version, curator, export_root, settings, tmp_path):
    first = run_export(version, curator, "training_jsonl", {"image_paths": "relative"})
    first_files = {p.relative_to(first.path): p.read_bytes() for p in Path(first.path).rglob("*") if p.is_file()}
    first_archive = archive_bytes(first)
    # the same choices again, after the first export's files were moved away
    os.rename(first.path, tmp_path / "moved")
    Export.objects.filter(pk=first.pk).update(state="failed")
    second = run_export(version, curator, "training_jsonl", {"image_paths": "relative"})
    second_files = {p.relative_to(second.path): p.read_bytes() for p in Path(second.path).rglob("*") if p.is_file()}
    assert second_files == first_files
    assert archive_bytes(second) == first_archive and len(first_archive) == second.archive_size
    # the archive holds the export under one folder, deterministic and complete
    with tarfile.open(fileobj=io.BytesIO(archive_bytes(second))) as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        assert {m.name.split("/", 1)[1] for m in members} == {str(p) for p in second_files}
        assert {m.mtime for m in tar.getmembers()} == {0}


def test_hardlink_and_symlink_modes(version, curator, export_root):
    linked = run_export(version, curator, "humanbeauty", {"images": "hardlink", "archive": False})
    assert linked.manifest["images"]["hardlink"] == 20
    image = next(Path(linked.path).glob("HumanBeauty-5*K/images/*"))
    assert image.stat().st_nlink >= 2
    symlinked = run_export(version, curator, "humanbeauty", {"images": "symlink"})
    image = next(Path(symlinked.path).glob("HumanBeauty-5*K/images/*"))
    assert image.is_symlink() and image.resolve().is_file()
    with tarfile.open(fileobj=io.BytesIO(archive_bytes(symlinked))) as tar:  # the files, not the links
        assert all(m.isfile() or m.isdir() for m in tar.getmembers())


def test_a_chosen_target_dir(version, curator, export_root, tmp_path):
    target = tmp_path / "targets" / "hb-export"
    export = run_export(version, curator, "humanbeauty", {"target_dir": str(target), "archive": False})
    assert export.state == "succeeded" and Path(export.path) == target.resolve()
    assert (target / "train_label.jsonl").is_file()


# --- bad input ------------------------------------------------------------------------------------------------


def test_unknown_options_and_values_are_refused(version, curator, export_root):
    cases = [
        ("humanbeauty", {"image_paths": "relative"}, "unknown_option"),  # a training-jsonl option
        ("humanbeauty", {"compression": "gzip"}, "unknown_option"),
        ("humanbeauty", {"images": "move"}, "invalid_option"),
        ("training_jsonl", {"prompt_seed": "x"}, "invalid_option"),
        ("training_jsonl", {"target_dir": "relative/dir"}, "invalid_option"),
        ("training_jsonl", {"target_dir": "/etc/exports"}, "target_outside_roots"),
        ("coco", {}, "unknown_format"),
    ]
    for fmt, options, code in cases:
        with pytest.raises(ServiceError) as caught:
            services.export_create(version=version, format=fmt, options=options, created_by=curator, enqueue=False)
        assert caught.value.code == code, (fmt, options, caught.value.message)
    assert not Export.objects.exists()


def test_a_draft_cannot_be_exported(curator, export_root):
    labelled_set(2, 0)
    draft = services.dataset_version_create(created_by=curator, name="d")
    with pytest.raises(ConflictError):
        services.export_create(version=draft, format="humanbeauty", options={}, created_by=curator, enqueue=False)


def test_a_target_dir_that_exists_and_is_not_empty_is_refused(version, curator, export_root, tmp_path):
    target = tmp_path / "targets" / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(ServiceError) as caught:
        services.export_create(version=version, format="humanbeauty", options={"target_dir": str(target)},
                               created_by=curator, enqueue=False)
    assert caught.value.code == "target_not_empty"
    # and when it fills up between the request and the job: the job fails, the folder is untouched
    target2 = tmp_path / "targets" / "later"
    export, _ = services.export_create(version=version, format="humanbeauty",
                                       options={"target_dir": str(target2)}, created_by=curator, enqueue=False)
    target2.mkdir()
    (target2 / "x").write_text("someone else's")
    export = services.export_run(export_id=export.pk)
    assert export.state == "failed" and "not empty" in export.error
    assert [p.name for p in target2.iterdir()] == ["x"]
    assert not [p for p in target2.parent.iterdir() if p.name.startswith(".")]


def test_a_missing_image_file_fails_the_export_and_leaves_nothing_visible(version, curator, export_root):
    from django.core.files.storage import default_storage

    item = version.items.select_related("image").first()
    default_storage.delete(item.image.file.name)
    export = run_export(version, curator, "humanbeauty")
    assert export.state == "failed" and item.image.sha256 in export.error
    assert not export_root.exists() or list(export_root.iterdir()) == []
    # a failed export frees its choice: the same request queues a new one
    again, created = services.export_create(version=version, format="humanbeauty", options={}, created_by=curator,
                                            enqueue=False)
    assert created and again.pk != export.pk


def test_two_exports_of_the_same_choice_give_one_result(version, curator, export_root):
    a, created_a = services.export_create(version=version, format="humanbeauty", options={"images": "hardlink"},
                                          created_by=curator, enqueue=False)
    b, created_b = services.export_create(version=version, format="humanbeauty", options={}, created_by=curator,
                                          enqueue=False)  # the defaults are the same choice
    assert created_a and not created_b and a.pk == b.pk
    # the database enforces it too (two requests that both passed the check)
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            Export.objects.create(version=version, format="humanbeauty", options=a.options,
                                  options_digest=a.options_digest, created_by=curator)
    # a different choice is a different export
    c, created_c = services.export_create(version=version, format="training_jsonl", options={}, created_by=curator,
                                          enqueue=False)
    assert created_c and c.pk != a.pk
    # running it twice: the second delivery does nothing
    done = services.export_run(export_id=a.pk)
    assert done.state == "succeeded"
    mtime = Path(done.path, "manifest.json").stat().st_mtime_ns
    assert services.export_run(export_id=a.pk).state == "succeeded"
    assert Path(done.path, "manifest.json").stat().st_mtime_ns == mtime


def test_the_direct_record_formatting_is_json_dumps_byte_for_byte():
    from model_core import formats

    expert = [1 / 3, 0.0, 1.0, 0.1 + 0.2, 1e-7, 0.5, 0.25, 0.75, 0.999, 0.01, 0.2, 0.6]
    overall = [None] * 11 + [2 / 3]
    for name, source, scores, is_expert in (("a.png", 'Ünï "src"', expert, True), ("b.jpg", "FFHQ", overall, False)):
        label = formats.label_record(image_name=name, source=source, scores=scores, is_expert=is_expert)
        tail = formats.label_tail(source_json=formats.dumps(source), scores=scores, is_expert=is_expert)
        assert formats.label_line(name, tail) == formats.dumps(label)
        for relpath in ("HumanBeauty-50K/images/a.png", "x/y"):
            expected = formats.dumps({**label, "image_name": relpath, "is_expert": is_expert})
            assert formats.split_line(relpath, tail, is_expert=is_expert) == expected


def test_write_humanbeauty_lines_are_json_dumps_byte_for_byte(tmp_path):
    """The writer's inlined records (shared tails, quoted names without json) equal dumps() of the records, for
    plain, quoted and non-ASCII names and sources, integer and float scores; images placed in the background."""
    from aesplatform.datasets import writers
    from model_core import formats

    def _label(row):
        return formats.label_record(image_name=row.image_name, source=row.source, scores=row.scores,
                                    is_expert=row.is_expert)

    scores = tuple([1 / 3, 0, 1, 0.1 + 0.2, 1e-7, 0.5, 0.25, 0.75, 0.999, 0.01, 0.2, 0.6])
    rows = [writers.ExportRow(name, "a" * 64, f"k{i}", 1, source, split, expert,
                              scores if expert else (None,) * 11 + (scores[i % 12],))
            for i, (name, source, split, expert) in enumerate([
                ("a" * 64 + ".png", "FFHQ", "train", False), ('q"uo\\te.png', 'Ünï "src"', "test", False),
                ("é.jpg", "x/y", "train", True), ("b.png", "FFHQ", "test", True), ("c d.png", "FFHQ", "train", False)])]
    (tmp_path / "src").mkdir()
    for row in rows:
        (tmp_path / "src" / row.image_file).write_bytes(b"x")
    placer = writers.ImagePlacer(mode="hardlink", local_path=lambda key: str(tmp_path / "src" / key),
                                 open_file=None, background=True)
    root = tmp_path / "out"
    writers.write_humanbeauty(root, rows, placer=placer, progress=lambda done: None)
    assert placer.counts["hardlink"] == len(rows)
    for folder, expert in (("HumanBeauty-58K", False), ("HumanBeauty-50K", True)):
        mine = [r for r in rows if r.is_expert == expert]
        assert (root / folder / "label.jsonl").read_text().splitlines() == \
            [formats.dumps(_label(r)) for r in mine]
    for split in ("train", "test"):
        expected = [formats.dumps({**_label(r),
                                   "image_name": f"HumanBeauty-{'50K' if r.is_expert else '58K'}/images/{r.image_name}",
                                   "is_expert": r.is_expert}) for r in rows if r.split == split]
        assert (root / f"{split}_label.jsonl").read_text().splitlines() == expected
    # a missing image is an error raised by close(), and nothing keeps running
    missing = writers.ImagePlacer(mode="hardlink", local_path=lambda key: str(tmp_path / "nope" / key),
                                  open_file=None, background=True)
    with pytest.raises(writers.ExportWriteError, match="missing"):
        writers.write_humanbeauty(tmp_path / "out2", rows, placer=missing, progress=lambda done: None)


def test_the_streamed_archive_is_the_written_one_byte_for_byte(tmp_path):
    """writers.iter_archive (the download, any range) gives exactly a sequential writer's tar, which tarfile reads
    back: ustar and PAX headers (long and non-ASCII names), empty files, sizes around the 512-byte block."""
    import hashlib
    import os
    import random

    from aesplatform.datasets import writers

    root = tmp_path / "export"
    rnd = random.Random(7)
    names = ["a.txt", "empty", "m/n/o/p.jpg", "d/" + "é" * 60 + ".bin", "x/" + "y" * 120 + ".txt",
             *(f"HumanBeauty-50K/images/{i:064x}.png" for i in range(60))]
    files = []
    for name in names:
        data = os.urandom(rnd.choice([0, 1, 511, 512, 513, 3000, 70000])) if name != "empty" else b""
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
        files.append(writers.FileEntry(name, hashlib.sha256(data).hexdigest(), len(data)))
    for prefix in ("short", "p" * 90):
        written = tmp_path / f"{prefix[:10]}.tar"
        size = write_archive(root, files, written, prefix=prefix)
        reference = written.read_bytes()
        with tarfile.open(written) as tar:
            assert {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()} == \
                {f"{prefix}/{e.path}": (root / e.path).read_bytes() for e in files}
        layout = writers.archive_layout(files, prefix=prefix)
        assert layout.size == size == len(reference) == writers.archive_size(files, prefix=prefix)
        assert b"".join(writers.iter_archive(root, layout)) == reference
        for _ in range(200):
            start = rnd.randrange(len(reference))
            end = rnd.randrange(start, len(reference))
            chunk = rnd.choice([7, 4096, 1 << 20])
            assert b"".join(writers.iter_archive(root, layout, start=start, end=end, chunk=chunk)) == \
                reference[start:end + 1], (start, end)
    (root / "a.txt").write_bytes(b"changed size")
    with pytest.raises(writers.ExportWriteError, match="changed size"):
        b"".join(writers.iter_archive(root, layout))


def test_training_data_for_the_trainer_is_the_exports_records_pointing_at_the_stored_images(
        version, curator, export_root, tmp_path):
    from django.core.files.storage import default_storage

    data = services.training_data_write(version=version, directory=tmp_path / "data")
    assert data == {"train": str(tmp_path / "data" / "train.jsonl"), "test": str(tmp_path / "data" / "test.jsonl")}
    written = {split: read_lines(Path(path)) for split, path in data.items()}
    stored = os.path.abspath(default_storage.location)
    assert all(r["images"][0].startswith(stored + "/") and os.path.isfile(r["images"][0])
               for records in written.values() for r in records)
    assert not (tmp_path / "data.tmp").exists()

    export = run_export(version, curator, "training_jsonl", {"archive": False})
    for split, records in written.items():
        exported = read_lines(Path(export.path) / f"{split}.jsonl")
        strip = [{**r, "images": None} for r in records]
        assert strip == [{**r, "images": None} for r in exported]  # same records, same order
    # now that an export exists (relative image paths by default), the trainer reads it
    assert services.training_data_write(version=version, directory=tmp_path / "again") == \
        {split: str(Path(export.path) / f"{split}.jsonl") for split in ("train", "test")}
    assert not (tmp_path / "again").exists()
