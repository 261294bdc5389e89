// Review batch page: keyboard review of a grid of "keep" checkboxes (the form works without this file).
// Arrows move the focus between images, x toggles the focused image. Batch-wide keys ask for a confirmation that
// says how many images they change (Enter confirms, Escape cancels): s keeps all, i inverts, a approves the batch
// (submits the form). u undoes the last keep-all / invert (the buttons do the same, without asking: undo is there).
(function () {
  "use strict";

  var form = document.getElementById("review-form");
  if (!form) return;
  var tiles = Array.prototype.slice.call(form.querySelectorAll(".review__tile"));
  var keepCount = form.querySelector('[data-testid="keep-count"]');
  var rejectCount = form.querySelector('[data-testid="reject-count"]');
  var approve = form.querySelector('[data-testid="approve-batch"]');
  var undoButton = form.querySelector('[data-bulk="undo"]');
  var dialog = document.getElementById("review-confirm");
  var focused = 0;
  var undoStack = [];
  var proposal = tiles.map(function (tile) {
    return checkbox(tile).checked;
  });

  function checkbox(tile) {
    return tile.querySelector(".review__check");
  }

  function refresh() {
    var kept = 0;
    tiles.forEach(function (tile) {
      var keep = checkbox(tile).checked;
      if (keep) kept += 1;
      tile.classList.toggle("review__tile--keep", keep);
      tile.classList.toggle("review__tile--reject", !keep);
    });
    keepCount.textContent = String(kept);
    rejectCount.textContent = String(tiles.length - kept);
  }

  function states() {
    return tiles.map(function (tile) {
      return checkbox(tile).checked;
    });
  }

  function editable() {
    return tiles.some(function (tile) {
      return !checkbox(tile).disabled;
    });
  }

  function plural(n, word) {
    return n + " " + word + (n === 1 ? "" : "s");
  }

  // the states a batch-wide change leads to
  function target(kind) {
    var now = states();
    if (kind === "all") return now.map(function () { return true; });
    return now.map(function (keep) { return !keep; });
  }

  function changedBy(next) {
    var now = states();
    return next.filter(function (keep, i) { return keep !== now[i]; }).length;
  }

  function setStates(next) {
    tiles.forEach(function (tile, i) {
      checkbox(tile).checked = next[i];
    });
    refresh();
  }

  function bulk(kind) {
    if (!editable()) return;
    var next = target(kind);
    if (!changedBy(next)) return;
    undoStack.push(states());
    setStates(next);
    if (undoButton) undoButton.disabled = false;
  }

  function undo() {
    if (!undoStack.length) return;
    setStates(undoStack.pop());
    if (undoButton) undoButton.disabled = undoStack.length === 0;
  }

  function submitForm() {
    if (!approve) return;
    approve.disabled = true;
    if (typeof form.requestSubmit === "function") form.requestSubmit();
    else form.submit();
  }

  // Ask before a batch-wide change; `onConfirm` runs only on Confirm (Enter), never on Cancel or Escape.
  function confirmThen(title, text, onConfirm) {
    if (!dialog || typeof dialog.showModal !== "function") {
      if (window.confirm(title + "\n" + text)) onConfirm();
      return;
    }
    dialog.querySelector('[data-testid="review-confirm-title"]').textContent = title;
    dialog.querySelector('[data-testid="review-confirm-text"]').textContent = text;
    dialog.returnValue = "";
    dialog.onclose = function () {
      dialog.onclose = null;
      if (dialog.returnValue === "confirm") onConfirm();
      else focusTile(focused);
    };
    dialog.showModal();
    dialog.querySelector('[data-testid="review-confirm-ok"]').focus();
  }

  function askBulk(kind) {
    if (!editable()) return;
    var n = changedBy(target(kind));
    if (!n) return;
    var title = kind === "all" ? "Keep every image?" : "Invert the selection?";
    confirmThen(title, "This changes " + plural(n, "image") + " of " + tiles.length + " (u undoes it).",
      function () { bulk(kind); focusTile(focused); });
  }

  function askApprove() {
    var now = states();
    var kept = now.filter(Boolean).length;
    var overrides = now.filter(function (keep, i) { return keep !== proposal[i]; }).length;
    confirmThen("Approve batch?", "This decides all " + plural(tiles.length, "image") + ": " + kept + " kept, " +
      (tiles.length - kept) + " rejected (" + plural(overrides, "override") + " of the proposal).", submitForm);
  }

  function focusTile(index) {
    if (!tiles.length) return;
    focused = Math.max(0, Math.min(tiles.length - 1, index));
    tiles.forEach(function (tile, i) {
      tile.tabIndex = i === focused ? 0 : -1;
      tile.classList.toggle("review__tile--focused", i === focused);
    });
    tiles[focused].focus({ preventScroll: false });
  }

  function columns() {
    var top = tiles[0].offsetTop;
    var n = 0;
    while (n < tiles.length && tiles[n].offsetTop === top) n += 1;
    return Math.max(1, n);
  }

  tiles.forEach(function (tile, i) {
    tile.tabIndex = -1;
    tile.addEventListener("focus", function () {
      if (focused !== i) focusTile(i);
    });
  });
  form.addEventListener("change", function (event) {
    if (event.target.classList && event.target.classList.contains("review__check")) refresh();
  });

  form.querySelectorAll("[data-bulk]").forEach(function (button) {
    button.addEventListener("click", function () {
      var kind = button.getAttribute("data-bulk");
      if (kind === "undo") undo();
      else bulk(kind);
    });
  });

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    if (dialog && dialog.open) return;  // the confirmation answers its own keys (Enter, Escape)
    var target = event.target;
    if (target instanceof HTMLInputElement && target.type !== "checkbox") return;
    if (target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement) return;
    var step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns(), ArrowUp: -columns() }[event.key];
    if (step !== undefined) {
      event.preventDefault();
      focusTile(focused + step);
    } else if (event.key === "x" || event.key === "X") {
      var box = tiles.length ? checkbox(tiles[focused]) : null;
      if (box && !box.disabled) {
        event.preventDefault();
        box.checked = !box.checked;
        refresh();
      }
    } else if ((event.key === "a" || event.key === "A") && approve && !approve.disabled) {
      event.preventDefault();
      askApprove();
    } else if (event.key === "s" || event.key === "S") {
      event.preventDefault();
      askBulk("all");
    } else if (event.key === "i" || event.key === "I") {
      event.preventDefault();
      askBulk("invert");
    } else if (event.key === "u" || event.key === "U") {
      event.preventDefault();
      undo();
    }
  });

  form.addEventListener("submit", function () {
    if (approve) approve.disabled = true;
  });

  refresh();
  focusTile(0);
  form.setAttribute("data-review-ready", "true");
})();
