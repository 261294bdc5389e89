"""The image explorer: the detail page (what it shows, its fixed query count, who may see it), the gallery's signal
filters and sorts with their keyset pages, the embedding map's projection and the saved selections."""

from __future__ import annotations

import re
import uuid

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from aesplatform.annotation import services as annotation_services
from aesplatform.catalog.models import ImageStatus
from aesplatform.common.exceptions import ServiceError
from aesplatform.curation import limits as curation_limits
from aesplatform.curation import projection
from aesplatform.curation import services as curation_services
from aesplatform.curation.models import CuratorDecision, EmbeddingMap, FilterResult, FilterRun, ImageSelection
from aesplatform.datasets.models import DatasetItem
from aesplatform.modeling.models import ModelVersion, Prescore
from annotator_ui.gallery import GalleryFilters, gallery_neighbours, gallery_page
from model_core.standard import DIMENSIONS, OVERALL_INDEX
from tests import factories
from tests.support.datasets import label_imported
from tests.support.explorer import explored_image
from tests.support.modeling import draft_version

pytestmark = pytest.mark.django_db


def _ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'data-testid="image-(\d+)"', html)]


def _client(client, user=None):
    client.force_login(user or factories.curator())
    return client


# --- the detail page ---------------------------------------------------------------------------------------------


def test_detail_page_shows_labels_per_annotator_and_consensus_prescores_duplicates_signals_and_history(client):
    scene = explored_image(raters=2)
    html = _client(client, scene.curator).get(reverse("ui:image_detail", args=[scene.image.pk])).content.decode()
    # labels: one column per annotator (their names), the consensus, every one of the 12 dimensions
    for user in scene.annotators:
        assert user.get_full_name() in html
        first = scene.scores[user.get_username()]
        assert f"{first[DIMENSIONS[0].key]:.3f}" in html
    assert 'data-testid="consensus-col"' in html
    for dimension in DIMENSIONS:
        assert dimension.name in html
    # pre-scores: both models; the released one has no LM head, shown as "not available", never a number
    assert "full-model" in html and "released-model" in html
    lm_row = re.search(r'data-testid="prescore-lm_score">(.*?)</tr>', html, re.S).group(1)
    assert "0.610" in lm_row and "not available" in lm_row
    # the near-duplicate group, side by side, each linked to its page
    for other in scene.duplicates:
        assert f'href="/images/{other.pk}/"' in html
    # filter signals, with the random-weights warning (the run had no checkpoint), and the review decision
    assert 'data-testid="random-weights"' in html and "321.5" in html and "person_subject" in html
    assert 'data-testid="decisions"' in html and "Approve" in html
    # datasets: none yet; history: import, filter, review, each rating, consensus, pre-scores
    history = re.search(r'data-testid="history">(.*?)</ol>', html, re.S).group(1)
    kinds = re.findall(r'data-kind="(\w+)"', history)
    assert kinds.count("annotation") == 2
    assert {"import", "filter", "review", "consensus", "prescore"} <= set(kinds)


def test_detail_query_count_does_not_grow_with_annotations_runs_or_models(client, django_assert_max_num_queries):
    few = explored_image(raters=1, seed=600)
    many = explored_image(raters=6, seed=700)
    extra_run = FilterRun.objects.create(name="second run", created_by=many.curator, clip_checkpoint="/x.pt")
    FilterResult.objects.create(run=extra_run, image=many.image)
    more_model = ModelVersion.objects.create(name="third", checkpoint_path="/x")
    Prescore.objects.create(image=many.image, model_version=more_model, metavoter_score=0.3)
    label_imported(many.image, overall=0.7, source="explorer-set")
    version = draft_version(many.curator)
    DatasetItem.objects.create(version=version, image=many.image, split="train", is_expert=False, source="x",
                               comprehensive=0.7)
    _client(client, few.curator)
    with CaptureQueriesContext(connection) as small:
        assert client.get(reverse("ui:image_detail", args=[few.image.pk])).status_code == 200
    with django_assert_max_num_queries(len(small.captured_queries) + 1):  # + the exports of its dataset versions
        response = client.get(reverse("ui:image_detail", args=[many.image.pk]))
    html = response.content.decode()
    assert html.count('data-testid="label-table"') == 2  # the campaign's and the imported label
    assert "third" in html and version.name in html


