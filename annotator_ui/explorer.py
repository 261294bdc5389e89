"""Reads of the image explorer: everything known about one image, in a fixed number of queries.

`image_detail` gathers the image's metadata and import, every filter signal of every filter run, the curators'
review decisions, its near-duplicate group, the labels per annotator and dimension with the consensus, the gold
status, the pre-scores per model version and head, the dataset versions and exports that contain it, and a
timeline assembled from those timestamped rows. Each kind of row is one query (no per-row lookups), so the cost
does not grow with the number of annotations, runs or models. Missing values stay None: the page shows them as
"not available", never as a made-up number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.core.exceptions import ObjectDoesNotExist

from aesplatform.annotation.models import Annotation, Assignment, AssignmentState, Consensus, ConsensusOrigin, Task
from aesplatform.catalog.models import Image
from aesplatform.curation.models import CuratorDecision, FilterResult
from aesplatform.datasets.models import DatasetItem, Export
from aesplatform.modeling.models import Prescore
from model_core.standard import DIMENSIONS, OVERALL

DUPLICATE_GROUP_LIMIT = 24  # members shown side by side; a larger group says how many more there are
PRESCORE_HEADS = (
    ("metavoter_score", "MetaVoter"),
    ("lm_score", "LM head"),
    ("regression_score", "Regression head"),
    ("uncertainty", "Uncertainty (LM level spread)"),
)


@dataclass
class TimelineEvent:
    at: datetime | None
    kind: str  # import, filter, review, annotation, correction, rating-review, skipped, flagged, consensus,
    # prescore, dataset, export
    text: str
    url: str = ""


@dataclass
class LabelColumn:
    """One annotator's current (latest) annotation in one campaign, or the campaign's consensus."""

    heading: str
    scores: list[float | None]
    is_consensus: bool = False
    is_expert: bool = False
    corrected: bool = False
    annotation_id: int | None = None
    detail: str = ""
    review: str = ""  # a curator's verdict on the rating: accepted, corrected, rejected ("" not reviewed)
    review_note: str = ""


@dataclass
class LabelTable:
    """The labels of one campaign (or the imported labels): one column per annotator, then the consensus."""

    title: str
    campaign_id: int | None
    is_gold: bool | None
    columns: list[LabelColumn] = field(default_factory=list)

    def rows(self) -> list[tuple[Any, list[LabelColumn], list[float | None]]]:
        """(dimension, columns, the column values in order), in the standard's order."""
        return [(d, self.columns, [c.scores[d.index] for c in self.columns]) for d in DIMENSIONS]


@dataclass
class ImageDetail:
    image: Image
    filter_results: list[FilterResult]
    decisions: list[CuratorDecision]
    duplicates: list[Image]
    duplicates_more: bool
    label_tables: list[LabelTable]
    prescores: list[Prescore]
    dataset_items: list[DatasetItem]
    exports: list[Export]
    timeline: list[TimelineEvent]
    annotation_count: int = 0

    @property
    def prescore_rows(self) -> list[tuple[str, str, list[float | None]]]:
        """(key, label, one value per model version) for each head, then each expert dimension."""
        heads = [(key, label, [getattr(p, key) for p in self.prescores]) for key, label in PRESCORE_HEADS]
        return heads + [(d.key, f"Expert: {d.name}", [getattr(p, d.key) for p in self.prescores]) for d in DIMENSIONS]

    @property
    def dimensions(self):
        return DIMENSIONS


def _annotator_name(user) -> str:
    return user.get_full_name() or user.get_username()


def _review_of(annotation: Annotation, annotations: list[Annotation]):
    """The curator's review of a rating: it sits on the chain's original annotation (None: not reviewed)."""
    by_id = {a.id: a for a in annotations}
    root = annotation
    while root.supersedes_id and root.supersedes_id in by_id:
        root = by_id[root.supersedes_id]
    try:
        return root.review
    except ObjectDoesNotExist:
        return None


