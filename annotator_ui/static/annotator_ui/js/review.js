// Review batch page: keyboard review of a grid of "keep" checkboxes (the form works without this file).
// Arrows move the focus between images, x toggles the focused image, a approves the batch (submits the form).
(function () {
  "use strict";

  var form = document.getElementById("review-form");
  if (!form) return;
  var tiles = Array.prototype.slice.call(form.querySelectorAll(".review__tile"));
  var keepCount = form.querySelector('[data-testid="keep-count"]');
  var rejectCount = form.querySelector('[data-testid="reject-count"]');
  var approve = form.querySelector('[data-testid="approve-batch"]');
  var focused = 0;

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

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
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
    } else if ((event.key === "a" || event.key === "A") && approve) {
      event.preventDefault();
      approve.disabled = true;
      if (typeof form.requestSubmit === "function") form.requestSubmit();
      else form.submit();
    }
  });

  form.addEventListener("submit", function () {
    if (approve) approve.disabled = true;
  });

  refresh();
  focusTile(0);
  form.setAttribute("data-review-ready", "true");
})();