def test_a_correction_replaces_the_annotators_column_and_shows_in_the_history(client):
    scene = explored_image(raters=1, seed=800)
    user = scene.annotators[0]
    original = user.annotations.get()
    annotation_services.annotation_correct(annotation_id=original.pk, annotator=user,
                                           scores={d.key: 0.99 for d in DIMENSIONS}, idempotency_key=uuid.uuid4())
    html = _client(client, scene.curator).get(reverse("ui:image_detail", args=[scene.image.pk])).content.decode()
    table = re.search(r'data-testid="label-table">(.*?)</table>', html, re.S).group(1)
    assert "(corrected)" in table and "0.990" in table
    assert table.count(user.get_full_name()) == 1  # one column: the current label, not both
    assert 'data-kind="correction"' in html


def test_unknown_image_is_a_404_page_and_annotators_are_refused(client):
    image = factories.ImageFactory()
    _client(client)
    response = client.get("/images/987654/")
    assert response.status_code == 404 and "Page not found" in response.content.decode()
    client.force_login(factories.annotator())
    assert client.get(reverse("ui:image_detail", args=[image.pk])).status_code == 403


def test_image_without_anything_says_not_available_and_none(client):
    image = factories.ImageFactory(import_job=None)
    html = _client(client).get(reverse("ui:image_detail", args=[image.pk])).content.decode()
    for testid in ("no-duplicates", "no-labels", "no-prescores", "no-filter-results"):
        assert f'data-testid="{testid}"' in html
    assert "not available" in html


def test_gallery_tiles_link_to_the_detail_page_with_the_gallery_filters(client):
    image = factories.ImageFactory(status=ImageStatus.APPROVED)
    html = _client(client).get(reverse("ui:images"), {"status": "approved", "sort": "oldest"}).content.decode()
    assert f'href="/images/{image.pk}/?status=approved&amp;sort=oldest"' in html


def test_previous_and_next_follow_the_gallery_filter_and_sort(client):
    images = factories.ImageFactory.create_batch(5, status=ImageStatus.APPROVED)
    factories.ImageFactory(status=ImageStatus.REJECTED)  # between nothing: filtered out
    a, b, c = images[1], images[2], images[3]
    _client(client)
    html = client.get(reverse("ui:image_detail", args=[b.pk]), {"status": "approved"}).content.decode()
    # newest first: "previous" is the newer image, "next" the older one
    assert re.search(rf'data-testid="image-prev" href="/images/{c.pk}/\?status=approved"', html)
    assert re.search(rf'data-testid="image-next" href="/images/{a.pk}/\?status=approved"', html)
    rejected = factories.ImageFactory(status=ImageStatus.REJECTED)
    html = client.get(reverse("ui:image_detail", args=[rejected.pk]), {"status": "approved"}).content.decode()
    assert 'data-testid="not-in-gallery"' in html and 'data-testid="image-next"' not in html


# --- the gallery's signal filters and sorts ----------------------------------------------------------------------


@pytest.fixture
def scored_images():
    """Six images: consensus overall 0.1..0.6 on five of them (one has none), pre-scores on some, ratings."""
    images = factories.ImageFactory.create_batch(6, status=ImageStatus.APPROVED)
    for i, image in enumerate(images[:5]):
        label_imported(image, overall=round(0.1 * (i + 1), 2), source="s")
    model = ModelVersion.objects.create(name="m", checkpoint_path="/x", promoted=True)
    for i, image in enumerate(images[:3]):
        Prescore.objects.create(image=image, model_version=model, metavoter_score=0.9 - 0.1 * i,
                                uncertainty=0.1 * (i + 1))
    return images


def test_gallery_filters_by_consensus_and_prescore_ranges(client, scored_images):
    _client(client)
    url = reverse("ui:images")
    ids = _ids(client.get(url, {"consensus_min": "0.25", "consensus_max": "0.45"}).content.decode())
    assert sorted(ids) == sorted(i.pk for i in scored_images[2:4])
    ids = _ids(client.get(url, {"prescore_min": "0.75"}).content.decode())
    assert sorted(ids) == sorted(i.pk for i in scored_images[:2])


def test_gallery_sorts_by_consensus_with_unlabelled_last_across_keyset_pages(scored_images):
    order, cursor = [], None
    for _ in range(10):
        page = gallery_page(GalleryFilters(sort="consensus_desc"), after=cursor, page_size=2)
        order += [i.pk for i in page.images]
        cursor = page.older_cursor
        if cursor is None:
            break
    assert order == [i.pk for i in reversed(scored_images[:5])] + [scored_images[5].pk]
    ascending = gallery_page(GalleryFilters(sort="consensus_asc"), page_size=10)
    assert [i.pk for i in ascending.images] == [i.pk for i in scored_images[:5]] + [scored_images[5].pk]
    by_uncertainty = gallery_page(GalleryFilters(sort="uncertainty_desc"), page_size=3)
    assert [i.pk for i in by_uncertainty.images] == [i.pk for i in reversed(scored_images[:3])]


