// The annotator's rating page. No inline script: the configuration comes from <script type="application/json">.
//
// Guarantees: every task has a client idempotency key (crypto.randomUUID) kept with a draft in localStorage, so a
// reload or a lost network restores the ratings and a retried submit is stored once (the server answers a repeat
// with the first result). Submits retry with exponential backoff while the network is down. The next task is
// leased and its image preloaded while the current one is rated.
//
// Skip (S) and flag (F) are sent at once, like a submit (retried until the server answers), and the page offers to
// undo them for a few seconds (U or Ctrl+Z): the undo is a second idempotent request (POST .../restore/) that
// leases the same task back if nobody took its place. Sending at once, rather than holding the skip back until the
// offer ends, means a closed tab or a dropped network never leaves a task leased to someone who gave it up, and
// the preloaded next task stays within the server's two live leases.
(function () {
  "use strict";

  var root = document.getElementById("annotate");
  var configNode = document.getElementById("annotate-config");
  if (!root || !configNode) return;
  var config = JSON.parse(configNode.textContent);
  var csrf = root.getAttribute("data-csrf");
  // Per user and campaign; app.js removes every key with this prefix when someone logs out.
  var DRAFT_KEY = "aesp-annotate-draft-" + config.userId + "-" + config.campaignId;

  var els = {
    image: document.getElementById("task-image"),
    viewport: document.getElementById("viewport"),
    loading: document.getElementById("loading"),
    status: document.getElementById("status"),
    submit: document.getElementById("submit"),
    skip: document.getElementById("skip"),
    flag: document.getElementById("flag"),
    done: document.getElementById("done"),
    zoomLevel: document.getElementById("zoom-level"),
    imageSize: document.getElementById("image-size"),
    prescore: document.getElementById("prescore"),
    prescoreValue: document.getElementById("prescore-value"),
    countSubmitted: document.getElementById("count-submitted"),
    countRemaining: document.getElementById("count-remaining"),
    sessionRated: document.getElementById("session-rated"),
    sessionSkipped: document.getElementById("session-skipped"),
    sessionPace: document.getElementById("session-pace"),
    fine: document.getElementById("fine"),
    fineRow: document.getElementById("fine-row"),
    focusDef: document.getElementById("focus-def"),
    toast: document.getElementById("toast"),
    toastText: document.getElementById("toast-text"),
    undo: document.getElementById("undo"),
  };
  var dimNodes = Array.prototype.slice.call(document.querySelectorAll(".dim"));

  var state = {
    current: null, // {assignment, scores: {key: float}, key: uuid, startedAt: ms}
    queue: [], // leased and preloaded assignments, shown next in this order
    undo: null, // {kind, current} of the last skip or flag while its undo is on offer
    shown: 0, // how many times a task was put on screen: an advance that finds it changed did not get there first
    focus: 0,
    busy: false,
    counts: { submitted: config.counts.submitted, remaining: config.counts.remaining ?? Infinity },
    session: { rated: 0, skipped: 0, totalMs: 0 },
    zoom: { scale: 1, fit: 1, x: 0, y: 0, mode: "fit" },
  };

  // --- small helpers -------------------------------------------------------------------------------------------

  function uuid() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
    var b = new Uint8Array(16);
    window.crypto.getRandomValues(b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  function url(template, id) {
    return template.replace("/0/", "/" + id + "/");
  }

  function setStatus(text, kind) {
    els.status.textContent = text || "";
    els.status.setAttribute("data-kind", kind || "info");
  }

  function sleep(ms) {
    return new Promise(function (resolve) { setTimeout(resolve, ms); });
  }

  // The level of a score: 1 + the number of upper bounds it reaches (the bounds come from model_core.standard).
  function levelOf(score) {
    var bounds = config.levelUpperBounds;
    for (var i = 0; i < bounds.length; i++) if (score < bounds[i]) return i + 1;
    return bounds.length + 1;
  }

  function round2(x) {
    return Math.round(x * 100) / 100;
  }

  // --- drafts (localStorage) -----------------------------------------------------------------------------------

  function loadDraft() {
    try {
      return JSON.parse(window.localStorage.getItem(DRAFT_KEY) || "null");
    } catch (e) {
      return null;
    }
  }

  function saveDraft(extra) {
    if (!state.current) return;
    var draft = {
      assignmentId: state.current.assignment.id,
      key: state.current.key,
      scores: state.current.scores,
      startedAt: state.current.startedAt,
      pending: !!(extra && extra.pending),
    };
    try {
      window.localStorage.setItem(DRAFT_KEY, JSON.stringify(draft));
    } catch (e) { /* private mode or full storage: the page still works, without the draft */ }
  }

  function clearDraft() {
    try { window.localStorage.removeItem(DRAFT_KEY); } catch (e) { /* ignore */ }
  }

  // --- network -------------------------------------------------------------------------------------------------

  function post(path, body) {
    return fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, Accept: "application/json" },
      body: JSON.stringify(body || {}),
    });
  }

  // POST with retries while the network is down or the server is unavailable (5xx, 429): backoff 0.5 s .. 15 s.
  async function postWithRetry(path, body, what) {
    var delay = 500;
    for (var attempt = 1; ; attempt++) {
      try {
        var response = await post(path, body);
        if (response.status < 500 && response.status !== 429) {
          if (attempt > 1) setStatus("Back online.", "ok");
          return response;
        }
        setStatus("The server is busy (" + response.status + "); retrying " + what + "…", "warn");
      } catch (e) {
        setStatus("Network down; retrying " + what + " (attempt " + attempt + ")…", "warn");
      }
      root.setAttribute("data-retrying", "true");
      await sleep(delay);
      delay = Math.min(delay * 2, 15000);
      root.removeAttribute("data-retrying");
    }
  }

  async function readJson(response) {
    try {
      return await response.json();
    } catch (e) {
      return {};
    }
  }

  async function lease(held) {
    var response = await postWithRetry(config.urls.next, { held: held }, "the next task");
    if (response.status === 204) return null;
    var data = await readJson(response);
    if (!response.ok) {
      setStatus(data.detail || "Could not get a task (" + response.status + ").", "error");
      return null;
    }
    return data;
  }

  function preload(assignment) {
    if (!assignment) return;
    var img = new Image();
    img.decoding = "async";
    img.src = assignment.image_url;
    assignment._preloaded = img;
  }

  // --- rendering -----------------------------------------------------------------------------------------------

  function renderDims() {
    var scores = state.current ? state.current.scores : {};
    dimNodes.forEach(function (node, index) {
      var key = node.getAttribute("data-dim");
      var value = scores[key];
      var has = typeof value === "number";
      node.classList.toggle("dim--focused", index === state.focus);
      node.classList.toggle("dim--set", has);
      node.querySelector(".dim__value").textContent = has ? value.toFixed(2) : "–";
      var level = has ? levelOf(value) : 0;
      Array.prototype.forEach.call(node.querySelectorAll(".level"), function (button) {
        button.setAttribute("aria-pressed", String(Number(button.getAttribute("data-level")) === level));
      });
    });
    renderFocus(scores);
    var complete = allSet();
    els.submit.disabled = !state.current || !complete || state.busy;
    els.skip.disabled = els.flag.disabled = !state.current || state.busy;
  }

  // The highlighted dimension's definition, and its fine control: hidden while the dimension is unset (no thumb
  // position to anchor on), at the value once a level was chosen.
  function renderFocus(scores) {
    var node = dimNodes[state.focus];
    if (!node) return;
    var key = node.getAttribute("data-dim");
    var name = node.querySelector(".dim__name").textContent;
    var definition = node.querySelector(".dim__def").textContent;
    if (els.focusDef.getAttribute("data-dim") !== key) {
      els.focusDef.textContent = "";
      var strong = document.createElement("strong");
      strong.textContent = name + ": ";
      els.focusDef.appendChild(strong);
      els.focusDef.appendChild(document.createTextNode(definition));
      els.focusDef.setAttribute("data-dim", key);
    }
    var value = scores[key];
    var has = typeof value === "number";
    els.fineRow.classList.toggle("is-unset", !has);
    els.fine.disabled = !has;
    if (has) els.fine.value = String(value);
    els.fine.setAttribute("aria-label", "Fine score of " + name + " from 0 to 1");
  }

  function focusDim(index, scroll) {
    state.focus = Math.max(0, Math.min(dimNodes.length - 1, index));
    renderDims();
    var node = dimNodes[state.focus];
    if (node && document.activeElement !== node) node.focus({ preventScroll: !scroll });
  }

  function allSet() {
    if (!state.current) return false;
    return config.dimensions.every(function (d) { return typeof state.current.scores[d.key] === "number"; });
  }

  function renderCounts() {
    els.countSubmitted.textContent = state.counts.submitted;
    if (Number.isFinite(state.counts.remaining)) els.countRemaining.textContent = Math.max(0, state.counts.remaining);
    els.sessionRated.textContent = state.session.rated;
    els.sessionSkipped.textContent = state.session.skipped;
    els.sessionPace.textContent = state.session.rated
      ? Math.round(state.session.totalMs / state.session.rated / 100) / 10 + " s"
      : "–";
  }

  function show(assignment) {
    var draft = loadDraft();
    if (assignment._draft && !(draft && draft.assignmentId === assignment.id)) {
      draft = assignment._draft; // ratings kept in memory while the task waited (an undo put it back in the queue)
    }
    delete assignment._draft;
    state.shown += 1;
    var restored = draft && draft.assignmentId === assignment.id;
    state.current = {
      assignment: assignment,
      scores: restored ? draft.scores || {} : {},
      key: restored ? draft.key : uuid(),
      startedAt: restored && draft.startedAt ? draft.startedAt : Date.now(),
    };
    if (!restored) clearDraft();
    saveDraft();
    root.setAttribute("data-assignment", String(assignment.id));
    els.loading.hidden = false;
    els.image.classList.remove("is-ready");
    els.image.onload = function () {
      els.loading.hidden = true;
      els.image.classList.add("is-ready");
      els.imageSize.textContent = els.image.naturalWidth + " × " + els.image.naturalHeight + " px";
      zoomFit();
    };
    els.image.onerror = function () {
      els.loading.hidden = false;
      els.loading.textContent = "The image could not be loaded. Press F to flag it as broken, or S to skip.";
    };
    els.image.src = assignment.image_url;
    if (assignment.prescore) {
      els.prescore.hidden = false;
      els.prescoreValue.textContent = Number(assignment.prescore.metavoter_score).toFixed(2);
    } else {
      els.prescore.hidden = true;
    }
    var firstUnset = config.dimensions.findIndex(function (d) { return typeof state.current.scores[d.key] !== "number"; });
    focusDim(firstUnset < 0 ? 0 : firstUnset, false);
    if (restored && draft.pending) {
      setStatus("Sending the rating kept from before…", "info");
      submit();
    }
  }

  async function advance() {
    var upcoming = state.queue.shift() || null;
    if (!upcoming) {
      var shown = state.shown;
      upcoming = await lease([]);
      if (state.shown !== shown) {
        // an undo put a task on screen while this lease was on its way: the leased one waits its turn
        if (upcoming && !known(upcoming.id)) state.queue.push(upcoming);
        return;
      }
    }
    if (!upcoming) {
      finish();
      return;
    }
    show(upcoming);
    prefetch();
  }

  function known(id) {
    return (state.current && state.current.assignment.id === id) ||
      state.queue.some(function (a) { return a.id === id; });
  }

  async function prefetch() {
    if (!state.current || state.queue.length) return;
    var held = [state.current.assignment.id];
    var upcoming = await lease(held);
    if (upcoming && state.current && !known(upcoming.id)) {
      state.queue.push(upcoming);
      preload(upcoming);
    }
  }

  function finish() {
    state.current = null;
    clearDraft();
    root.classList.add("annotate--done");
    els.done.hidden = false;
    setStatus("Nothing left to rate in this campaign.", "ok");
    renderDims();
  }

  // --- actions -------------------------------------------------------------------------------------------------

  function setScore(key, value) {
    if (!state.current || state.busy) return;
    state.current.scores[key] = round2(Math.max(0, Math.min(1, value)));
    saveDraft();
    renderDims();
  }

  function setLevel(level) {
    var d = config.dimensions[state.focus];
    if (!d) return;
    setScore(d.key, config.levels[level - 1].centre);
    if (state.focus < dimNodes.length - 1) focusDim(state.focus + 1, true);
  }

  function nudge(delta) {
    var d = config.dimensions[state.focus];
    if (!d || !state.current) return;
    var value = state.current.scores[d.key];
    if (typeof value !== "number") {
      setStatus("Choose a level (1–5) for " + d.name + " first; the arrows then fine-tune it.", "info");
      return;
    }
    setScore(d.key, value + delta);
  }

  async function submit() {
    if (!state.current || state.busy) return;
    if (!allSet()) {
      var missing = config.dimensions.findIndex(function (d) { return typeof state.current.scores[d.key] !== "number"; });
      setStatus("Rate every dimension first (" + config.dimensions[missing].name + " is missing).", "warn");
      focusDim(missing, true);
      return;
    }
    state.busy = true;
    renderDims();
    var current = state.current;
    var spent = Date.now() - current.startedAt;
    saveDraft({ pending: true });
    setStatus("Saving…", "info");
    var response = await postWithRetry(
      url(config.urls.submit, current.assignment.id),
      { scores: current.scores, idempotency_key: current.key, time_spent_ms: Math.max(0, spent), ui_version: config.uiVersion },
      "the rating"
    );
    var data = await readJson(response);
    state.busy = false;
    if (response.status === 201 || response.status === 200) {
      state.counts.submitted += 1;
      state.counts.remaining -= 1;
      state.session.rated += 1;
      state.session.totalMs += spent;
      clearDraft();
      setStatus("Saved.", "ok");
      renderCounts();
      root.setAttribute("data-saved", String(Number(root.getAttribute("data-saved") || 0) + 1));
      await advance();
      return;
    }
    if (response.status === 409 || response.status === 404 || response.status === 403) {
      // the lease ran out, the campaign closed, or this task is not ours any more: drop it and move on
      clearDraft();
      setStatus((data.detail || "This task cannot be submitted any more.") + " Moving on.", "warn");
      await advance();
      return;
    }
    saveDraft();
    setStatus(data.detail || "The rating was refused (" + response.status + ").", "error");
    renderDims();
  }

  async function release(kind) {
    if (!state.current || state.busy) return;
    state.busy = true;
    renderDims();
    var current = state.current;
    var body = kind === "flag" ? { reason: "flagged in the annotator page" } : {};
    var response = await postWithRetry(url(config.urls[kind], current.assignment.id), body, kind === "flag" ? "the flag" : "the skip");
    state.busy = false;
    if (response.ok || response.status === 409) {
      state.session.skipped += 1;
      state.counts.remaining -= 1;
      renderCounts();
      clearDraft();
      setStatus(kind === "flag" ? "Flagged as broken. Thank you." : "Skipped.", "ok");
      offerUndo(kind, current);
      await advance();
    } else {
      var data = await readJson(response);
      setStatus(data.detail || "Could not " + kind + " (" + response.status + ").", "error");
      renderDims();
    }
  }

  // --- undo of a skip or a flag -------------------------------------------------------------------------------

  var undoTimer = null;

  function offerUndo(kind, released) {
    state.undo = { kind: kind, current: released };
    els.toastText.textContent = kind === "flag" ? "Flagged as broken" : "Skipped";
    els.undo.hidden = false;
    els.toast.hidden = false;
    root.setAttribute("data-undo", kind);
    clearTimeout(undoTimer);
    undoTimer = setTimeout(closeUndo, (config.undoSeconds || 8) * 1000);
  }

  function closeUndo() {
    clearTimeout(undoTimer);
    state.undo = null;
    els.toast.hidden = true;
    root.removeAttribute("data-undo");
  }

  async function undo() {
    var offer = state.undo;
    if (!offer || state.busy) return;
    closeUndo();
    state.busy = true;
    renderDims();
    var released = offer.current;
    setStatus("Bringing the image back…", "info");
    var response = await postWithRetry(url(config.urls.restore, released.assignment.id), {}, "the undo");
    state.busy = false;
    if (!response.ok) {
      var data = await readJson(response);
      var why = "Could not undo: " + (data.detail || "the server refused (" + response.status + ")") + ".";
      setStatus(why, "error");
      // the toast says it too: the status line is out of sight once the campaign showed "nothing left"
      els.toastText.textContent = why;
      els.undo.hidden = true;
      els.toast.hidden = false;
      undoTimer = setTimeout(closeUndo, (config.undoSeconds || 8) * 1000);
      renderDims();
      return;
    }
    state.session.skipped = Math.max(0, state.session.skipped - 1);
    state.counts.remaining += 1;
    renderCounts();
    if (state.current && state.current.assignment.id !== released.assignment.id) {
      // what was on screen waits at the head of the queue, with its ratings so far
      var waiting = state.current.assignment;
      waiting._draft = {
        assignmentId: waiting.id, key: state.current.key, scores: state.current.scores, startedAt: state.current.startedAt,
      };
      state.queue = [waiting].concat(state.queue.filter(function (a) { return a.id !== waiting.id; }));
    }
    state.queue = state.queue.filter(function (a) { return a.id !== released.assignment.id; });
    released.assignment._draft = {
      assignmentId: released.assignment.id, key: released.key, scores: released.scores, startedAt: released.startedAt,
    };
    clearDraft();
    root.classList.remove("annotate--done");
    els.done.hidden = true;
    show(released.assignment);
    setStatus(offer.kind === "flag" ? "Flag undone: the image is back." : "Skip undone: the image is back.", "ok");
  }

  els.undo.addEventListener("click", undo);

  // --- zoom and pan --------------------------------------------------------------------------------------------

  function applyZoom() {
    var z = state.zoom;
    els.image.style.transform = "translate(" + z.x + "px, " + z.y + "px) scale(" + z.scale + ")";
    els.zoomLevel.textContent = z.mode === "fit" ? "fit" : Math.round(z.scale * 100) + " %";
    els.viewport.classList.toggle("is-zoomed", z.mode !== "fit");
  }

  function zoomFit() {
    var vw = els.viewport.clientWidth, vh = els.viewport.clientHeight;
    var iw = els.image.naturalWidth || 1, ih = els.image.naturalHeight || 1;
    var scale = Math.min(vw / iw, vh / ih); // small images are scaled up to fill the frame too
    state.zoom = { scale: scale, fit: scale, x: (vw - iw * scale) / 2, y: (vh - ih * scale) / 2, mode: "fit" };
    applyZoom();
  }

  function zoomAt(factor, cx, cy) {
    var z = state.zoom;
    var vw = els.viewport.clientWidth, vh = els.viewport.clientHeight;
    if (cx === undefined) { cx = vw / 2; cy = vh / 2; }
    var scale = Math.max(Math.min(z.fit, 1), Math.min(8, z.scale * factor));
    if (scale === z.fit) { zoomFit(); return; }
    z.x = cx - ((cx - z.x) * scale) / z.scale;
    z.y = cy - ((cy - z.y) * scale) / z.scale;
    z.scale = scale;
    z.mode = "zoom";
    applyZoom();
  }

  function zoomFull(cx, cy) {
    if (state.zoom.mode !== "fit" && Math.abs(state.zoom.scale - 1) < 1e-6) { zoomFit(); return; }
    zoomAt(1 / state.zoom.scale, cx, cy);
    state.zoom.mode = "full";
    applyZoom();
  }

  els.viewport.addEventListener("wheel", function (event) {
    if (!els.image.naturalWidth) return;
    event.preventDefault();
    var rect = els.viewport.getBoundingClientRect();
    zoomAt(event.deltaY < 0 ? 1.2 : 1 / 1.2, event.clientX - rect.left, event.clientY - rect.top);
  }, { passive: false });

  els.viewport.addEventListener("dblclick", function (event) {
    var rect = els.viewport.getBoundingClientRect();
    zoomFull(event.clientX - rect.left, event.clientY - rect.top);
  });

  var drag = null;
  els.viewport.addEventListener("pointerdown", function (event) {
    if (state.zoom.mode === "fit") return;
    drag = { x: event.clientX, y: event.clientY, ox: state.zoom.x, oy: state.zoom.y };
    els.viewport.setPointerCapture(event.pointerId);
    els.viewport.classList.add("is-dragging");
  });
  els.viewport.addEventListener("pointermove", function (event) {
    if (!drag) return;
    state.zoom.x = drag.ox + event.clientX - drag.x;
    state.zoom.y = drag.oy + event.clientY - drag.y;
    applyZoom();
  });
  function endDrag() {
    drag = null;
    els.viewport.classList.remove("is-dragging");
  }
  els.viewport.addEventListener("pointerup", endDrag);
  els.viewport.addEventListener("pointercancel", endDrag);
  // The page fills the window below the header: where it starts depends on the header's height (its navigation may
  // wrap), so it is measured rather than assumed.
  function measureTop() {
    var top = Math.round(root.getBoundingClientRect().top + window.scrollY);
    root.style.setProperty("--annotate-top", top + "px");
  }
  window.addEventListener("resize", function () {
    measureTop();
    if (state.zoom.mode === "fit") zoomFit();
  });

  document.querySelectorAll("[data-zoom]").forEach(function (button) {
    button.addEventListener("click", function () {
      var what = button.getAttribute("data-zoom");
      if (what === "fit") zoomFit();
      else if (what === "full") zoomFull();
      else zoomAt(what === "in" ? 1.25 : 0.8);
    });
  });

  // --- mouse on the controls -----------------------------------------------------------------------------------

  function toggleDefinition(node) {
    var open = !node.classList.contains("dim--open");
    node.classList.toggle("dim--open", open);
    node.querySelector(".dim__info").setAttribute("aria-expanded", String(open));
  }

  dimNodes.forEach(function (node, index) {
    node.addEventListener("focus", function () {
      if (state.focus !== index) { state.focus = index; renderDims(); }
    });
    node.querySelectorAll(".level").forEach(function (button) {
      button.addEventListener("click", function () {
        state.focus = index;
        setLevel(Number(button.getAttribute("data-level")));
      });
    });
    node.querySelector(".dim__info").addEventListener("click", function () { toggleDefinition(node); });
  });
  els.fine.addEventListener("input", function (event) {
    var d = config.dimensions[state.focus];
    if (d) setScore(d.key, Number(event.target.value));
  });
  els.submit.addEventListener("click", submit);
  els.skip.addEventListener("click", function () { release("skip"); });
  els.flag.addEventListener("click", function () { release("flag"); });

  // --- keyboard ------------------------------------------------------------------------------------------------

  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (target && (target.isContentEditable || /^(TEXTAREA|SELECT)$/.test(target.tagName) ||
        (target.tagName === "INPUT" && target.type !== "range"))) return;
    var key = event.key;
    if ((event.ctrlKey || event.metaKey) && !event.altKey && !event.shiftKey && (key === "z" || key === "Z")) {
      if (state.undo) {
        event.preventDefault();
        undo();
      }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var handled = true;
    if (key >= "1" && key <= "5") setLevel(Number(key));
    else if (key === "ArrowDown") focusDim(state.focus + 1, true);
    else if (key === "ArrowUp") focusDim(state.focus - 1, true);
    else if (key === "ArrowRight") nudge(event.shiftKey ? 0.05 : 0.01);
    else if (key === "ArrowLeft") nudge(event.shiftKey ? -0.05 : -0.01);
    else if (key === "Enter") {
      if (target && target.tagName === "BUTTON" && target !== els.submit && !target.classList.contains("level")) return;
      submit();
    } else if (key === "s" || key === "S") release("skip");
    else if (key === "f" || key === "F") release("flag");
    else if (key === "u" || key === "U") undo();
    else if (key === "i" || key === "I") toggleDefinition(dimNodes[state.focus]);
    else if (key === "+" || key === "=") zoomAt(1.25);
    else if (key === "-") zoomAt(0.8);
    else if (key === "0") zoomFit();
    else if (key === "z" || key === "Z") zoomFull();
    else handled = false;
    if (handled) event.preventDefault();
  });

  window.addEventListener("online", function () { setStatus("Back online.", "ok"); });
  window.addEventListener("offline", function () { setStatus("You are offline; your rating is kept and will be sent.", "warn"); });

  // --- start ---------------------------------------------------------------------------------------------------

  measureTop();
  renderCounts();
  renderDims();
  if (config.active) advance();
})();
