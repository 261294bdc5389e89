"""Round trip: an export imported as a HumanBeauty folder and exported again gives the same labels (and, since
images are named by content and the split is keyed by content and seed, the same files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aesplatform.annotation.models import Consensus
from aesplatform.catalog import services as catalog_services
from aesplatform.datasets import services
from model_core.data import read_humanbeauty
from model_core.standard import NUM_DIMENSIONS, OVERALL_INDEX
from tests import factories
from tests.support.datasets import label_campaign, make_image

pytestmark = pytest.mark.django_db


@pytest.fixture
def roots(settings, tmp_path):
    exports = tmp_path / "exports"
    exports.mkdir()
    settings.AESP_EXPORT_ROOT = exports
    settings.AESP_EXPORT_ROOTS = []
    settings.AESP_IMPORT = {**settings.AESP_IMPORT, "ALLOWED_ROOTS": [exports], "THUMBNAIL_SIZE": 32}
    return exports


def test_export_import_export_gives_the_same_labels(roots):
    curator = factories.curator()
    overall_campaign = factories.CampaignFactory(mode="overall")
    expert_campaign = factories.CampaignFactory(mode="expert")
    for i in range(14):
        image = make_image(100 + i, source=("FFHQ", "CelebA")[i % 2], group=7 if i in (3, 5) else None)
        label_campaign(image, overall_campaign, scores={OVERALL_INDEX: (i + 1) / 15}, count=3)
    for i in range(6):
        image = make_image(200 + i, source="expert-set")
        label_campaign(image, expert_campaign, scores={d: ((i + 2) * (d + 1) % 13) / 13 + 1 / 3 * 0.01
                                                       for d in range(NUM_DIMENSIONS)}, count=5)
    first = services.dataset_version_freeze(version=services.dataset_version_create(
        created_by=curator, name="from-campaigns", campaigns=[overall_campaign, expert_campaign],
        include_imported_labels=False, split_seed=4, test_ratio=0.2))
    export, _ = services.export_create(version=first, format="humanbeauty", options={"archive": False},
                                       created_by=curator, enqueue=False)
    export = services.export_run(export_id=export.pk)
    assert export.state == "succeeded", export.error
    root = Path(export.path)

    job = catalog_services.import_job_create(created_by=curator, kind="humanbeauty", path=str(root), enqueue=False)
    job = catalog_services.import_job_run(job_id=job.pk)
    assert job.state == "succeeded" and job.error_count == 0 and job.labels_count == 20
    assert Consensus.objects.filter(origin="imported").count() == 14 + 6 * NUM_DIMENSIONS

    second = services.dataset_version_freeze(version=services.dataset_version_create(
        created_by=curator, name="re-imported", include_imported_labels=True, split_seed=4, test_ratio=0.2))
    export2, _ = services.export_create(version=second, format="humanbeauty", options={"archive": False},
                                        created_by=curator, enqueue=False)
    export2 = services.export_run(export_id=export2.pk)
    assert export2.state == "succeeded", export2.error
    root2 = Path(export2.path)
    assert root2 != root
    for name in ("HumanBeauty-58K/label.jsonl", "HumanBeauty-50K/label.jsonl", "train_label.jsonl",
                 "test_label.jsonl"):
        assert (root2 / name).read_bytes() == (root / name).read_bytes(), name
    labels = [json.loads(line) for line in (root2 / "HumanBeauty-50K/label.jsonl").read_text().splitlines()]
    assert len(labels) == 6 and all(len(r["score"]) == NUM_DIMENSIONS for r in labels)
    assert first.counts["by_split"] == second.counts["by_split"]
    assert len(read_humanbeauty(root2, split="train").records) == first.counts["by_split"]["train"]["total"]