def test_neighbours_follow_a_signal_sort(scored_images):
    filters = GalleryFilters(sort="prescore_desc")
    middle = gallery_neighbours(filters, image_id=scored_images[1].pk)
    assert (middle.previous, middle.next) == (scored_images[0].pk, scored_images[2].pk)


def test_gallery_filters_by_ratings_proposal_review_duplicates_dataset_and_import(client):
    scene = explored_image(raters=2, seed=900)
    plain = factories.ImageFactory(status=ImageStatus.APPROVED)
    version = draft_version(scene.curator)
    DatasetItem.objects.create(version=version, image=plain, split="test", is_expert=False, source="x",
                               comprehensive=0.5)
    _client(client, scene.curator)
    url = reverse("ui:images")

    def ids(**query):
        return set(_ids(client.get(url, query).content.decode()))

    group = {scene.image.pk, *(d.pk for d in scene.duplicates)}
    assert ids(ratings_min=2) == {scene.image.pk}
    assert ids(ratings_max=0) == group - {scene.image.pk} | {plain.pk}
    assert ids(proposal="keep") == group
    assert ids(proposal="none") == {plain.pk}
    assert ids(review="approve") == {scene.image.pk}
    assert ids(review="none") == group - {scene.image.pk} | {plain.pk}
    assert ids(duplicates="yes") == group and ids(duplicates="no") == {plain.pk}
    assert ids(group=scene.image.near_duplicate_group) == group
    assert ids(dataset_version=version.pk) == {plain.pk}
    assert ids(sort="ratings_desc") and _ids(client.get(url, {"sort": "ratings_desc"}).content.decode())[0] == \
        scene.image.pk
    CuratorDecision.objects.filter(image=scene.image).update(decision="reject")
    assert ids(review="reject") == {scene.image.pk}


def test_gallery_with_a_sort_by_signal_still_costs_a_fixed_number_of_queries(client, django_assert_num_queries,
                                                                              scored_images):
    _client(client)
    # session, user, groups, the page's (signal, id) keyset, its rows, the import source names
    with django_assert_num_queries(6):
        client.get(reverse("ui:images"), {"sort": "consensus_desc", "ratings_min": "0"})
    factories.ImageFactory.create_batch(30)
    with django_assert_num_queries(6):
        client.get(reverse("ui:images"), {"sort": "consensus_desc", "ratings_min": "0"})


def test_invalid_signal_filters_are_ignored_with_a_notice(client, scored_images):
    html = _client(client).get(reverse("ui:images"), {"consensus_min": "2", "sort": "nope", "after": "x_y"}
                               ).content.decode()
    assert "were not valid and were ignored" in html and len(_ids(html)) == 6
    html = client.get(reverse("ui:images"), {"prescore_min": "0.75", "prescore_max": "0.2"}).content.decode()
    assert "were not valid and were ignored" in html and len(_ids(html)) == 2  # the minimum alone still applies


# --- the embedding map -------------------------------------------------------------------------------------------


def test_projection_is_seeded_in_the_unit_box_and_keeps_clusters_apart():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(2, 32)) * 5
    points = np.concatenate([c + rng.normal(size=(20, 32)) * 0.1 for c in centres])
    coords, method = projection.project_2d(points)
    again, _ = projection.project_2d(points)
    assert method == projection.METHOD_TSNE and coords.shape == (40, 2)
    assert np.allclose(coords, again) and coords.min() >= 0 and coords.max() <= 1
    a, b = coords[:20].mean(axis=0), coords[20:].mean(axis=0)
    spread = max(coords[:20].std(axis=0).max(), coords[20:].std(axis=0).max())
    assert np.linalg.norm(a - b) > 4 * spread
    big, method = projection.project_2d(points, tsne_max_points=10)
    assert method == projection.METHOD_PCA and big.shape == (40, 2)
    single, _ = projection.project_2d(points[:1])
    assert single.tolist() == [[0.5, 0.5]]
    with pytest.raises(ValueError):
        projection.project_2d(np.zeros((0, 4)))


