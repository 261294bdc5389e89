"""Chart data of the dashboards, drawn in the browser by Chart.js (static/vendor/chart.umd.min.js) through
static/annotator_ui/js/charts.js.

Every chart is one dict made here (`chart(...)`) and shown by the template `annotator_ui/_chart.html`: a <canvas>
with an aria-label, the same numbers as a table (readable without the canvas: screen readers, no script, tests),
and the data as `json_script` (JSON in a <script type="application/json">, which the CSP allows: nothing runs).
The views only call the shaping functions below, so that this is the one place that turns statistics into charts.
Dimension names come from model_core.standard (never the raw keys). Unknown values stay None: the table says
"not available" and the chart draws no bar for them.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Iterable, Sequence

from django.conf import settings

from model_core.standard import DIMENSION_BY_KEY

NOT_AVAILABLE = "not available"
KINDS = ("bar", "histogram", "line")
MAX_HOURLY_BUCKETS = 72  # a longer span of throughput is shown per day
MAX_DAILY_BUCKETS = 120  # the last this many days
MAX_TABLE_ROWS = 60  # a loss curve's table shows this many of its points (evenly spread, first and last included)


def _format(value, decimals: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return NOT_AVAILABLE
    return f"{value:.{decimals}f}" if decimals else f"{value:,.0f}"


def _clean(value):
    """JSON-safe number: None for a missing or non-finite value."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def chart(
    *,
    chart_id: str,
    kind: str,
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    x_title: str,
    y_title: str,
    decimals: int = 0,
    horizontal: bool = False,
    y_min: float | None = None,
    y_max: float | None = None,
    y_max_fixed: bool = False,
    size: str = "medium",
    table_rows: Iterable[int] | None = None,
) -> dict:
    """One chart: `series` is (name, values) pairs with one value per label; `table_rows` limits the table to these
    label indices (all by default). The value axis shows at least [y_min, y_max]; `y_max_fixed`: no value can be
    above y_max (a correlation, an agreement), so the axis ends there."""
    if kind not in KINDS:
        raise ValueError(f"unknown chart kind {kind!r}")
    labels = [str(label) for label in labels]
    clean = [(str(name), [_clean(v) for v in values]) for name, values in series]
    for name, values in clean:
        if len(values) != len(labels):
            raise ValueError(f"series {name!r} has {len(values)} values for {len(labels)} labels")
    known = [v for _, values in clean for v in values if v is not None]
    if known:
        summary = (f"{title}: {len(labels)} {x_title.lower()} values, {', '.join(n for n, _ in clean)} from "
                   f"{_format(min(known), decimals)} to {_format(max(known), decimals)}; the data table lists them.")
    else:
        summary = f"{title}: no values."
    indices = list(range(len(labels))) if table_rows is None else sorted(set(table_rows))
    return {
        "id": chart_id,
        "data_id": f"{chart_id}-data",
        "title": title,
        "summary": summary,
        "size": size,
        "x_title": x_title,
        "series_names": [name for name, _ in clean],
        "rows": [{"label": labels[i], "values": [_format(values[i], decimals) for _, values in clean]}
                 for i in indices],
        "table_complete": len(indices) == len(labels),
        "data": {
            "kind": kind, "title": title, "labels": labels, "x_title": x_title, "y_title": y_title,
            "series": [{"name": name, "values": values} for name, values in clean], "decimals": decimals,
            "horizontal": horizontal, "y_min": y_min, "y_max": y_max, "y_max_fixed": y_max_fixed,
        },
    }


def dimension_name(key: str) -> str:
    """The human name of a dimension key (the key itself only for a key the standard does not know)."""
    dim = DIMENSION_BY_KEY.get(key)
    return dim.name if dim else key


# --- campaign dashboard -------------------------------------------------------------------------------------------


def agreement_chart(dimensions: Sequence) -> dict:
    """Krippendorff's α and ICC(1,1) per dimension (DimensionStats); both can be negative (worse than chance)."""
    return chart(
        chart_id="chart-agreement", kind="bar", title="Agreement per dimension",
        labels=[d.name for d in dimensions],
        series=[("Krippendorff's α", [d.krippendorff_alpha for d in dimensions]),
                ("ICC(1,1)", [d.icc for d in dimensions])],
        x_title="Dimension", y_title="Agreement (α, ICC)", decimals=3,
        horizontal=True, y_min=0.0, y_max=1.0, y_max_fixed=True, size="tall" if len(dimensions) > 4 else "medium",
    )


def histogram_bin_labels(bins: int) -> list[str]:
    return [f"{i / bins:.2f}–{(i + 1) / bins:.2f}" for i in range(bins)]


def score_histogram_chart(*, chart_id: str, name: str, counts: Sequence[int], x_title: str = "Score",
                          y_title: str = "Annotations") -> dict:
    """Counts of values in equal bins over [0, 1]."""
    return chart(
        chart_id=chart_id, kind="histogram", title=name, labels=histogram_bin_labels(len(counts)),
        series=[(y_title, counts)], x_title=x_title, y_title=y_title, size="small",
    )


def campaign_histogram_charts(dimensions: Sequence) -> list[dict]:
    return [score_histogram_chart(chart_id=f"chart-hist-{d.key}", name=d.name, counts=d.histogram)
            for d in dimensions]


