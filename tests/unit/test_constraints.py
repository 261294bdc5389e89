"""The platform's invariants are enforced by the database itself, not only by Python."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from aesplatform.annotation.models import Annotation, Assignment, Consensus, ConsensusOrigin
from aesplatform.modeling.models import ModelVersion
from model_core.standard import DIMENSION_KEYS, OVERALL
from tests import factories

pytestmark = pytest.mark.django_db


def _assignment(task, user):
    now = timezone.now()
    return Assignment.objects.create(task=task, annotator=user, leased_until=now + timedelta(minutes=5))


def _expert_scores(value: float = 0.5) -> dict[str, float]:
    return {key: value for key in DIMENSION_KEYS}


def test_database_rejects_a_score_above_one():
    task = factories.TaskFactory()
    user = factories.annotator()
    assignment = _assignment(task, user)
    scores = _expert_scores()
    scores["outfit"] = 1.5
    with pytest.raises(IntegrityError), transaction.atomic():
        # .objects.create skips full_clean on purpose: this is the database's own CHECK.
        Annotation.objects.create(task=task, annotator=user, assignment=assignment, is_expert=True, **scores)
    assert not Annotation.objects.exists()


def test_database_rejects_a_negative_overall_score():
    task = factories.TaskFactory(campaign__mode="overall")
    user = factories.annotator()
    with pytest.raises(IntegrityError), transaction.atomic():
        Annotation.objects.create(
            task=task, annotator=user, assignment=_assignment(task, user), is_expert=False, **{OVERALL.key: -0.01}
        )


def test_database_rejects_a_second_annotation_of_the_same_task_by_the_same_annotator():
    task = factories.TaskFactory()
    user = factories.annotator()
    assignment = _assignment(task, user)
    Annotation.objects.create(task=task, annotator=user, assignment=assignment, is_expert=True, **_expert_scores())
    with pytest.raises(IntegrityError), transaction.atomic():
        Annotation.objects.create(
            task=task, annotator=user, assignment=assignment, is_expert=True, **_expert_scores(0.7)
        )
    assert Annotation.objects.count() == 1


def test_a_correction_supersedes_instead_of_duplicating():
    task = factories.TaskFactory()
    user = factories.annotator()
    assignment = _assignment(task, user)
    first = Annotation.objects.create(
        task=task, annotator=user, assignment=assignment, is_expert=True, **_expert_scores()
    )
    correction = Annotation.objects.create(
        task=task, annotator=user, assignment=assignment, is_expert=True, supersedes=first, corrected_by=user,
        **_expert_scores(0.9)
    )
    assert first.superseded_by == correction
    with pytest.raises(IntegrityError), transaction.atomic():
        Annotation.objects.create(
            task=task, annotator=user, assignment=assignment, is_expert=True, supersedes=first, corrected_by=user,
            **_expert_scores(0.2)
        )


def test_database_rejects_an_expert_annotation_missing_a_dimension():
    task = factories.TaskFactory()
    user = factories.annotator()
    scores = _expert_scores()
    scores["looks"] = None
    with pytest.raises(IntegrityError), transaction.atomic():
        Annotation.objects.create(
            task=task, annotator=user, assignment=_assignment(task, user), is_expert=True, **scores
        )


def test_idempotency_key_is_unique():
    key = uuid.uuid4()
    user = factories.annotator()
    task_a, task_b = factories.TaskFactory(), factories.TaskFactory()
    Annotation.objects.create(
        task=task_a,
        annotator=user,
        assignment=_assignment(task_a, user),
        is_expert=True,
        idempotency_key=key,
        **_expert_scores(),
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        Annotation.objects.create(
            task=task_b, annotator=user, assignment=_assignment(task_b, user), is_expert=True, idempotency_key=key,
            **_expert_scores(),
        )


def test_database_rejects_a_second_assignment_of_a_task_to_the_same_annotator():
    task = factories.TaskFactory()
    user = factories.annotator()
    _assignment(task, user)
    with pytest.raises(IntegrityError), transaction.atomic():
        _assignment(task, user)


def test_only_one_model_version_can_be_promoted():
    ModelVersion.objects.create(name="a", checkpoint_path="/x/a", promoted=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.create(name="b", checkpoint_path="/x/b", promoted=True)
    ModelVersion.objects.create(name="c", checkpoint_path="/x/c", promoted=False)
    assert ModelVersion.objects.filter(promoted=True).count() == 1


def test_one_imported_consensus_per_image_and_dimension():
    image = factories.ImageFactory()
    Consensus.objects.create(image=image, dimension=11, origin=ConsensusOrigin.IMPORTED, score=0.4, method="imported")
    with pytest.raises(IntegrityError), transaction.atomic():
        Consensus.objects.create(
            image=image, dimension=11, origin=ConsensusOrigin.IMPORTED, score=0.6, method="imported"
        )


def test_consensus_rejects_an_unknown_dimension_and_an_out_of_range_score():
    image = factories.ImageFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Consensus.objects.create(image=image, dimension=12, origin=ConsensusOrigin.IMPORTED, score=0.4)
    with pytest.raises(IntegrityError), transaction.atomic():
        Consensus.objects.create(image=image, dimension=3, origin=ConsensusOrigin.IMPORTED, score=1.01)


def test_image_sha256_is_unique():
    image = factories.ImageFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        factories.ImageFactory(sha256=image.sha256)