def test_embedding_map_is_computed_once_and_stored_for_the_runs_embeddings():
    scene = explored_image(raters=1, seed=1000)
    FilterResult.objects.create(run=scene.run, image=factories.ImageFactory())  # not scored: no embedding
    stored = curation_services.embedding_map_compute(run_id=scene.run.pk)
    assert stored.point_count == 3
    assert {p[0] for p in stored.points} == {scene.image.pk, *(d.pk for d in scene.duplicates)}
    assert all(0 <= p[1] <= 1 and 0 <= p[2] <= 1 for p in stored.points)
    curation_services.embedding_map_compute(run_id=scene.run.pk)
    assert EmbeddingMap.objects.filter(run=scene.run).count() == 1
    empty = FilterRun.objects.create(name="empty", created_by=scene.curator)
    assert curation_services.embedding_map_compute(run_id=empty.pk) is None
    with pytest.raises(ServiceError, match="no image embeddings"):
        curation_services.embedding_map_enqueue(run=empty)


def test_map_page_says_to_run_a_filter_run_first_when_there_are_no_embeddings(client):
    html = _client(client).get(reverse("ui:image_map")).content.decode()
    assert 'data-testid="map-empty"' in html and "run a filter run first" in html


def test_map_page_offers_to_compute_then_draws_the_stored_points_with_their_signals(client):
    scene = explored_image(raters=1, seed=1100)
    _client(client, scene.curator)
    html = client.get(reverse("ui:image_map")).content.decode()
    assert 'data-testid="map-not-computed"' in html and 'data-testid="map-compute"' in html
    assert 'data-testid="map-random-weights"' in html
    curation_services.embedding_map_compute(run_id=scene.run.pk)
    response = client.get(reverse("ui:image_map"), {"run": scene.run.pk, "colour": "consensus"})
    data = response.context["map_data"]
    assert sorted(data["id"]) == sorted([scene.image.pk, *(d.pk for d in scene.duplicates)])
    me = data["id"].index(scene.image.pk)
    assert data["status"][me] == "in_campaign" and data["proposal"][me] == "keep" and data["consensus"][me] is not None
    assert 'id="map-data"' in response.content.decode()


def test_compute_without_a_run_changes_nothing_and_says_so(client):
    response = _client(client).post(reverse("ui:image_map_compute"), {"run": "987654"}, follow=True)
    assert "Choose a filter run" in response.content.decode() and not EmbeddingMap.objects.exists()


def test_lasso_selection_opens_the_gallery_on_exactly_those_images(client):
    images = factories.ImageFactory.create_batch(5)
    chosen = [images[0].pk, images[3].pk]
    response = _client(client).post(reverse("ui:image_map_select"),
                                    {"image_ids": ",".join(map(str, chosen)), "back": "/images/map/?run=1"})
    selection = ImageSelection.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/images/?selection={selection.pk}"
    html = client.get(response["Location"]).content.decode()
    assert sorted(_ids(html)) == sorted(chosen) and 'data-testid="selection-note"' in html
    # the selection combines with the other filters and survives paging links
    images[0].status = ImageStatus.REJECTED
    images[0].save()
    assert _ids(client.get(reverse("ui:images"), {"selection": selection.pk, "status": "rejected"}).content.decode()) \
        == [images[0].pk]


@pytest.mark.parametrize("raw, message", [
    ("", "empty"), ("1,x", "not a list of image ids"), ("987654", "No image with id"), ("-3", "Not an image id"),
])
def test_bad_selections_store_nothing_and_say_why(client, raw, message):
    factories.ImageFactory()
    response = _client(client).post(reverse("ui:image_map_select"), {"image_ids": raw}, follow=True)
    assert message in response.content.decode() and not ImageSelection.objects.exists()


def test_selection_size_is_bounded(monkeypatch):
    image = factories.ImageFactory()
    monkeypatch.setattr(curation_limits, "SELECTION_MAX_IMAGES", 2)
    with pytest.raises(ServiceError, match="At most 2"):
        curation_services.image_selection_create(image_ids=[image.pk, image.pk + 1, image.pk + 2],
                                                 created_by=factories.curator())
    assert not ImageSelection.objects.exists()
    stored = curation_services.image_selection_create(image_ids=[image.pk, image.pk], created_by=factories.curator())
    assert list(stored.items.values_list("image_id", flat=True)) == [image.pk] and stored.size == 1


def test_unknown_selection_in_the_gallery_is_reported_not_ignored_silently(client):
    factories.ImageFactory.create_batch(2)
    html = _client(client).get(reverse("ui:images"), {"selection": "987654"}).content.decode()
    assert "were not valid and were ignored" in html and len(_ids(html)) == 2