def _parse(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def throughput_chart(throughput: Sequence[tuple[str, int]]) -> dict:
    """Annotations per hour ((hour ISO, n) pairs, as campaign_stats gives them) on a continuous time axis: hours
    without annotations count 0; over more than MAX_HOURLY_BUCKETS hours, per day (the last MAX_DAILY_BUCKETS)."""
    counts = {_parse(hour): n for hour, n in throughput}
    zone = settings.TIME_ZONE
    if not counts:
        return chart(chart_id="chart-throughput", kind="bar", title="Annotations over time", labels=[],
                     series=[("Annotations", [])], x_title=f"Hour ({zone})", y_title="Annotations")
    first, last = min(counts), max(counts)
    hours = int((last - first) / timedelta(hours=1)) + 1
    if hours <= MAX_HOURLY_BUCKETS:
        stamps = [first + timedelta(hours=i) for i in range(hours)]
        labels = [s.strftime("%Y-%m-%d %H:00") for s in stamps]
        values = [counts.get(s, 0) for s in stamps]
        title, x_title = "Annotations per hour", f"Hour ({zone})"
    else:
        per_day: dict = {}
        for stamp, n in counts.items():
            per_day[stamp.date()] = per_day.get(stamp.date(), 0) + n
        day0, day1 = min(per_day), max(per_day)
        days = [day0 + timedelta(days=i) for i in range((day1 - day0).days + 1)][-MAX_DAILY_BUCKETS:]
        labels = [d.isoformat() for d in days]
        values = [per_day.get(d, 0) for d in days]
        title, x_title = "Annotations per day", f"Day ({zone})"
        if len(days) == MAX_DAILY_BUCKETS and days[0] != day0:
            title += f" (the last {MAX_DAILY_BUCKETS} days)"
    return chart(chart_id="chart-throughput", kind="bar", title=title, labels=labels,
                 series=[("Annotations", values)], x_title=x_title, y_title="Annotations", size="wide")


# --- filter runs ------------------------------------------------------------------------------------------------


def clip_histogram_charts(*, histograms: dict[str, list[int]], groups: dict, rules: dict) -> list[dict]:
    """One histogram per CLIP prompt group of a filter run (selectors.filter_run_clip_histograms), named by the
    group's label, with the group's threshold (a {"min": x} or {"max": x} rule; none when switched off) marked."""
    out = []
    for group, counts in histograms.items():
        label = (groups.get(group) or {}).get("label") or group.replace("_", " ")
        result = score_histogram_chart(chart_id=f"chart-clip-{group}", name=f"CLIP “{label}”", counts=counts,
                                       x_title="Probability", y_title="Images")
        rule = rules.get(group) or {}
        result["data"]["markers"] = [
            {"value": float(value), "label": f"{'at least' if direction == 'min' else 'at most'} {value:.2f}"}
            for direction, value in rule.items() if direction in ("min", "max") and value is not None
        ]
        out.append(result)
    return out


# --- modeling -----------------------------------------------------------------------------------------------------


def _spread(n: int, k: int) -> list[int]:
    """k indices spread evenly over range(n), the first and the last included."""
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def loss_chart(points: Sequence) -> dict | None:
    """Training loss per step ([step, loss] pairs); None before the first logged step."""
    if not points:
        return None
    steps = [int(p[0]) for p in points]
    losses = [float(p[1]) for p in points]
    result = chart(
        chart_id="chart-loss", kind="line", title="Training loss", labels=[str(s) for s in steps],
        series=[("Loss", losses)], x_title="Step", y_title="Loss", decimals=4, size="wide",
        table_rows=_spread(len(steps), MAX_TABLE_ROWS),
    )
    result["data"]["x_values"] = steps  # a linear step axis, not one category per logged step
    return result


def head_metrics_chart(report_rows: Sequence[dict], *, chart_id: str = "chart-heads") -> dict | None:
    """PLCC, SRCC and KRCC per head of an evaluation report (views_modeling._report_rows); None without rows."""
    if not report_rows:
        return None
    return chart(
        chart_id=chart_id, kind="bar", title="Correlation with the test labels per head",
        labels=[r["head"] for r in report_rows],
        series=[(name, [r.get(key) for r in report_rows]) for key, name in
                (("plcc", "PLCC"), ("srcc", "SRCC"), ("krcc", "KRCC"))],
        x_title="Head", y_title="Correlation", decimals=3, y_min=0.0, y_max=1.0, y_max_fixed=True,
    )


def dimension_metrics_chart(dimension_rows: Sequence[dict]) -> dict | None:
    """PLCC and SRCC of the expert head per dimension (rows carry the human name); None without rows."""
    if not dimension_rows:
        return None
    return chart(
        chart_id="chart-dimensions", kind="bar", title="PLCC and SRCC of the expert head per dimension",
        labels=[r["name"] for r in dimension_rows],
        series=[("PLCC", [r.get("plcc") for r in dimension_rows]), ("SRCC", [r.get("srcc") for r in dimension_rows])],
        x_title="Dimension", y_title="Correlation", decimals=3, horizontal=True, y_min=0.0, y_max=1.0,
        y_max_fixed=True, size="tall" if len(dimension_rows) > 4 else "medium",
    )


def compare_chart(rows: Sequence[dict], *, name_a: str, name_b: str) -> dict | None:
    """The compare page's rows (head, metric, a, b) as grouped bars: one pair per head and metric."""
    if not rows:
        return None
    return chart(
        chart_id="chart-compare", kind="bar", title="Both models per head and metric",
        labels=[f"{r['head']} {r['metric'].upper()}" for r in rows],
        series=[(name_a, [r["a"] for r in rows]), (name_b, [r["b"] for r in rows])],
        x_title="Head and metric", y_title="Value", decimals=3, y_min=0.0,
    )
