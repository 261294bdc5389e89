"""Dataset versions: freezing selects labels and splits them; the database refuses changes to a frozen version."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from aesplatform.common.exceptions import ConflictError, ServiceError
from aesplatform.datasets import services
from aesplatform.datasets.models import DatasetItem, DatasetVersion
from model_core.standard import NUM_DIMENSIONS, OVERALL_INDEX
from tests import factories
from tests.support.datasets import expert_scores, label_campaign, label_imported, labelled_set, make_image

pytestmark = pytest.mark.django_db


@pytest.fixture
def curator(db):
    return factories.curator()


def freeze(curator, **kwargs) -> DatasetVersion:
    version = services.dataset_version_create(created_by=curator, name=kwargs.pop("name", "hb"), **kwargs)
    return services.dataset_version_freeze(version=version)


def test_freeze_snapshots_labels_split_counts_and_code_version(curator):
    labelled_set(12, 8, groups={0: 1, 2: 1, 4: 1})
    version = freeze(curator, split_seed=3, test_ratio=0.25)
    assert version.state == "frozen" and version.frozen_at and version.version == 1
    assert version.code_version.startswith("humanaes-platform")
    items = list(version.items.all())
    assert len(items) == 20
    experts = [i for i in items if i.is_expert]
    assert len(experts) == 8 and all(i.has_all_dimensions for i in experts)
    overall = [i for i in items if not i.is_expert]
    assert all(i.scores_list()[:OVERALL_INDEX] == [None] * OVERALL_INDEX for i in overall)  # unknown, not zero
    counts = version.counts
    assert counts["total"] == 20
    assert counts["by_split"]["train"]["total"] + counts["by_split"]["test"]["total"] == 20
    assert counts["by_kind"] == {"overall": 12, "expert": 8}
    assert set(counts["by_source"]) == {"CelebA", "FFHQ", "expert-set"}
    assert counts["balance"]["near_duplicate_groups"] == {"groups": 1, "images": 3, "largest": 3, "straddling": 0}
    grouped = {i.split for i in items if i.image.near_duplicate_group == 1}
    assert len(grouped) == 1
    # the next version of the same name gets the next number
    assert services.dataset_version_create(created_by=curator, name="hb").version == 2


def test_the_same_seed_freezes_the_same_split(curator):
    labelled_set(30, 10)
    a = freeze(curator, name="a", split_seed=11)
    b = freeze(curator, name="b", split_seed=11)
    split = lambda v: sorted(v.items.values_list("image_id", "split"))  # noqa: E731
    assert split(a) == split(b)
    assert a.counts["balance"] == b.counts["balance"]


def test_campaign_labels_win_over_imported_and_respect_min_ratings(curator):
    campaign = factories.CampaignFactory(mode="expert")
    a, b, c = make_image(1), make_image(2), make_image(3)
    label_imported(a, overall=0.1)
    label_campaign(a, campaign, scores=dict(enumerate(expert_scores(1))), count=3)
    label_imported(b, overall=0.55)
    label_campaign(b, campaign, scores=dict(enumerate(expert_scores(2))), count=1)  # below min_ratings
    label_campaign(c, campaign, scores={d: 0.5 for d in range(NUM_DIMENSIONS)}, count=1, method="mean")  # other method
    version = freeze(curator, campaigns=[campaign], min_ratings=2)
    items = {i.image_id: i for i in version.items.all()}
    assert set(items) == {a.pk, b.pk}
    assert items[a.pk].is_expert and items[a.pk].scores_list() == expert_scores(1) and items[a.pk].rating_count == 3
    assert not items[b.pk].is_expert and items[b.pk].overall_score == 0.55
    assert version.counts["label_origin"] == {"campaign": 1, "imported": 1}


def test_campaign_only_versions_leave_imported_labels_out(curator):
    campaign = factories.CampaignFactory(mode="overall")
    a, b = make_image(1), make_image(2)
    label_campaign(a, campaign, scores={OVERALL_INDEX: 0.9})
    label_imported(b, overall=0.3)
    version = freeze(curator, campaigns=[campaign], include_imported_labels=False)
    assert list(version.items.values_list("image_id", flat=True)) == [a.pk]


def test_rejected_and_broken_images_are_left_out_and_counted(curator):
    good = make_image(1)
    label_imported(good, overall=0.4)
    for seed, status in ((2, "rejected"), (3, "broken")):
        label_imported(make_image(seed, status=status), overall=0.4)
    version = freeze(curator)
    assert version.items.count() == 1 and version.counts["excluded"]["rejected_or_broken_images"] == 2


def test_an_overall_version_keeps_only_the_overall_score(curator):
    labelled_set(3, 3)
    version = freeze(curator, kind="overall")
    assert not version.items.filter(is_expert=True).exists() and version.items.count() == 6


# --- bad input ------------------------------------------------------------------------------------------------


def test_an_empty_selection_is_refused(curator):
    with pytest.raises(ServiceError) as caught:
        services.dataset_version_create(created_by=curator, name="x", include_imported_labels=False)
    assert caught.value.code == "empty_selection"
    version = services.dataset_version_create(created_by=curator, name="x")  # nothing labelled at all
    with pytest.raises(ServiceError) as caught:
        services.dataset_version_freeze(version=version)
    assert caught.value.code == "empty_selection"
    version.refresh_from_db()
    assert version.state == "draft" and not version.items.exists()


def test_an_expert_version_refuses_images_lacking_the_twelve_dimensions(curator):
    labelled_set(2, 2)
    version = services.dataset_version_create(created_by=curator, name="x", kind="expert")
    with pytest.raises(ServiceError) as caught:
        services.dataset_version_freeze(version=version)
    assert caught.value.code == "missing_labels" and "2 images lack" in caught.value.message
    assert not DatasetItem.objects.exists()


def test_images_lacking_an_overall_score_are_refused(curator):
    campaign = factories.CampaignFactory(mode="expert")
    image = make_image(1)
    label_campaign(image, campaign, scores={0: 0.5, 1: 0.5})  # partial: no overall
    version = services.dataset_version_create(created_by=curator, name="x", campaigns=[campaign])
    with pytest.raises(ServiceError) as caught:
        services.dataset_version_freeze(version=version)
    assert caught.value.code == "missing_labels" and str(image.pk) in caught.value.message


@pytest.mark.parametrize("kwargs, code", [
    ({"consensus_method": "median"}, "unknown_consensus_method"),
    ({"kind": "both"}, "unknown_kind"),
])
def test_unknown_choices_are_refused(curator, kwargs, code):
    with pytest.raises(ServiceError) as caught:
        services.dataset_version_create(created_by=curator, name="x", **kwargs)
    assert caught.value.code == code


def test_bad_ratio_and_name_are_validation_errors(curator):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        services.dataset_version_create(created_by=curator, name="x", test_ratio=1.0)
    with pytest.raises(ValidationError):
        services.dataset_version_create(created_by=curator, name="  ")


def test_freezing_twice_is_a_conflict(curator):
    labelled_set(2, 0)
    version = freeze(curator)
    with pytest.raises(ConflictError):
        services.dataset_version_freeze(version=version)


# --- the database refuses changes to a frozen version ---------------------------------------------------------


def _refused(statement) -> None:
    with pytest.raises(IntegrityError, match="frozen"):
        with transaction.atomic():
            statement()


def test_the_database_refuses_changes_to_a_frozen_version(curator):
    images = labelled_set(4, 2)
    version = freeze(curator)
    item = version.items.first()
    other = make_image(99)
    _refused(lambda: DatasetItem.objects.filter(pk=item.pk).update(split="test" if item.split == "train" else "train"))
    _refused(lambda: DatasetItem.objects.filter(pk=item.pk).update(comprehensive=0.0))
    _refused(lambda: DatasetItem.objects.filter(pk=item.pk).delete())
    _refused(lambda: DatasetItem.objects.create(version=version, image=other, split="train", is_expert=False,
                                                source="x", comprehensive=0.5))
    _refused(lambda: DatasetVersion.objects.filter(pk=version.pk).update(split_seed=123))
    _refused(lambda: DatasetVersion.objects.filter(pk=version.pk).update(state="draft"))
    _refused(lambda: DatasetVersion.objects.filter(pk=version.pk).update(counts={}))
    _refused(lambda: version.delete())
    _refused(lambda: version.campaigns.add(factories.CampaignFactory()))
    # moving an item of a draft into the frozen version is refused too
    draft = services.dataset_version_create(created_by=curator, name="draft")
    draft_item = DatasetItem.objects.create(version=draft, image=images[0], split="train", is_expert=False,
                                            source="x", comprehensive=0.5)
    _refused(lambda: DatasetItem.objects.filter(pk=draft_item.pk).update(version=version))
    # what does not define the version may change
    DatasetVersion.objects.filter(pk=version.pk).update(description="for the paper")
    assert DatasetVersion.objects.get(pk=version.pk).description == "for the paper"
    assert version.items.count() == 6
    # a draft can still be edited and deleted
    DatasetItem.objects.filter(pk=draft_item.pk).update(comprehensive=0.7)
    draft.delete()


def test_the_database_refuses_bulk_writes_into_a_frozen_version(curator):
    """The item triggers run per statement (migration 0003 on PostgreSQL): a COPY or a multi-row INSERT that
    touches a frozen version anywhere is refused as a whole; the same into a draft goes through."""
    from django.db import connection

    labelled_set(4, 2)
    version = freeze(curator)
    draft = services.dataset_version_create(created_by=curator, name="draft")
    a, b = make_image(97), make_image(98)
    table = DatasetItem._meta.db_table
    insert = (f"INSERT INTO {table} (version_id, image_id, split, is_expert, source, rating_count, comprehensive) "
              "VALUES (%s, %s, 'train', false, 'x', 1, 0.5), (%s, %s, 'train', false, 'x', 1, 0.5)")

    def run(sql, params):
        with connection.cursor() as cursor:
            cursor.execute(sql, params)

    _refused(lambda: run(insert, [draft.pk, a.pk, version.pk, b.pk]))
    if connection.vendor == "postgresql":
        def copy(version_id):
            with connection.wrap_database_errors, connection.cursor() as cursor, cursor.cursor.copy(
                f"COPY {table} (version_id, image_id, split, is_expert, source, rating_count, comprehensive) "
                "FROM STDIN"
            ) as stream:
                stream.write_row((version_id, a.pk, "train", False, "x", 1, 0.5))

        _refused(lambda: copy(version.pk))
        copy(draft.pk)
    _refused(lambda: DatasetItem.objects.filter(version__in=[draft, version]).update(rating_count=3))
    _refused(lambda: DatasetItem.objects.filter(version__in=[draft, version]).delete())
    assert version.items.count() == 6
    run(insert.replace("(%s, %s, 'train', false, 'x', 1, 0.5), ", ""), [draft.pk, b.pk])
    assert draft.items.count() == (2 if connection.vendor == "postgresql" else 1)


SQLITE_CHECK = """
import django
django.setup()
from django.db import IntegrityError, transaction
from aesplatform.datasets import services
from aesplatform.datasets.models import DatasetItem, DatasetVersion
from aesplatform.annotation.models import Consensus
from aesplatform.catalog.models import Image
from django.contrib.auth import get_user_model
user = get_user_model().objects.create(username="c")
image = Image.objects.create(sha256="a" * 64, width=1, height=1, file_size=1, source="s", file="images/aa/a.png")
Consensus.objects.create(image=image, dimension=11, origin="imported", label_source="s", method="imported",
                         score=0.5, count=1)
version = services.dataset_version_freeze(version=services.dataset_version_create(created_by=user, name="v"))
assert version.items.count() == 1
refused = 0
for statement in (lambda: DatasetItem.objects.update(split="test"), lambda: DatasetItem.objects.all().delete(),
                  lambda: DatasetVersion.objects.update(split_seed=5), lambda: version.delete()):
    try:
        with transaction.atomic():
            statement()
    except IntegrityError as exc:
        assert "frozen" in str(exc), exc
        refused += 1
print("refused", refused)
"""


def test_sqlite_refuses_changes_to_a_frozen_version_too(tmp_path):
    """The embedded default database (SQLite) keeps migration 0002's row-level triggers."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "DJANGO_ENV": "development", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
           "AESP_VAR_DIR": str(tmp_path / "var"), "DJANGO_SETTINGS_MODULE": "aesplatform.settings",
           "PYTHONPATH": os.pathsep.join([str(repo / "platform"), str(repo)])}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=repo, env=env, check=True)
    done = subprocess.run([sys.executable, "-c", SQLITE_CHECK], cwd=repo, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "refused 4"
