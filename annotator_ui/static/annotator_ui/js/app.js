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
