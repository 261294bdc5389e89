// Small progressive enhancements for every page. No inline scripts anywhere: this file is loaded with `defer`.
(function () {
  "use strict";

  // <select data-autosubmit> submits its form on change (the form's submit button keeps working without JS).
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target instanceof HTMLSelectElement && target.hasAttribute("data-autosubmit") && target.form) {
      if (typeof target.form.requestSubmit === "function") {
        target.form.requestSubmit();
      } else {
        target.form.submit();
      }
    }
  });

  // Logging out forgets the rating drafts kept in this browser (the next person at a shared computer must not find
  // them). The server also sends Clear-Site-Data, which browsers honour on HTTPS and localhost only.
  document.addEventListener("submit", function (event) {
    if (!(event.target instanceof HTMLFormElement) || !event.target.classList.contains("account__logout")) return;
    try {
      for (var i = window.localStorage.length - 1; i >= 0; i--) {
        var key = window.localStorage.key(i);
        if (key && key.indexOf("aesp-annotate-draft-") === 0) window.localStorage.removeItem(key);
      }
    } catch (e) { /* storage unavailable: nothing kept either */ }
  });

  // Checkbox lists of forms (_field.html): a filter box hides the items whose name does not contain the typed text
  // (checked ones stay visible), and a line counts the checked items.
  function checklistCount(list) {
    var out = list.querySelector("[data-checklist-count]");
    if (out) out.textContent = list.querySelectorAll('input[type="checkbox"]:checked').length + " selected";
  }
  document.addEventListener("input", function (event) {
    var target = event.target;
    if (!(target instanceof HTMLInputElement) || !target.hasAttribute("data-checklist-filter")) return;
    var list = target.closest("[data-checklist]");
    var needle = target.value.trim().toLowerCase();
    list.querySelectorAll(".checklist__item").forEach(function (item) {
      var box = item.querySelector('input[type="checkbox"]');
      item.hidden = needle !== "" && !(box && box.checked) && item.textContent.toLowerCase().indexOf(needle) === -1;
    });
  });
  document.addEventListener("keydown", function (event) {
    // Enter in a filter box filters; it does not submit the form
    if (event.key === "Enter" && event.target instanceof HTMLInputElement &&
        event.target.hasAttribute("data-checklist-filter")) event.preventDefault();
  });
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (!(target instanceof HTMLInputElement) || target.type !== "checkbox") return;
    var list = target.closest("[data-checklist]");
    if (list) checklistCount(list);
  });

  // On narrow screens the navigation scrolls sideways: bring the current item into view.
  var current = document.querySelector('.main-nav__link[aria-current="page"]');
  if (current && current.parentElement && current.closest(".main-nav").scrollWidth > current.closest(".main-nav").clientWidth) {
    current.scrollIntoView({ block: "nearest", inline: "center" });
  }

  // A thumbnail that fails to load shows its frame with the alt text instead of a broken-image icon.
  document.addEventListener(
    "error",
    function (event) {
      var target = event.target;
      if (target instanceof HTMLImageElement && target.closest(".tile__frame")) {
        target.closest(".tile__frame").classList.add("tile__frame--missing");
      }
    },
    true
  );
})();
