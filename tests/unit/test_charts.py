"""The dashboards' charts: no hand-drawn SVG chart is left in a template or a view; every chart is Chart.js data
(json_script) with a data table, with the right values, negative ones included, and dimension names, not keys."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import pytest
from django.template import Context, Template
from django.urls import reverse

from annotator_ui import charts
from model_core.standard import DIMENSION_KEYS, DIMENSIONS, OVERALL
from tests.support.charts import DISAGREED, REPORT, campaign_with_disagreement
from tests.support.modeling import logged_in_client

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "annotator_ui" / "templates"
CHART_MARKUP = re.compile(r"<(polyline|polygon|rect|line|circle|path)\b|viewBox", re.IGNORECASE)


def _chart_data(html: str, data_id: str) -> dict:
    match = re.search(rf'<script id="{re.escape(data_id)}" type="application/json">(.*?)</script>', html, re.S)
    assert match, f"no json_script {data_id}"
    return json.loads(match.group(1))


def _table(html: str, chart_id: str) -> str:
    return unescape(html.split(f'data-testid="{chart_id}-table"')[1].split("</table>")[0])


def test_no_template_or_view_draws_a_chart_by_hand():
    offenders = []
    for path in TEMPLATES.rglob("*.html"):
        text = path.read_text()
        for svg in re.findall(r"<svg\b.*?</svg>", text, re.S | re.I):
            if 'aria-hidden="true"' not in svg.split(">", 1)[0]:  # only decorative icons may be inline SVG
                offenders.append(f"{path.relative_to(ROOT)}: <svg> that is not an aria-hidden icon")
        outside_icons = re.sub(r"<svg\b.*?</svg>", "", text, flags=re.S | re.I)
        if CHART_MARKUP.search(outside_icons):
            offenders.append(f"{path.relative_to(ROOT)}: SVG shapes outside an icon")
    for path in (ROOT / "annotator_ui").rglob("*.py"):
        if re.search(r"<svg|<polyline|<rect ", path.read_text()):
            offenders.append(f"{path.relative_to(ROOT)}: builds SVG markup")
    assert not (TEMPLATES / "annotator_ui" / "campaigns" / "_bars.html").exists()
    assert offenders == []


def test_pages_with_charts_load_the_vendored_library_and_no_cdn():
    vendored = ROOT / "annotator_ui" / "static" / "vendor" / "chart.umd.min.js"
    assert vendored.read_text()[:200].count("Chart.js v4.") == 1
    scripts = (TEMPLATES / "annotator_ui" / "_chart_scripts.html").read_text()
    assert "{% static 'vendor/chart.umd.min.js' %}" in scripts and "http" not in scripts
    readme = (ROOT / "annotator_ui" / "static" / "vendor" / "README.md").read_text()
    assert "chart.umd.min.js" in readme and "4.6.1" in readme and "MIT" in readme


@pytest.mark.django_db
def test_campaign_dashboard_agreement_chart_has_the_negative_alpha_and_dimension_names(curator_user):
    campaign = campaign_with_disagreement(curator=curator_user)
    html = logged_in_client(curator_user).get(reverse("ui:campaign_detail", args=[campaign.pk])).content.decode()
    assert "<script>" not in html and " style=" not in html
    data = _chart_data(html, "chart-agreement-data")
    assert data["labels"] == [d.name for d in DIMENSIONS] and not set(data["labels"]) & set(DIMENSION_KEYS)
    alpha, icc = data["series"]
    assert alpha["name"] == "Krippendorff's α" and icc["name"] == "ICC(1,1)"
    disagreed = alpha["values"][DISAGREED.index]
    assert disagreed is not None and disagreed < 0  # drawn left of zero, not as nothing
    assert alpha["values"][OVERALL.index] == pytest.approx(1.0)
    assert data["horizontal"] and data["x_title"] == "Dimension" and data["y_title"] == "Agreement (α, ICC)"
    table = _table(html, "chart-agreement")
    assert f"<th scope=\"row\">{DISAGREED.name}</th><td class=\"num\">{disagreed:.3f}</td>" in table
    assert f"{disagreed:.3f}".startswith("-")
    # histograms: one per dimension, named, with the 6 ratings of each dimension in its bins
    for d in DIMENSIONS:
        hist = _chart_data(html, f"chart-hist-{d.key}-data")
        assert hist["kind"] == "histogram" and hist["title"] == d.name and sum(hist["series"][0]["values"]) == 6
        assert hist["x_title"] == "Score" and hist["y_title"] == "Annotations"
    # throughput: the six annotations in the hour they were made, labelled with the date and hour
    through = _chart_data(html, "chart-throughput-data")
    assert sum(through["series"][0]["values"]) == 6 and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:00", through["labels"][0])
    assert through["x_title"] == "Hour (UTC)"


def test_throughput_fills_empty_hours_and_switches_to_days_over_three_days():
    hourly = charts.throughput_chart([("2026-11-28T22:00:00+00:00", 3), ("2026-11-29T01:00:00+00:00", 2)])
    assert hourly["data"]["labels"] == ["2026-11-28 22:00", "2026-11-28 23:00", "2026-11-29 00:00", "2026-11-29 01:00"]
    assert hourly["data"]["series"][0]["values"] == [3, 0, 0, 2] and hourly["title"] == "Annotations per hour"
    daily = charts.throughput_chart([("2026-11-01T10:00:00+00:00", 4), ("2026-11-01T11:00:00+00:00", 1),
                                     ("2026-11-05T09:00:00+00:00", 2)])
    assert daily["data"]["labels"] == ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04", "2026-11-05"]
    assert daily["data"]["series"][0]["values"] == [5, 0, 0, 0, 2] and daily["data"]["x_title"] == "Day (UTC)"
    empty = charts.throughput_chart([])
    assert empty["data"]["labels"] == [] and empty["summary"].endswith("no values.")


def test_unknown_values_stay_null_and_read_not_available():
    chart = charts.chart(chart_id="c", kind="bar", title="T", labels=["a", "b", "c"],
                         series=[("v", [0.5, None, float("nan")])], x_title="X", y_title="Y", decimals=2)
    assert chart["data"]["series"][0]["values"] == [0.5, None, None]
    assert [r["values"] for r in chart["rows"]] == [["0.50"], ["not available"], ["not available"]]
    with pytest.raises(ValueError):
        charts.chart(chart_id="c", kind="pie", title="T", labels=["a"], series=[("v", [1])], x_title="X", y_title="Y")
    with pytest.raises(ValueError):
        charts.chart(chart_id="c", kind="bar", title="T", labels=["a"], series=[("v", [1, 2])], x_title="X",
                     y_title="Y")


def test_loss_chart_has_a_numeric_step_axis_and_a_table_of_spread_points():
    points = [[step, 1.0 / step] for step in range(1, 501)]
    chart = charts.loss_chart(points)
    assert chart["data"]["x_values"] == list(range(1, 501)) and chart["data"]["y_title"] == "Loss"
    assert chart["data"]["x_title"] == "Step" and chart["data"]["kind"] == "line"
    rows = chart["rows"]
    assert len(rows) == charts.MAX_TABLE_ROWS and not chart["table_complete"]
    assert rows[0] == {"label": "1", "values": ["1.0000"]} and rows[-1] == {"label": "500", "values": ["0.0020"]}
    assert charts.loss_chart([]) is None


def test_dimension_keys_become_names_in_tables():
    rendered = Template("{% load dimensions %}{{ keys|dimension_names|join:', ' }}").render(
        Context({"keys": ["facial_brightness", "comprehensive"]}))
    assert rendered == "Facial Brightness, Comprehensive Aesthetic Score"


@pytest.mark.django_db
def test_model_page_charts_per_head_and_per_dimension_with_a_negative_correlation(curator_user, tmp_path):
    from aesplatform.modeling.models import ModelVersion

    model = ModelVersion.objects.create(name="charted", checkpoint_path=str(tmp_path), metrics=REPORT)
    html = logged_in_client(curator_user).get(reverse("ui:model_detail", args=[model.pk])).content.decode()
    heads = _chart_data(html, "chart-heads-data")
    assert heads["labels"] == ["lm", "regression", "expert", "metavoter"]
    assert [s["name"] for s in heads["series"]] == ["PLCC", "SRCC", "KRCC"]
    assert heads["series"][0]["values"] == pytest.approx([0.8, 0.81, 0.82, 0.83])
    dims = _chart_data(html, "chart-dimensions-data")
    assert dims["labels"] == ["Facial Brightness", "Comprehensive Aesthetic Score"]
    assert dims["series"][0]["values"] == [-0.25, 0.75]
    assert "<td class=\"num\">-0.250</td>" in _table(html, "chart-dimensions")
    assert 'src="/static/vendor/chart.umd.min.js"' in html and 'src="/static/annotator_ui/js/charts.js"' in html


def test_the_production_static_pipeline_takes_the_vendored_chart_library(settings, tmp_path):
    """whitenoise's manifest storage (production collectstatic) refuses a file that names a missing source map."""
    from django.core.management import call_command

    settings.STATIC_ROOT = tmp_path / "static"
    settings.STORAGES = {**settings.STORAGES,
                         "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}}
    call_command("collectstatic", interactive=False, verbosity=0)
    manifest = json.loads((tmp_path / "static" / "staticfiles.json").read_text())["paths"]
    assert manifest["vendor/chart.umd.min.js"].startswith("vendor/chart.umd.min.")
    assert manifest["annotator_ui/js/charts.js"].startswith("annotator_ui/js/charts.")


@pytest.mark.django_db
def test_filter_run_page_charts_each_clip_group_with_its_threshold_marked(curator_user):
    from aesplatform.curation import services as curation_services
    from tests.support.curation import PIXEL_ONLY, run_in_process
    from tests.support.scenes import TINY_MODEL, stored_scenes

    images = stored_scenes(3)
    run = run_in_process(curation_services.filter_run_create(
        created_by=curator_user, image_ids=[i.pk for i in images], thresholds=PIXEL_ONLY, clip_model_name=TINY_MODEL,
        clip_checkpoint="", enqueue=False))
    client = logged_in_client(curator_user)
    html = client.get(f"/filtering/{run.pk}/").content.decode()
    groups = run.prompt_set["groups"]
    for group, spec in groups.items():
        data = _chart_data(html, f"chart-clip-{group}-data")
        assert data["title"] == f"CLIP “{spec.get('label') or group.replace('_', ' ')}”"
        assert sum(data["series"][0]["values"]) == 3 and data["x_title"] == "Probability"
        assert data["markers"] == []  # PIXEL_ONLY switches the CLIP rules off
    # a new threshold (htmx swaps the review part): its chart marks it
    group = next(iter(groups))
    fragment = client.post(f"/filtering/{run.pk}/thresholds/", {f"clip.{group}.min": "0.3"},
                           HTTP_HX_REQUEST="true").content.decode()
    assert _chart_data(fragment, f"chart-clip-{group}-data")["markers"] == [{"value": 0.3, "label": "at least 0.30"}]
    assert 'src="/static/vendor/chart.umd.min.js"' in html
