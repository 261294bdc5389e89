"""`make demo-loop` leaves a person's choices alone: it does not promote its model over one a person promoted, and
its simulated accounts stay out of the annotator pickers (they keep their roles: the loop acts as them)."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from aesplatform.accounts.roles import SIMULATED_GROUP, Role, user_has_role
from aesplatform.annotation import services as annotation_services
from aesplatform.annotation.selectors import annotator_candidates
from aesplatform.modeling.demo import promote_unless_a_person_chose, simulated_user
from aesplatform.modeling.models import ModelVersion
from tests import factories
from tests.conftest import _api_client
from tests.support.modeling import logged_in_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def loop_curator():
    return simulated_user("loop-curator", Role.CURATOR)


def _model(name, tmp_path, **kwargs):
    return ModelVersion.objects.create(name=name, checkpoint_path=str(tmp_path), **kwargs)


def test_a_model_a_person_promoted_stays_promoted(loop_curator, tmp_path):
    person = factories.curator(username="alice")
    chosen = _model("alice-choice", tmp_path, promoted=True, promoted_at=timezone.now(), promoted_by=person)
    loops = _model("loop-model", tmp_path)
    promoted, said = promote_unless_a_person_chose(_api_client(loop_curator), model_id=loops.pk)
    assert promoted is False
    assert said == "not promoted: alice-choice stays promoted (promoted by alice)"
    assert list(ModelVersion.objects.filter(promoted=True)) == [chosen]


def test_the_loop_promotes_when_nothing_is_promoted_or_it_promoted_the_current_one(loop_curator, tmp_path):
    api = _api_client(loop_curator)
    first = _model("loop-1", tmp_path)
    assert promote_unless_a_person_chose(api, model_id=first.pk) == (True, "loop-1 promoted")
    assert list(ModelVersion.objects.filter(promoted=True)) == [first]
    # a later loop run replaces the model an earlier run promoted, and says so
    second = _model("loop-2", tmp_path)
    assert promote_unless_a_person_chose(api, model_id=second.pk) == \
        (True, "loop-2 promoted (replacing the loop's loop-1)")
    assert list(ModelVersion.objects.filter(promoted=True)) == [second]


def test_simulated_accounts_keep_their_role_but_stay_out_of_the_annotator_picker(loop_curator, curator_user):
    person = factories.annotator(username="bob")
    bots = [simulated_user(f"loop-annotator{i}", Role.ANNOTATOR) for i in (1, 2)]
    assert simulated_user("loop-annotator1", Role.ANNOTATOR) == bots[0]  # idempotent
    assert all(user_has_role(u, Role.ANNOTATOR) and u.groups.filter(name=SIMULATED_GROUP).exists() for u in bots)
    assert not bots[0].has_usable_password()
    candidates = set(annotator_candidates())
    assert person in candidates and not candidates & {*bots, loop_curator}
    assert set(bots) <= set(annotator_candidates(include_simulated=True))
    page = logged_in_client(curator_user).get(reverse("ui:campaign_new")).content.decode()
    assert "bob" in page and "loop-annotator" not in page and "loop-curator" not in page
    # the loop can still put them on a campaign (through the API, as it does)
    image = factories.ImageFactory(status="approved")
    campaign = annotation_services.campaign_create(name="loop", mode="overall", created_by=loop_curator,
                                                   image_ids=[image.pk], annotators=bots, redundancy=1)
    assert set(campaign.annotators.all()) == set(bots)