def _label_tables(annotations: list[Annotation], consensus: list[Consensus], tasks: list[Task]) -> list[LabelTable]:
    tables: dict[Any, LabelTable] = {}
    gold = {t.campaign_id: t.is_gold for t in tasks}
    for task in tasks:
        tables.setdefault(task.campaign_id, LabelTable(title=task.campaign.name, campaign_id=task.campaign_id,
                                                       is_gold=task.is_gold))
    superseded = {a.supersedes_id for a in annotations if a.supersedes_id}
    for annotation in annotations:  # oldest first: a correction comes after what it corrects
        if annotation.id in superseded:
            continue
        campaign = annotation.task.campaign
        table = tables.setdefault(campaign.id, LabelTable(title=campaign.name, campaign_id=campaign.id,
                                                          is_gold=gold.get(campaign.id)))
        review = _review_of(annotation, annotations)
        note = ""
        if annotation.supersedes_id and annotation.corrected_by_id != annotation.annotator_id:
            note = f"corrected by {_annotator_name(annotation.corrected_by)}"
        if review is not None and review.reason:
            note = f"{note}; {review.reason}" if note else review.reason
        table.columns.append(LabelColumn(
            heading=_annotator_name(annotation.annotator), scores=annotation.scores_list(),
            is_expert=annotation.is_expert, corrected=annotation.supersedes_id is not None,
            annotation_id=annotation.id, review=review.state if review is not None else "", review_note=note,
        ))
    consensus_columns: dict[Any, LabelColumn] = {}
    for row in consensus:
        key = row.campaign_id if row.origin == ConsensusOrigin.CAMPAIGN else ("imported", row.label_source)
        if key not in tables:
            title = row.campaign.name if row.campaign_id else f"Imported label ({row.label_source or 'no source'})"
            tables[key] = LabelTable(title=title, campaign_id=row.campaign_id, is_gold=gold.get(row.campaign_id))
        column = consensus_columns.get(key)
        if column is None:
            column = consensus_columns[key] = LabelColumn(
                heading="Consensus" if row.origin == ConsensusOrigin.CAMPAIGN else "Imported label",
                scores=[None] * len(DIMENSIONS), is_consensus=True, detail=row.method,
            )
        column.scores[row.dimension] = row.score
    for key, column in consensus_columns.items():
        tables[key].columns.append(column)
    return list(tables.values())


def _timeline(detail: ImageDetail, annotations: list[Annotation], consensus: list[Consensus],
              set_aside: list[Assignment]) -> list[TimelineEvent]:
    from django.urls import reverse

    image = detail.image
    events = []
    job = image.import_job
    imported = f"Imported from {image.source}" + (f" by import #{job.id} ({job.get_kind_display()})" if job else "")
    events.append(TimelineEvent(image.created_at, "import", imported,
                                reverse("ui:import_detail", args=[job.id]) if job else ""))
    for result in detail.filter_results:
        if result.scored_at is None:
            continue
        proposal = result.proposed_decision or "no proposal"
        events.append(TimelineEvent(result.scored_at, "filter",
                                    f"Scored by filter run “{result.run.name}”: proposed {proposal}",
                                    reverse("ui:filter-run", args=[result.run_id])))
    for decision in detail.decisions:
        override = " (overriding the proposal)" if decision.overrode_proposal else ""
        events.append(TimelineEvent(decision.decided_at, "review",
                                    f"{decision.get_decision_display()}d by {_annotator_name(decision.decided_by)} "
                                    f"in review batch {decision.batch.number}{override}",
                                    reverse("ui:review-batch", args=[decision.batch_id])))
    for annotation in annotations:
        who = _annotator_name(annotation.annotator)
        overall = annotation.scores_list()[OVERALL.index]
        where = f"in “{annotation.task.campaign.name}”: overall {overall:.2f}"
        if annotation.supersedes_id:
            by = _annotator_name(annotation.corrected_by) if annotation.corrected_by_id else who
            reason = f" ({annotation.correction_reason})" if annotation.correction_reason else ""
            text = f"{who}'s rating corrected by {by} {where}{reason}"
            events.append(TimelineEvent(annotation.created_at, "correction", text))
        else:
            events.append(TimelineEvent(annotation.created_at, "annotation", f"Rated by {who} {where}"))
        try:
            review = annotation.review if not annotation.supersedes_id else None
        except ObjectDoesNotExist:
            review = None
        if review is not None:
            reason = f": {review.reason}" if review.reason else ""
            events.append(TimelineEvent(review.reviewed_at, "rating-review",
                                        f"{who}'s rating {review.get_state_display().lower()} by "
                                        f"{_annotator_name(review.reviewed_by)}{reason}"))
    for assignment in set_aside:
        verb = "Flagged" if assignment.state == AssignmentState.FLAGGED else "Skipped"
        events.append(TimelineEvent(assignment.finished_at, assignment.state,
                                    f"{verb} by {_annotator_name(assignment.annotator)} in "
                                    f"“{assignment.task.campaign.name}”"))
    latest: dict[Any, Consensus] = {}
    for row in consensus:
        key = (row.origin, row.campaign_id, row.label_source)
        if key not in latest or row.updated_at > latest[key].updated_at:
            latest[key] = row
    for row in latest.values():
        where = f"campaign “{row.campaign.name}”" if row.campaign_id else f"imported labels ({row.label_source})"
        events.append(TimelineEvent(row.updated_at, "consensus", f"Consensus ({row.method}) of {where} computed"))
    for prescore in detail.prescores:
        events.append(TimelineEvent(prescore.created_at, "prescore",
                                    f"Pre-scored by {prescore.model_version.name}: MetaVoter "
                                    f"{prescore.metavoter_score:.2f}",
                                    reverse("ui:model_detail", args=[prescore.model_version_id])))
    for item in detail.dataset_items:
        version = item.version
        if version.frozen_at:
            events.append(TimelineEvent(version.frozen_at, "dataset",
                                        f"Frozen into {version.name} v{version.version} ({item.split})",
                                        reverse("ui:dataset_detail", args=[version.id])))
    for export in detail.exports:
        events.append(TimelineEvent(export.finished_at or export.created_at, "export",
                                    f"Exported with {export.version} as {export.get_format_display()} "
                                    f"({export.state})",
                                    reverse("ui:dataset_detail", args=[export.version_id])))
    return sorted(events, key=lambda e: (e.at is None, e.at))


