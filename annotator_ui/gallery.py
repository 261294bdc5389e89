"""The gallery's filters and sorts over the image signals, paged by keyset (no OFFSET, no COUNT(*)).

Each signal an image is filtered or sorted by is a correlated subquery (annotated as sig_<name>) of the page's one
query (so several never multiply each other's joins), evaluated only for the rows the query reads:

- consensus: the overall score of the image's consensus (a campaign's, newest first, else the imported label);
- ratings: the number of submitted annotations (corrections not counted twice);
- pre-score: the MetaVoter score of the promoted model's pre-score, else the newest one; uncertainty likewise;
- filter proposal: the newest scored filter result's proposal (keep / reject);
- review: the newest curator decision (approve / reject).

The default sort (newest first) pages by id. A sort by a signal pages by (signal, id): the cursor carries both,
and images without the signal (NULL) come last in either direction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import connection
from django.db.models import Exists, F, FloatField, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from aesplatform.annotation.models import Annotation, Consensus
from aesplatform.catalog.models import Image
from aesplatform.curation.models import CuratorDecision, FilterResult, ImageSelectionItem
from aesplatform.datasets.models import DatasetItem
from aesplatform.modeling.models import Prescore
from model_core.standard import OVERALL

GALLERY_PAGE_SIZE = 48

# sort key -> (label, signal annotation or "id", descending)
SORTS: dict[str, tuple[str, str, bool]] = {
    "newest": ("Newest first", "id", True),
    "oldest": ("Oldest first", "id", False),
    "consensus_desc": ("Consensus, highest first", "sig_consensus", True),
    "consensus_asc": ("Consensus, lowest first", "sig_consensus", False),
    "prescore_desc": ("Pre-score, highest first", "sig_prescore", True),
    "prescore_asc": ("Pre-score, lowest first", "sig_prescore", False),
    "uncertainty_desc": ("Pre-score uncertainty, highest first", "sig_uncertainty", True),
    "ratings_desc": ("Most ratings first", "sig_ratings", True),
    "ratings_asc": ("Fewest ratings first", "sig_ratings", False),
}
DEFAULT_SORT = "newest"
NULL_LAST_LOW = -1.0  # every signal is >= 0: a NULL sorts after every value, descending
NULL_LAST_HIGH = 1e12  # ... and ascending

PROPOSALS = (("keep", "Proposed keep"), ("reject", "Proposed reject"), ("none", "Not scored by a filter run"))
REVIEWS = (("approve", "Approved by a curator"), ("reject", "Rejected by a curator"), ("none", "Not reviewed"))
DUPLICATES = (("yes", "In a near-duplicate group"), ("no", "Not in a group"))


@dataclass
class GalleryFilters:
    status: str = ""
    source: str = ""
    import_job: int | None = None
    dataset_version: int | None = None
    consensus_min: float | None = None
    consensus_max: float | None = None
    ratings_min: int | None = None
    ratings_max: int | None = None
    prescore_min: float | None = None
    prescore_max: float | None = None
    proposal: str = ""
    review: str = ""
    duplicates: str = ""
    duplicate_group: int | None = None
    selection: int | None = None  # a saved selection (the map's lasso): only its images
    sort: str = DEFAULT_SORT


def _consensus_overall() -> Subquery:
    rows = (Consensus.objects.filter(image=OuterRef("pk"), dimension=OVERALL.index)
            .order_by("origin", "-updated_at", "-id").values("score")[:1])  # "campaign" < "imported"
    return Subquery(rows, output_field=FloatField())


def _prescore(column: str) -> Subquery:
    rows = (Prescore.objects.filter(image=OuterRef("pk"))
            .order_by("-model_version__promoted", "-id").values(column)[:1])
    return Subquery(rows, output_field=FloatField())


def _ratings() -> Coalesce:
    from .selectors import _count

    return _count(Annotation, "task__image", supersedes__isnull=True)


def _newest(model, column: str, **filters) -> Subquery:
    rows = model.objects.filter(image=OuterRef("pk"), **filters).order_by("-id").values(column)[:1]
    return Subquery(rows)


def with_signals(images: QuerySet[Image], *, ratings: bool = False) -> QuerySet[Image]:
    """The signals a tile shows (and a filter or sort reads), as columns of the same query. The number of ratings
    (a count per image) only where a filter or the sort needs it."""
    images = images.annotate(sig_consensus=_consensus_overall(), sig_prescore=_prescore("metavoter_score"),
                             sig_uncertainty=_prescore("uncertainty"))
    return images.annotate(sig_ratings=_ratings() if ratings else Value(None, output_field=IntegerField()))


def gallery_queryset(filters: GalleryFilters) -> QuerySet[Image]:
    f = filters
    needs_ratings = f.ratings_min is not None or f.ratings_max is not None or _sort_parts(f.sort)[0] == "sig_ratings"
    images = with_signals(Image.objects.only("id", "original_name", "width", "height", "format", "status", "source"),
                          ratings=needs_ratings)
    if f.status:
        images = images.filter(status=f.status)
    if f.source:
        images = images.filter(source=f.source)
    if f.import_job is not None:
        images = images.filter(import_job_id=f.import_job)
    if f.dataset_version is not None:
        images = images.filter(Exists(DatasetItem.objects.filter(version_id=f.dataset_version, image=OuterRef("pk"))))
    if f.selection is not None:
        chosen = ImageSelectionItem.objects.filter(selection_id=f.selection, image=OuterRef("pk"))
        images = images.filter(Exists(chosen))
    if f.duplicate_group is not None:
        images = images.filter(near_duplicate_group=f.duplicate_group)
    if f.duplicates == "yes":
        images = images.filter(near_duplicate_group__isnull=False)
    elif f.duplicates == "no":
        images = images.filter(near_duplicate_group__isnull=True)
    ranges = (("sig_consensus", f.consensus_min, f.consensus_max), ("sig_ratings", f.ratings_min, f.ratings_max),
              ("sig_prescore", f.prescore_min, f.prescore_max))
    for name, low, high in ranges:
        if low is not None:
            images = images.filter(**{f"{name}__gte": low})
        if high is not None:
            images = images.filter(**{f"{name}__lte": high})
    if f.proposal:
        scored = FilterResult.objects.filter(image=OuterRef("pk"), scored_at__isnull=False)
        if f.proposal == "none":
            images = images.filter(~Exists(scored))
        else:
            images = images.annotate(proposal=_newest(FilterResult, "proposed_decision", scored_at__isnull=False))
            images = images.filter(proposal=f.proposal)
    if f.review:
        if f.review == "none":
            images = images.filter(~Exists(CuratorDecision.objects.filter(image=OuterRef("pk"))))
        else:
            images = images.annotate(review=_newest(CuratorDecision, "decision")).filter(review=f.review)
    return images


@dataclass
class GalleryPage:
    images: list[Image] = field(default_factory=list)
    older_cursor: str | int | None = None  # ?after=<this> shows the next page
    newer_cursor: int | None = None  # ?before=<this> shows the previous page (id sorts only)
    is_first: bool = True


def _sort_parts(sort: str) -> tuple[str, bool]:
    _, signal, descending = SORTS.get(sort, SORTS[DEFAULT_SORT])
    return signal, descending


def _keyed(images: QuerySet[Image], sort: str) -> QuerySet[Image]:
    signal, descending = _sort_parts(sort)
    sentinel = NULL_LAST_LOW if descending else NULL_LAST_HIGH
    return images.annotate(sort_key=Coalesce(F(signal), Value(sentinel), output_field=FloatField()))


def _ordered(images: QuerySet[Image], sort: str, *, reverse: bool = False) -> QuerySet[Image]:
    signal, descending = _sort_parts(sort)
    descending = descending != reverse
    key = "id" if signal == "id" else "sort_key"
    return images.order_by(f"-{key}" if descending else key, "-id" if descending else "id")


def _beyond(images: QuerySet[Image], sort: str, key: float | int, image_id: int, *, reverse: bool = False):
    """Rows after (key, id) in the sort order (before it with reverse=True)."""
    signal, descending = _sort_parts(sort)
    descending = descending != reverse
    op = "lt" if descending else "gt"
    if signal == "id":
        return images.filter(**{f"id__{op}": image_id})
    return images.filter(Q(**{f"sort_key__{op}": key}) | Q(sort_key=key, **{f"id__{op}": image_id}))


def parse_cursor(raw: str | None) -> tuple[float, int] | None:
    """"<key>_<id>" -> (key, id); None for anything else (the caller reports it as an invalid value)."""
    if not raw:
        return None
    key, sep, image_id = raw.rpartition("_")
    try:
        return (float(key), int(image_id)) if sep and int(image_id) > 0 else None
    except ValueError:
        return None


def _signal_keyset(images: QuerySet[Image], sort: str, *, cursor: tuple[float, int] | None, limit: int,
                   reverse: bool = False) -> list[tuple[int, float]]:
    """(id, sort key) of the next `limit` rows after `cursor` in the sort order (before it with reverse=True).

    The signal is computed once per row: the keyed query is a derived table behind an OFFSET 0 fence (PostgreSQL
    would otherwise inline it and evaluate the subquery again in WHERE and ORDER BY: 5x slower measured on 50,000
    images), compared as a row value (sort_key, id)."""
    _, descending = _sort_parts(sort)
    descending = descending != reverse
    inner = images.order_by().values("id", "sort_key")
    sql, params = inner.query.sql_with_params()
    direction = "DESC" if descending else "ASC"
    where, args = "", list(params)
    if cursor is not None:
        where = f"WHERE (t.sort_key, t.id) {'<' if descending else '>'} (%s, %s)"
        args += [float(cursor[0]), int(cursor[1])]
    fence = "LIMIT -1 OFFSET 0" if connection.vendor == "sqlite" else "OFFSET 0"  # SQLite: no OFFSET without LIMIT
    query = (f"SELECT t.id, t.sort_key FROM ({sql} {fence}) t {where} "
             f"ORDER BY t.sort_key {direction}, t.id {direction} LIMIT %s")
    with connection.cursor() as db:
        db.execute(query, [*args, limit])
        return [(row[0], float(row[1])) for row in db.fetchall()]


def gallery_page(filters: GalleryFilters, *, after=None, before: int | None = None,
                 page_size: int = GALLERY_PAGE_SIZE) -> GalleryPage:
    """One page. Sorted by id: keyset on id both ways (`after`/`before` are ids, as before), one query. Sorted by a
    signal: `after` is a "<key>_<id>" cursor and the pages go forward only (the first page is one link away); two
    queries (the page's ids in order, then their rows)."""
    images = gallery_queryset(filters)
    signal, _ = _sort_parts(filters.sort)
    if signal == "id":
        return _id_page(images, filters.sort, after=after, before=before, page_size=page_size)
    cursor = parse_cursor(after) if isinstance(after, str) else None
    keys = _signal_keyset(_keyed(images, filters.sort), filters.sort, cursor=cursor, limit=page_size + 1)
    more = len(keys) > page_size
    keys = keys[:page_size]
    found = {image.id: image for image in images.filter(id__in=[image_id for image_id, _ in keys])}
    rows = []
    for image_id, key in keys:
        if image_id in found:  # (deleted in between: left out)
            found[image_id].sort_key = key
            rows.append(found[image_id])
    last = keys[-1] if keys else None
    return GalleryPage(images=rows, older_cursor=f"{last[1]!r}_{last[0]}" if more and last else None,
                       is_first=cursor is None)


def _id_page(images, sort, *, after, before, page_size) -> GalleryPage:
    """Keyset on id; "older"/"newer" follow the sort direction (newest first: older = smaller ids)."""
    descending = SORTS.get(sort, SORTS[DEFAULT_SORT])[2]
    forward, backward = ("lt", "gt") if descending else ("gt", "lt")
    order = "-id" if descending else "id"
    after = after if isinstance(after, int) else None
    if before is not None:
        rows = list(images.filter(**{f"id__{backward}": before}).order_by(order[1:] if descending else "-id")
                    [: page_size + 1])
        has_newer = len(rows) > page_size
        rows = rows[:page_size][::-1]
        if not rows:
            return GalleryPage(is_first=True)
        return GalleryPage(
            images=rows,
            newer_cursor=rows[0].id if has_newer else None,
            older_cursor=rows[-1].id if images.filter(**{f"id__{forward}": rows[-1].id}).exists() else None,
            is_first=not has_newer,
        )
    page = images.filter(**{f"id__{forward}": after}) if after is not None else images
    rows = list(page.order_by(order)[: page_size + 1])
    has_older = len(rows) > page_size
    rows = rows[:page_size]
    newer_cursor = None
    if after is not None:
        step = -1 if descending else 1
        probe_from = rows[0].id if rows else after + step
        newer_cursor = probe_from if images.filter(**{f"id__{backward}": probe_from}).exists() else None
    return GalleryPage(images=rows, older_cursor=rows[-1].id if has_older else None, newer_cursor=newer_cursor,
                       is_first=newer_cursor is None)


@dataclass
class Neighbours:
    previous: int | None = None
    next: int | None = None
    in_gallery: bool = False  # False: the image does not match the gallery's filters (no prev/next then)


def gallery_neighbours(filters: GalleryFilters, *, image_id: int) -> Neighbours:
    """The images before and after `image_id` in the gallery's order under these filters (three queries)."""
    images = gallery_queryset(filters)
    signal, _ = _sort_parts(filters.sort)
    if signal != "id":
        images = _keyed(images, filters.sort)
    me = images.filter(pk=image_id).values_list("sort_key" if signal != "id" else "id", flat=True).first()
    if me is None:
        return Neighbours()
    if signal != "id":
        following = _signal_keyset(images, filters.sort, cursor=(me, image_id), limit=1)
        preceding = _signal_keyset(images, filters.sort, cursor=(me, image_id), limit=1, reverse=True)
        return Neighbours(previous=preceding[0][0] if preceding else None,
                          next=following[0][0] if following else None, in_gallery=True)
    after = _ordered(_beyond(images, filters.sort, me, image_id), filters.sort).values_list("id", flat=True).first()
    before = (_ordered(_beyond(images, filters.sort, me, image_id, reverse=True), filters.sort, reverse=True)
              .values_list("id", flat=True).first())
    return Neighbours(previous=before, next=after, in_gallery=True)

