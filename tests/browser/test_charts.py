"""The dashboards' charts in a browser: Chart.js (vendored) draws every chart on a canvas of real size under the
Content-Security-Policy (the `page` fixture fails a test on any violation or script error), a negative agreement
is drawn left of zero and is in the chart's data table, the charts of htmx-swapped fragments are drawn again, and
a filter run's CLIP histograms mark their thresholds."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from aesplatform.annotation import services as annotation_services
from aesplatform.curation import services as curation_services
from aesplatform.modeling.models import ModelVersion, TrainingJob
from model_core.standard import DIMENSIONS
from tests import factories
from tests.support.charts import DISAGREED, REPORT, campaign_with_disagreement
from tests.support.curation import PIXEL_ONLY, run_in_process
from tests.support.modeling import frozen_version, synthetic_images
from tests.support.scenes import TINY_MODEL, stored_scenes

pytestmark = pytest.mark.browser

# every chart canvas: drawn by charts.js, its size on the page, Chart.js's tick font sizes
CANVASES = """() => [...document.querySelectorAll('canvas[data-chart]')].map(c => {
  const chart = window.Chart.getChart(c); const box = c.getBoundingClientRect();
  return {id: c.dataset.chart, drawn: !!chart, width: box.width, height: box.height,
          label: c.getAttribute('aria-label'),
          fonts: chart ? Object.values(chart.scales).map(s => s.options.ticks.font.size) : [],
          titles: chart ? Object.values(chart.scales).map(s => s.options.title.text) : []};
})"""


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    # the live server runs in this process: keep submits from queueing work on the shared test broker
    monkeypatch.setattr(annotation_services, "_queue_quality_update", lambda campaign_id: None)


def _drawn(page, count: int) -> list[dict]:
    page.wait_for_function(f"() => document.querySelectorAll('canvas[data-chart-drawn]').length === {count}")
    canvases = page.evaluate(CANVASES)
    assert len(canvases) == count
    for c in canvases:
        assert c["drawn"] and c["width"] > 150 and 150 < c["height"] < 600, c
        assert all(11 <= size <= 14 for size in c["fonts"]), c  # readable, whatever the chart's width
        assert all(title for title in c["titles"]), c  # both axes titled
        assert c["label"], c
    return canvases


def test_campaign_dashboard_draws_agreement_histograms_and_throughput(page, login):
    curator = factories.curator()
    campaign = campaign_with_disagreement(curator=curator)
    login(page, curator)
    page.goto(f"/campaigns/{campaign.pk}/")
    canvases = _drawn(page, 1 + 1 + len(DIMENSIONS))  # throughput, agreement, one histogram per dimension
    assert {c["id"] for c in canvases} >= {"chart-agreement-data", "chart-throughput-data"}

    # the negative alpha: a bar left of the zero line, and its value in the chart's data table
    bar = page.evaluate("""() => {
      const chart = window.Chart.getChart(document.querySelector('canvas[data-chart="chart-agreement-data"]'));
      const el = chart.getDatasetMeta(0).data[%d];
      return {end: el.x, zero: chart.scales.x.getPixelForValue(0), value: chart.data.datasets[0].data[%d],
              label: chart.data.labels[%d]};
    }""" % ((DISAGREED.index,) * 3))
    assert bar["value"] < 0 and bar["end"] < bar["zero"] - 5 and bar["label"] == DISAGREED.name
    table = page.get_by_test_id("chart-agreement-table")
    expect(table.locator("tr", has_text=DISAGREED.name)).to_contain_text(f"{bar['value']:.3f}")
    page.get_by_test_id("chart-agreement").locator("summary").click()
    expect(table).to_be_visible()

    # the annotator table scrolls inside its own frame: the page itself does not get wider than the window
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    page.set_viewport_size({"width": 420, "height": 800})
    # Chart.js resizes its canvases on the next frames (ResizeObserver): wait for that, then nothing sticks out
    page.wait_for_function("() => document.documentElement.scrollWidth <= window.innerWidth")
    _drawn(page, 1 + 1 + len(DIMENSIONS))  # still drawn, resized to the narrow window


def test_model_page_and_the_live_training_job_draw_their_charts(page, login):
    curator = factories.curator()
    version = frozen_version(synthetic_images(4), user=curator)
    model = ModelVersion.objects.create(name="charted", checkpoint_path="/nonexistent", metrics=REPORT,
                                        dataset_version=version)
    job = TrainingJob.objects.create(dataset_version=version, preset="tiny-cpu", created_by=curator, state="running",
                                     step=3, total_steps=10, loss=0.42, loss_curve=[[1, 0.9], [2, 0.6], [3, 0.42]])
    login(page, curator)
    page.goto(f"/models/{model.pk}/")
    _drawn(page, 2)  # per head, per dimension
    expect(page.get_by_test_id("chart-dimensions-table").locator("tr", has_text="Facial Brightness")).to_contain_text(
        "-0.250")

    page.goto(f"/models/jobs/{job.pk}/")
    (loss,) = _drawn(page, 1)
    assert loss["titles"] == ["Step", "Loss"]
    # the live fragment is swapped in by htmx while the job runs: the new curve is drawn in the new canvas
    TrainingJob.objects.filter(pk=job.pk).update(state="succeeded", step=10, loss_curve=[[s, 1 / s] for s in
                                                                                          range(1, 11)])
    expect(page.get_by_test_id("job-live")).to_have_attribute("data-state", "succeeded")
    page.wait_for_function("""() => {
      const c = document.querySelector('canvas[data-chart="chart-loss-data"]');
      const chart = c && window.Chart.getChart(c);
      return chart && chart.data.datasets[0].data.length === 10;
    }""")
    _drawn(page, 1)


def test_filter_run_page_draws_a_clip_histogram_per_prompt_group_with_its_threshold(page, login):
    curator = factories.curator()
    thresholds = {**PIXEL_ONLY, "clip": {**PIXEL_ONLY["clip"], "person_subject": {"min": 0.3}}}
    run = run_in_process(curation_services.filter_run_create(
        created_by=curator, image_ids=[i.pk for i in stored_scenes(3)], thresholds=thresholds,
        clip_model_name=TINY_MODEL, clip_checkpoint="", enqueue=False))
    login(page, curator)
    page.goto(f"/filtering/{run.pk}/")
    canvases = _drawn(page, len(run.prompt_set["groups"]))
    assert {c["id"] for c in canvases} >= {"chart-clip-person_subject-data"}
    marker = page.evaluate("""() => window.Chart.getChart(
      document.querySelector('canvas[data-chart="chart-clip-person_subject-data"]')).options.plugins.aespMarkers.items""")
    assert marker == [{"value": 0.3, "label": "at least 0.30"}]
