"""The image gallery: keyset pages, filters, a fixed number of queries (no N+1, no COUNT(*)), htmx append."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from aesplatform.catalog.models import Image, ImageStatus
from annotator_ui.selectors import GALLERY_PAGE_SIZE, image_gallery_page
from tests import factories

pytestmark = pytest.mark.django_db


def _ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'data-testid="image-(\d+)"', html)]


@pytest.fixture
def curator_client(client):
    client.force_login(factories.curator())
    return client


def test_query_count_does_not_grow_with_the_number_of_images(curator_client, django_assert_num_queries):
    url = reverse("ui:images")
    factories.ImageFactory.create_batch(3)
    # session, user, the user's groups (roles), the page of images, the import source names
    with django_assert_num_queries(5):
        few = curator_client.get(url)
    factories.ImageFactory.create_batch(GALLERY_PAGE_SIZE + 20)
    with django_assert_num_queries(5):
        many = curator_client.get(url)
    assert len(_ids(few.content.decode())) == 3
    assert len(_ids(many.content.decode())) == GALLERY_PAGE_SIZE
    # a deeper page adds one EXISTS probe for the "newer" link, whatever the depth
    older = re.search(r'data-testid="gallery-older"\s+href="\?([^"]+)"', many.content.decode()).group(1)
    with django_assert_num_queries(6):
        curator_client.get(f"{url}?{older.replace('&amp;', '&')}")


def test_no_count_and_no_offset_in_the_gallery_queries(curator_client):
    factories.ImageFactory.create_batch(GALLERY_PAGE_SIZE + 5)
    last = Image.objects.order_by("id").last().id
    with CaptureQueriesContext(connection) as ctx:
        curator_client.get(reverse("ui:images"), {"after": last - 10, "status": "imported"})
    image_sql = [q["sql"] for q in ctx.captured_queries if '"catalog_image"' in q["sql"]]
    assert image_sql
    for sql in image_sql:
        assert "COUNT(" not in sql.upper()
        assert "OFFSET" not in sql.upper()


def test_keyset_pages_walk_the_whole_catalog_newest_first(curator_client):
    images = factories.ImageFactory.create_batch(GALLERY_PAGE_SIZE * 2 + 7)
    all_ids = sorted((i.id for i in images), reverse=True)
    url = reverse("ui:images")
    seen, query = [], ""
    for _ in range(5):
        html = curator_client.get(f"{url}?{query}").content.decode()
        seen += _ids(html)
        match = re.search(r'data-testid="gallery-older"\s+href="\?([^"]+)"', html)
        if not match:
            assert 'data-testid="gallery-end"' in html
            break
        query = match.group(1).replace("&amp;", "&")
    assert seen == all_ids


def test_newer_link_goes_back_a_page():
    factories.ImageFactory.create_batch(25)
    ids = list(Image.objects.order_by("-id").values_list("id", flat=True))
    first = image_gallery_page(page_size=10)
    assert [i.id for i in first.images] == ids[:10] and first.newer_cursor is None and first.is_first
    second = image_gallery_page(page_size=10, after=first.older_cursor)
    assert [i.id for i in second.images] == ids[10:20] and second.newer_cursor == ids[10]
    back = image_gallery_page(page_size=10, before=second.newer_cursor)
    assert [i.id for i in back.images] == ids[:10]
    assert back.newer_cursor is None and back.older_cursor == ids[9] and back.is_first
    third = image_gallery_page(page_size=10, after=second.older_cursor)
    assert [i.id for i in third.images] == ids[20:] and third.older_cursor is None


def test_filters_by_status_and_source(curator_client):
    factories.ImageFactory.create_batch(3, status=ImageStatus.APPROVED, source="HumanBeauty-50K")
    factories.ImageFactory.create_batch(2, status=ImageStatus.APPROVED, source="web")
    factories.ImageFactory.create_batch(4, status=ImageStatus.REJECTED, source="web")
    url = reverse("ui:images")
    assert len(_ids(curator_client.get(url, {"status": "approved"}).content.decode())) == 5
    assert len(_ids(curator_client.get(url, {"source": "web"}).content.decode())) == 6
    html = curator_client.get(url, {"status": "approved", "source": "web"}).content.decode()
    assert len(_ids(html)) == 2
    html = curator_client.get(url, {"status": "in_campaign"}).content.decode()
    assert 'No image matches these filters' in html


def test_invalid_filter_values_are_ignored_with_a_notice(curator_client):
    factories.ImageFactory.create_batch(2)
    html = curator_client.get(reverse("ui:images"), {"status": "nonsense", "after": "abc"}).content.decode()
    assert "were not valid and were ignored" in html
    assert len(_ids(html)) == 2


def test_tiles_use_the_thumbnail_endpoint_and_lazy_loading(curator_client):
    image = factories.ImageFactory()
    html = curator_client.get(reverse("ui:images")).content.decode()
    assert f'src="/api/images/{image.id}/thumbnail/"' in html
    assert 'loading="lazy"' in html and f'alt="{image.original_name}"' in html


def test_htmx_request_returns_tiles_and_an_out_of_band_pager(curator_client):
    factories.ImageFactory.create_batch(GALLERY_PAGE_SIZE + 3)
    first = curator_client.get(reverse("ui:images")).content.decode()
    query = re.search(r'data-testid="gallery-older"\s+href="\?([^"]+)"', first).group(1).replace("&amp;", "&")
    response = curator_client.get(f"{reverse('ui:images')}?{query}", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert "<html" not in html  # a fragment, not the page
    assert len(_ids(html)) == 3
    assert 'id="gallery-pager"' in html and 'hx-swap-oob="true"' in html
    assert 'data-testid="gallery-end"' in html
