// Draws every <canvas data-chart="ID"> with Chart.js (static/vendor/chart.umd.min.js, loaded before this file) from
// the JSON that annotator_ui/charts.py writes into <script type="application/json" id="ID"> (Django's json_script).
// Kinds: "bar" (vertical or horizontal, negative values below/left of a marked zero line, values written on the
// bars), "histogram" (equal bins over [0, 1] on a numeric score axis, thresholds marked as dashed lines) and
// "line" (a numeric x axis, e.g. steps).
// Every chart has titled axes; missing values are null: no bar, "n/a" written at zero. Nothing here needs eval or
// inline styles: Chart.js sizes its canvas through the CSSOM, which the Content-Security-Policy allows.
// Pages swapped in by htmx (the training job's live fragment) are drawn on htmx:load; charts whose canvas left the
// page are destroyed.
(function () {
  "use strict";

  var Chart = window.Chart;
  if (!Chart) return;

  var COLOURS = ["#1f3a8a", "#c2410c", "#0f766e", "#7c3aed"];
  var NEGATIVE = ["#b91c1c", "#f87171", "#9f1239", "#fb7185"];
  var GRID = "rgba(20, 23, 31, 0.08)";
  var ZERO = "#434b5a";
  var MAX_LABELLED_BARS = 40; // more bars than this: values in the tooltips and the data table only

  Chart.defaults.font.family = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
  Chart.defaults.font.size = 13;
  Chart.defaults.color = "#434b5a";
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;

  function format(value, decimals) {
    if (value === null || value === undefined || !isFinite(value)) return "n/a";
    return decimals ? Number(value).toFixed(decimals) : Number(value).toLocaleString("en-US");
  }

  // Writes each bar's value at its end (outside the bar: above or right for positive, below or left for negative).
  var valueLabels = {
    id: "aespValueLabels",
    afterDatasetsDraw: function (chart, args, options) {
      if (!options || !options.enabled) return;
      var horizontal = chart.options.indexAxis === "y";
      var valueScale = horizontal ? chart.scales.x : chart.scales.y;
      var zero = valueScale.getPixelForValue(0);
      var ctx = chart.ctx;
      ctx.save();
      ctx.font = "12px " + Chart.defaults.font.family;
      chart.data.datasets.forEach(function (dataset, i) {
        var meta = chart.getDatasetMeta(i);
        if (meta.hidden) return;
        meta.data.forEach(function (bar, j) {
          var value = dataset.data[j];
          if (value !== null && typeof value === "object") value = value.y;
          var missing = value === null || value === undefined;
          var negative = !missing && value < 0;
          var end = missing ? zero : horizontal ? bar.x : bar.y;
          var across = horizontal ? bar.y : bar.x;
          if (!isFinite(end) || !isFinite(across)) return;
          if (options.skipZero && value === 0) return; // histograms: empty bins need no "0" over them
          var text = format(value, options.decimals);
          if (!horizontal && bar.width && ctx.measureText(text).width > bar.width + 8) return; // would overlap
          ctx.fillStyle = negative ? NEGATIVE[0] : "#14171f";
          if (horizontal) {
            ctx.textBaseline = "middle";
            ctx.textAlign = negative ? "right" : "left";
            ctx.fillText(text, end + (negative ? -4 : 4), across);
          } else {
            ctx.textAlign = "center";
            ctx.textBaseline = negative ? "top" : "bottom";
            ctx.fillText(text, across, end + (negative ? 4 : -4));
          }
        });
      });
      ctx.restore();
    },
  };

  // Dashed vertical lines at given x values (a histogram's thresholds), each with its label at the top.
  var markers = {
    id: "aespMarkers",
    afterDatasetsDraw: function (chart, args, options) {
      if (!options || !options.items || !options.items.length) return;
      var area = chart.chartArea;
      var ctx = chart.ctx;
      ctx.save();
      ctx.font = "600 12px " + Chart.defaults.font.family;
      ctx.strokeStyle = NEGATIVE[0];
      ctx.fillStyle = NEGATIVE[0];
      ctx.lineWidth = 2;
      ctx.setLineDash([5, 4]);
      options.items.forEach(function (item) {
        var x = chart.scales.x.getPixelForValue(item.value);
        if (!isFinite(x)) return;
        ctx.beginPath();
        ctx.moveTo(x, area.top - 2);
        ctx.lineTo(x, area.bottom);
        ctx.stroke();
        var right = x > (area.left + area.right) / 2;
        ctx.textAlign = right ? "right" : "left";
        ctx.textBaseline = "bottom";
        ctx.fillText(item.label, x + (right ? 4 : -4), area.top - 3); // above the plot, clear of the bars' values
      });
      ctx.restore();
    },
  };

  function axisTitle(text) {
    return { display: true, text: text, font: { size: 13, weight: "600" } };
  }

  function gridLines() {
    // the zero line stands out, so that negative values read as below (or left of) zero
    return {
      color: function (context) { return context.tick && context.tick.value === 0 ? ZERO : GRID; },
      lineWidth: function (context) { return context.tick && context.tick.value === 0 ? 1.5 : 1; },
    };
  }

  function barColours(i) {
    return function (context) {
      var value = context.raw;
      if (value !== null && typeof value === "object") value = value.y;
      return value < 0 ? NEGATIVE[i % NEGATIVE.length] : COLOURS[i % COLOURS.length];
    };
  }

  function given(value) { return value !== null && value !== undefined; }

  // The value axis: from zero (or y_min), to y_max at least (exactly, when no value can be above it), with room
  // left of (below) the lowest negative value for its label.
  function valueAxisFor(spec) {
    var axis = {
      title: axisTitle(spec.y_title),
      grid: gridLines(),
      beginAtZero: true,
      ticks: { font: { size: 12 }, includeBounds: false },
    };
    if (!spec.decimals) axis.ticks.precision = 0; // counts: whole-number ticks
    var known = [];
    (spec.series || []).forEach(function (s) { s.values.forEach(function (v) { if (given(v)) known.push(v); }); });
    var lowest = Math.min.apply(null, [0].concat(known));
    var highest = Math.max.apply(null, [given(spec.y_max) ? spec.y_max : 0].concat(known));
    if (spec.y_max_fixed && given(spec.y_max)) axis.max = spec.y_max;
    else axis.grace = "8%";
    if (given(spec.y_min)) axis.suggestedMin = spec.y_min;
    if (given(spec.y_max)) axis.suggestedMax = spec.y_max;
    if (lowest < 0) axis.min = lowest - 0.15 * (highest - lowest);
    return axis;
  }

  // The legend shows each series' own colour (a bar's colour also says whether its value is negative).
  function legendLabels(chart) {
    var items = Chart.defaults.plugins.legend.labels.generateLabels(chart);
    items.forEach(function (item) {
      item.fillStyle = COLOURS[item.datasetIndex % COLOURS.length];
      item.strokeStyle = item.fillStyle;
    });
    return items;
  }

  function configFor(spec) {
    var labels = spec.labels || [];
    var series = spec.series || [];
    var decimals = spec.decimals || 0;
    var horizontal = !!spec.horizontal;
    var bars = labels.length * series.length;
    var valueAxis = valueAxisFor(spec);
    var tooltipLabel = function (context) {
      var value = horizontal ? context.parsed.x : context.parsed.y;
      return (context.dataset.label ? context.dataset.label + ": " : "") + format(value, decimals);
    };
    var plugins = {
      legend: {
        display: series.length > 1, position: "top",
        labels: { boxWidth: 14, font: { size: 13 }, generateLabels: legendLabels },
      },
      tooltip: { callbacks: { label: tooltipLabel } },
      aespValueLabels: { enabled: spec.kind !== "line" && bars <= MAX_LABELLED_BARS, decimals: decimals },
    };

    if (spec.kind === "line") {
      var xs = spec.x_values || labels.map(function (_, i) { return i; });
      return {
        type: "line",
        data: {
          datasets: series.map(function (s, i) {
            return {
              label: s.name,
              data: s.values.map(function (v, j) { return { x: xs[j], y: v }; }),
              borderColor: COLOURS[i % COLOURS.length],
              backgroundColor: COLOURS[i % COLOURS.length],
              borderWidth: 2,
              pointRadius: xs.length > 60 ? 0 : 2.5,
              spanGaps: false,
            };
          }),
        },
        options: {
          parsing: false,
          interaction: { mode: "nearest", intersect: false, axis: "x" },
          scales: {
            x: { type: "linear", title: axisTitle(spec.x_title), grid: { color: GRID }, ticks: { font: { size: 12 }, precision: 0 } },
            y: { title: axisTitle(spec.y_title), grid: gridLines(), grace: "5%", ticks: { font: { size: 12 } } },
          },
          plugins: {
            legend: plugins.legend,
            tooltip: {
              callbacks: {
                title: function (items) { return items.length ? spec.x_title + " " + format(items[0].parsed.x, 0) : ""; },
                label: function (context) { return context.dataset.label + ": " + format(context.parsed.y, decimals); },
              },
            },
          },
        },
      };
    }

    if (spec.kind === "histogram") {
      var n = labels.length || 1;
      return {
        type: "bar",
        data: {
          datasets: series.map(function (s, i) {
            return {
              label: s.name,
              data: s.values.map(function (v, j) { return { x: (j + 0.5) / n, y: v }; }),
              backgroundColor: COLOURS[i % COLOURS.length],
              barPercentage: 1,
              categoryPercentage: 1,
              borderColor: "#ffffff",
              borderWidth: 1,
            };
          }),
        },
        options: {
          parsing: false,
          layout: { padding: { top: spec.markers && spec.markers.length ? 20 : 4 } },
          scales: {
            x: {
              type: "linear", min: 0, max: 1, offset: false, title: axisTitle(spec.x_title), grid: { color: GRID },
              ticks: { stepSize: 0.2, font: { size: 12 } },
            },
            y: valueAxis,
          },
          plugins: {
            legend: { display: false },
            tooltip: {
              callbacks: {
                title: function (items) { return items.length ? spec.x_title + " " + labels[items[0].dataIndex] : ""; },
                label: tooltipLabel,
              },
            },
            aespValueLabels: { enabled: plugins.aespValueLabels.enabled, decimals: decimals, skipZero: true },
            aespMarkers: { items: spec.markers || [] },
          },
        },
      };
    }

    var categoryAxis = {
      title: axisTitle(spec.x_title),
      grid: { display: false },
      ticks: { autoSkip: !horizontal, maxRotation: 45, font: { size: 12 } },
    };
    if (horizontal) {
      // narrow screens: long names (dimensions) shortened on the axis; the tooltip and the data table have them whole
      categoryAxis.ticks.callback = function (value) {
        var label = String(this.getLabelForValue(value));
        return this.chart.width < 560 && label.length > 20 ? label.slice(0, 18) + "…" : label;
      };
    }
    return {
      type: "bar",
      data: {
        labels: labels,
        datasets: series.map(function (s, i) {
          return { label: s.name, data: s.values, backgroundColor: barColours(i), maxBarThickness: 48 };
        }),
      },
      options: {
        indexAxis: horizontal ? "y" : "x",
        layout: { padding: horizontal ? { right: 56, left: 8 } : { top: 20 } },
        scales: horizontal ? { x: valueAxis, y: categoryAxis } : { x: categoryAxis, y: valueAxis },
        plugins: plugins,
      },
    };
  }

  var drawn = [];

  function drawAll(root) {
    drawn = drawn.filter(function (chart) {
      if (chart.canvas && chart.canvas.isConnected) return true;
      chart.destroy();
      return false;
    });
    var canvases = (root && root.querySelectorAll ? root : document).querySelectorAll("canvas[data-chart]");
    Array.prototype.forEach.call(canvases, function (canvas) {
      if (Chart.getChart(canvas)) return;
      var source = document.getElementById(canvas.getAttribute("data-chart"));
      if (!source) return;
      var spec;
      try {
        spec = JSON.parse(source.textContent);
      } catch (e) {
        return; // the data table next to the canvas still has the numbers
      }
      drawn.push(new Chart(canvas, configFor(spec)));
      canvas.setAttribute("data-chart-drawn", "");
    });
  }

  Chart.register(valueLabels, markers);
  drawAll(document);
  document.addEventListener("htmx:load", function (event) { drawAll(event.detail && event.detail.elt); });
})();