def image_detail(*, image_id: int) -> ImageDetail:
    """Everything the detail page shows; raises Image.DoesNotExist for an unknown id. Eleven queries at most."""
    image = Image.objects.select_related("import_job__created_by").get(pk=image_id)
    filter_results = list(
        FilterResult.objects.filter(image=image).select_related("run", "batch", "near_duplicate_of")
        .defer("embedding", "near_duplicate_of__file", "near_duplicate_of__thumbnail").order_by("-run_id")
    )
    for result in filter_results:
        # a run without a checkpoint scored with randomly initialised CLIP weights: its CLIP numbers mean nothing
        result.random_weights = result.run.random_weights
        result.clip_rows = sorted((result.clip_probabilities or {}).items())
    decisions = list(CuratorDecision.objects.filter(image=image).select_related("batch__run", "decided_by")
                     .order_by("decided_at", "id"))
    duplicates: list[Image] = []
    if image.near_duplicate_group is not None:
        duplicates = list(Image.objects.filter(near_duplicate_group=image.near_duplicate_group).exclude(pk=image.pk)
                          .only("id", "original_name", "width", "height", "status").order_by("id")
                          [: DUPLICATE_GROUP_LIMIT + 1])
    annotations = list(Annotation.objects.filter(task__image=image)
                       .select_related("annotator", "task__campaign", "corrected_by", "review__reviewed_by")
                       .order_by("id"))
    set_aside = list(Assignment.objects.filter(task__image=image, state__in=[AssignmentState.SKIPPED,
                                                                              AssignmentState.FLAGGED])
                     .select_related("annotator", "task__campaign").order_by("id"))
    tasks = list(Task.objects.filter(image=image).select_related("campaign").order_by("campaign_id"))
    consensus = list(Consensus.objects.filter(image=image).select_related("campaign")
                     .order_by("origin", "campaign_id", "dimension"))
    prescores = list(Prescore.objects.filter(image=image).select_related("model_version")
                     .order_by("-model_version__promoted", "-model_version_id"))
    dataset_items = list(DatasetItem.objects.filter(image=image).select_related("version")
                         .order_by("version__name", "-version__version"))
    exports = list(Export.objects.filter(version__items__image=image).select_related("version")
                   .order_by("-id")) if dataset_items else []
    detail = ImageDetail(
        image=image, filter_results=filter_results, decisions=decisions,
        duplicates=duplicates[:DUPLICATE_GROUP_LIMIT], duplicates_more=len(duplicates) > DUPLICATE_GROUP_LIMIT,
        label_tables=_label_tables(annotations, consensus, tasks), prescores=prescores,
        dataset_items=dataset_items, exports=exports, timeline=[],
        annotation_count=sum(1 for a in annotations if a.supersedes_id is None),
    )
    detail.timeline = _timeline(detail, annotations, consensus, set_aside)
    return detail



def map_point_signals(*, run_id: int, points: list) -> dict:
    """What the map draws: per point (in `points`' order) its id, x, y, status, overall consensus, pre-score,
    the run's proposal and near-duplicate group; None where unknown. Two queries, whatever the number of points."""
    from .gallery import with_signals

    signals = {
        row[0]: row[1:]
        for row in with_signals(Image.objects.filter(filter_results__run_id=run_id))
        .values_list("id", "status", "sig_consensus", "sig_prescore", "near_duplicate_group")
    }
    proposals = dict(FilterResult.objects.filter(run_id=run_id).values_list("image_id", "proposed_decision"))
    columns: dict[str, list] = {k: [] for k in ("id", "x", "y", "status", "consensus", "prescore", "proposal",
                                                 "group")}
    for image_id, x, y in points:
        found = signals.get(image_id)
        if found is None:
            continue  # the image was deleted since the map was computed
        status, consensus, prescore, group = found
        for key, value in (("id", image_id), ("x", x), ("y", y), ("status", status), ("consensus", consensus),
                           ("prescore", prescore), ("proposal", proposals.get(image_id) or None),
                           ("group", group)):
            columns[key].append(value)
    return columns
