// The embedding map: a scatter of the images on a canvas, coloured by a signal, with a lasso (press, drag,
// release) that selects the images inside the drawn polygon; "Show in the gallery" posts their ids (the server
// saves them as a selection and opens the gallery on it). A click on a point opens that image's page.
// Point (x, y) in [0, 1] is drawn at (PAD + x * (width - 2 PAD), PAD + y * (height - 2 PAD)) in CSS pixels.
(function () {
  "use strict";

  var PAD = 20;
  var NULL_COLOUR = "#b8bec9";
  var STATUS_COLOURS = {
    imported: "#6b7280", filtered: "#2563eb", approved: "#15803d", rejected: "#b91c1c",
    in_campaign: "#7c3aed", broken: "#f59e0b",
  };
  var PROPOSAL_COLOURS = { keep: "#15803d", reject: "#b91c1c" };
  var RAMP = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]]; // viridis stops

  var canvas = document.querySelector("[data-map-canvas]");
  var dataNode = document.getElementById("map-data");
  if (!canvas || !dataNode) return;
  var data = JSON.parse(dataNode.textContent);
  var n = data.id.length;
  var ctx = canvas.getContext("2d");
  var colourSelect = document.querySelector("[data-map-colour]");
  var legend = document.querySelector("[data-map-legend]");
  var tip = document.querySelector("[data-map-tip]");
  var form = document.querySelector("[data-map-select-form]");
  var idsInput = form.querySelector("[data-map-ids]");
  var countOut = form.querySelector("[data-map-count]");
  var openButton = form.querySelector("[data-map-open]");
  var clearButton = form.querySelector("[data-map-clear]");

  var selected = new Uint8Array(n);
  var selectedCount = 0;
  var lasso = null; // [[x, y], ...] in CSS pixels while drawing
  var polygon = null; // the last closed lasso
  var size = { w: 0, h: 0 };
  var px = new Float32Array(n), py = new Float32Array(n);

  function ramp(t) {
    t = Math.max(0, Math.min(1, t)) * (RAMP.length - 1);
    var i = Math.min(RAMP.length - 2, Math.floor(t)), f = t - i, a = RAMP[i], b = RAMP[i + 1];
    return "rgb(" + [0, 1, 2].map(function (k) { return Math.round(a[k] + (b[k] - a[k]) * f); }).join(",") + ")";
  }

  function groupColour(g) {
    var h = (Math.abs(g) * 137.508) % 360;
    return "hsl(" + h.toFixed(0) + ", 65%, 45%)";
  }

  function colourOf(i) {
    var by = colourSelect ? colourSelect.value : "status";
    var v = data[by] ? data[by][i] : null;
    if (v === null || v === undefined || v === "") return NULL_COLOUR;
    if (by === "status") return STATUS_COLOURS[v] || NULL_COLOUR;
    if (by === "proposal") return PROPOSAL_COLOURS[v] || NULL_COLOUR;
    if (by === "group") return groupColour(v);
    return ramp(v);
  }

  function legendItems() {
    var by = colourSelect ? colourSelect.value : "status";
    if (by === "status") return Object.keys(STATUS_COLOURS).map(function (k) { return [k.replace("_", " "), STATUS_COLOURS[k]]; });
    if (by === "proposal") return [["keep", PROPOSAL_COLOURS.keep], ["reject", PROPOSAL_COLOURS.reject], ["not available", NULL_COLOUR]];
    if (by === "group") return [["each group its colour", groupColour(7)], ["in no group", NULL_COLOUR]];
    return [["0", ramp(0)], ["0.5", ramp(0.5)], ["1", ramp(1)], ["not available", NULL_COLOUR]];
  }

  function drawLegend() {
    if (!legend) return;
    legend.textContent = "";
    legendItems().forEach(function (item) {
      var li = document.createElement("li");
      var swatch = document.createElement("span");
      swatch.className = "map-legend__swatch";
      swatch.style.backgroundColor = item[1];
      li.appendChild(swatch);
      li.appendChild(document.createTextNode(item[0]));
      legend.appendChild(li);
    });
  }

  function layout() {
    var rect = canvas.getBoundingClientRect();
    var ratio = window.devicePixelRatio || 1;
    size.w = rect.width;
    size.h = rect.height;
    canvas.width = Math.round(rect.width * ratio);
    canvas.height = Math.round(rect.height * ratio);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    for (var i = 0; i < n; i++) {
      px[i] = PAD + data.x[i] * (size.w - 2 * PAD);
      py[i] = PAD + data.y[i] * (size.h - 2 * PAD);
    }
  }

  function draw() {
    ctx.clearRect(0, 0, size.w, size.h);
    var r = n > 5000 ? 1.6 : n > 1000 ? 2.4 : 3.6;
    for (var i = 0; i < n; i++) {
      ctx.fillStyle = colourOf(i);
      ctx.globalAlpha = selectedCount && !selected[i] ? 0.25 : 0.9;
      ctx.beginPath();
      ctx.arc(px[i], py[i], r, 0, 2 * Math.PI);
      ctx.fill();
      if (selected[i]) {
        ctx.globalAlpha = 1;
        ctx.strokeStyle = "#111827";
        ctx.lineWidth = 1;
        ctx.stroke();
      }
    }
    ctx.globalAlpha = 1;
    var path = lasso || polygon;
    if (path && path.length > 1) {
      ctx.beginPath();
      ctx.moveTo(path[0][0], path[0][1]);
      for (var k = 1; k < path.length; k++) ctx.lineTo(path[k][0], path[k][1]);
      if (!lasso) ctx.closePath();
      ctx.strokeStyle = "#1f3a8a";
      ctx.setLineDash([5, 4]);
      ctx.lineWidth = 1.5;
      ctx.stroke();
      ctx.setLineDash([]);
    }
  }

  function inside(x, y, poly) {
    var hit = false;
    for (var i = 0, j = poly.length - 1; i < poly.length; j = i++) {
      var xi = poly[i][0], yi = poly[i][1], xj = poly[j][0], yj = poly[j][1];
      if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) hit = !hit;
    }
    return hit;
  }

  function setSelection(poly) {
    selected.fill(0);
    selectedCount = 0;
    var ids = [];
    if (poly) {
      for (var i = 0; i < n; i++) {
        if (inside(px[i], py[i], poly)) { selected[i] = 1; selectedCount++; ids.push(data.id[i]); }
      }
    }
    polygon = selectedCount ? poly : null;
    idsInput.value = ids.join(",");
    countOut.textContent = selectedCount ? selectedCount + " image" + (selectedCount === 1 ? "" : "s") + " selected." : "Nothing selected.";
    openButton.disabled = !selectedCount;
    clearButton.disabled = !selectedCount;
    canvas.setAttribute("data-selected", String(selectedCount));
    draw();
  }

  function local(event) {
    var rect = canvas.getBoundingClientRect();
    return [event.clientX - rect.left, event.clientY - rect.top];
  }

  function nearest(p, within) {
    var best = -1, bestD = within * within;
    for (var i = 0; i < n; i++) {
      var dx = px[i] - p[0], dy = py[i] - p[1], d = dx * dx + dy * dy;
      if (d <= bestD) { best = i; bestD = d; }
    }
    return best;
  }

  canvas.addEventListener("pointerdown", function (event) {
    if (event.button !== 0) return;
    canvas.setPointerCapture(event.pointerId);
    lasso = [local(event)];
    if (tip) tip.hidden = true;
  });
  canvas.addEventListener("pointermove", function (event) {
    var p = local(event);
    if (lasso) {
      var last = lasso[lasso.length - 1];
      if (Math.abs(p[0] - last[0]) + Math.abs(p[1] - last[1]) >= 3) { lasso.push(p); draw(); }
      return;
    }
    if (!tip) return;
    var i = nearest(p, 6);
    if (i < 0) { tip.hidden = true; return; }
    tip.textContent = "";
    var img = document.createElement("img");
    img.src = "/api/images/" + data.id[i] + "/thumbnail/";
    img.alt = "";
    tip.appendChild(img);
    tip.appendChild(document.createTextNode("#" + data.id[i]));
    tip.style.left = Math.min(size.w - 110, p[0] + 12) + "px";
    tip.style.top = Math.max(0, p[1] - 120) + "px";
    tip.hidden = false;
  });
  canvas.addEventListener("pointerup", function (event) {
    if (!lasso) return;
    var path = lasso;
    lasso = null;
    if (path.length < 3) { // a click: open the point under it, or clear the selection
      var i = nearest(local(event), 6);
      if (i >= 0) { window.location.href = "/images/" + data.id[i] + "/"; return; }
      setSelection(null);
      return;
    }
    setSelection(path);
  });
  canvas.addEventListener("pointercancel", function () { lasso = null; draw(); });

  clearButton.addEventListener("click", function () { setSelection(null); });
  if (colourSelect) colourSelect.addEventListener("change", function () { drawLegend(); draw(); });
  window.addEventListener("resize", function () { layout(); setSelection(polygon); });

  layout();
  drawLegend();
  draw();
  canvas.setAttribute("data-ready", "true");
  canvas.setAttribute("data-points", String(n));
})();