def test_overall_consensus_prefers_a_campaign_over_an_imported_label():
    scene = explored_image(raters=1, seed=1200)
    label_imported(scene.image, overall=0.01, source="explorer-set")
    page = gallery_page(GalleryFilters(duplicate_group=scene.image.near_duplicate_group), page_size=10)
    me = next(i for i in page.images if i.pk == scene.image.pk)
    campaign_overall = scene.scores[scene.annotators[0].get_username()][DIMENSIONS[OVERALL_INDEX].key]
    assert me.sig_consensus == pytest.approx(campaign_overall)


@pytest.mark.parametrize("sort", ["consensus_desc", "oldest", "ratings_asc"])
def test_show_more_links_walk_every_image_once_in_the_sort_order(client, sort):
    from annotator_ui.gallery import GALLERY_PAGE_SIZE

    images = factories.ImageFactory.create_batch(GALLERY_PAGE_SIZE + 9)
    for i, image in enumerate(images[:40]):
        label_imported(image, overall=round((i * 37 % 100) / 100, 2), source="s")  # ties included
    expected = [i.pk for i in gallery_page(GalleryFilters(sort=sort), page_size=1000).images]
    _client(client)
    seen, query = [], f"sort={sort}"
    for _ in range(5):
        html = client.get(f"{reverse('ui:images')}?{query}").content.decode()
        seen += _ids(html)
        match = re.search(r'data-testid="gallery-older"\s+href="\?([^"]+)"', html)
        if not match:
            break
        query = match.group(1).replace("&amp;", "&")
    assert seen == expected and len(seen) == len(images)
    if sort == "oldest":
        assert seen == sorted(seen)


def test_skips_and_flags_are_in_the_history(client):
    image = factories.ImageFactory(status=ImageStatus.APPROVED)
    skipper, flagger = factories.annotator(), factories.annotator()
    campaign = annotation_services.campaign_create(
        name="flags", mode="overall", created_by=factories.curator(), image_ids=[image.pk], redundancy=2,
        annotators=[skipper, flagger], state="active", gold_ratio=0.0)
    lease = annotation_services.task_lease_next(campaign=campaign, annotator=skipper)
    annotation_services.assignment_skip(assignment_id=lease.id, annotator=skipper)
    lease = annotation_services.task_lease_next(campaign=campaign, annotator=flagger)
    annotation_services.assignment_flag(assignment_id=lease.id, annotator=flagger, reason="blank")
    html = _client(client).get(reverse("ui:image_detail", args=[image.pk])).content.decode()
    assert 'data-kind="skipped"' in html and 'data-kind="flagged"' in html
    assert f"Flagged by {flagger.get_username()}" in html


def test_the_map_task_computes_the_map_of_its_run():
    from aesplatform.curation import tasks as curation_tasks

    scene = explored_image(raters=1, seed=1300)
    curation_tasks.embedding_map_compute(scene.run.pk)  # as a worker runs it (called in-process)
    assert EmbeddingMap.objects.get(run=scene.run).point_count == 3
    curation_tasks.embedding_map_compute(987654)  # a run that is gone: nothing, no error


def test_map_page_query_count_does_not_grow_with_the_points(client, django_assert_max_num_queries):
    scene = explored_image(raters=1, seed=1400)
    curation_services.embedding_map_compute(run_id=scene.run.pk)
    _client(client, scene.curator)
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("ui:image_map"))
    rng = np.random.default_rng(0)
    for _ in range(40):
        FilterResult.objects.create(run=scene.run, image=factories.ImageFactory(),
                                    embedding=rng.normal(size=16).astype(np.float16).tobytes())
    curation_services.embedding_map_compute(run_id=scene.run.pk)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(reverse("ui:image_map"))
    assert len(response.context["map_data"]["id"]) == 43


def test_curator_reviews_of_ratings_show_on_the_columns_and_in_the_history(client):
    scene = explored_image(raters=2, seed=1500)
    reviewer = factories.curator()
    first, second = (user.annotations.get() for user in scene.annotators)
    annotation_services.annotation_review(annotation_id=first.pk, reviewer=reviewer, state="rejected",
                                          reason="rated the background")
    annotation_services.annotation_review_correct(annotation_id=second.pk, reviewer=reviewer,
                                                  scores={d.key: 0.7 for d in DIMENSIONS}, reason="typo",
                                                  idempotency_key=uuid.uuid4())
    html = _client(client, scene.curator).get(reverse("ui:image_detail", args=[scene.image.pk])).content.decode()
    badges = re.findall(r'data-testid="rating-review" title="([^"]*)">(\w+)<', html)
    assert ("rated the background", "rejected") in badges
    assert any(state == "corrected" and "typo" in note for note, state in badges)
    assert 'data-kind="rating-review"' in html and "rated the background" in html
    assert f"corrected by {reviewer.get_username()}" in html
