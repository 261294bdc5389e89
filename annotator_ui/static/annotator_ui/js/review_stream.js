// The review stream: keyboard review of one rating at a time (the page works without this file: links and forms).
// j / ArrowRight / ArrowDown: next rating; k / ArrowLeft / ArrowUp: previous; a: accept; r: open the reject form
// (type why, Enter submits); c: open the correction form (edit the scores, type why, Enter); Escape closes a form.
(function () {
  "use strict";

  var stream = document.getElementById("review-stream");
  if (!stream) return;
  var accept = document.getElementById("accept-form");
  var rejectPanel = document.getElementById("reject-panel");
  var correctPanel = document.getElementById("correct-panel");

  function go(url) {
    if (url) window.location.assign(url);
  }

  function open(panel, focusSelector) {
    [rejectPanel, correctPanel].forEach(function (p) {
      if (p && p !== panel) p.open = false;
    });
    if (!panel) return;
    panel.open = true;
    var field = panel.querySelector(focusSelector);
    if (field) {
      field.focus();
      if (typeof field.select === "function") field.select();
    }
  }

  function submitOnce(form) {
    if (!form || form.getAttribute("data-sent") === "true") return;
    form.setAttribute("data-sent", "true");
    if (typeof form.requestSubmit === "function") form.requestSubmit();
    else form.submit();
  }

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    var target = event.target;
    var typing = target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement ||
      target instanceof HTMLSelectElement;
    if (event.key === "Escape") {
      if (rejectPanel && rejectPanel.open || correctPanel && correctPanel.open) {
        event.preventDefault();
        open(null);
        stream.focus();
      }
      return;
    }
    if (typing) return;
    var key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (key === "j" || key === "ArrowRight" || key === "ArrowDown") {
      event.preventDefault();
      go(stream.getAttribute("data-next"));
    } else if (key === "k" || key === "ArrowLeft" || key === "ArrowUp") {
      event.preventDefault();
      go(stream.getAttribute("data-prev"));
    } else if (key === "a") {
      event.preventDefault();
      submitOnce(accept);
    } else if (key === "r") {
      event.preventDefault();
      open(rejectPanel, 'input[name="reason"]');
    } else if (key === "c") {
      event.preventDefault();
      open(correctPanel, 'input[type="number"]');
    }
  });

  document.querySelectorAll("#review-stream form").forEach(function (form) {
    form.addEventListener("submit", function () {
      form.setAttribute("data-sent", "true");
    });
  });
  stream.tabIndex = -1;
  stream.setAttribute("data-review-ready", "true");
})();
