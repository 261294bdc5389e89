// The image detail page: zoom (wheel, buttons, + / - / 0 keys, double click) and pan (drag, arrow keys) of the
// full-size image. No inline script or style: the transform is set through the CSSOM (allowed under the CSP).
(function () {
  "use strict";

  var MIN_SCALE = 0.02;
  var MAX_SCALE = 16;
  var STEP = 1.25;

  function setUp(box) {
    var img = box.querySelector("[data-zoom-img]");
    if (!img) return;
    var root = box.closest(".viewer") || document;
    var level = root.querySelector("[data-zoom-level]");
    var z = { scale: 1, x: 0, y: 0, fit: 1 };

    function natural() {
      return {
        w: img.naturalWidth || parseInt(img.getAttribute("width"), 10) || 1,
        h: img.naturalHeight || parseInt(img.getAttribute("height"), 10) || 1,
      };
    }

    function clamp() {
      // keep at least a quarter of the view covered by the image
      var n = natural();
      var w = n.w * z.scale, h = n.h * z.scale;
      var cw = box.clientWidth, ch = box.clientHeight;
      var marginX = Math.min(w, cw) * 0.25, marginY = Math.min(h, ch) * 0.25;
      z.x = Math.min(cw - marginX, Math.max(marginX - w, z.x));
      z.y = Math.min(ch - marginY, Math.max(marginY - h, z.y));
    }

    function draw() {
      clamp();
      img.style.transform = "translate(" + z.x + "px, " + z.y + "px) scale(" + z.scale + ")";
      box.setAttribute("data-scale", z.scale.toFixed(4));
      if (level) level.textContent = Math.round(z.scale * 100) + " %";
    }

    function fit() {
      var n = natural();
      z.fit = Math.min(box.clientWidth / n.w, box.clientHeight / n.h, 1);
      z.scale = z.fit;
      z.x = (box.clientWidth - n.w * z.scale) / 2;
      z.y = (box.clientHeight - n.h * z.scale) / 2;
      draw();
    }

    function zoomAt(factor, cx, cy) {
      var next = Math.min(MAX_SCALE, Math.max(MIN_SCALE, z.scale * factor));
      // the image point under (cx, cy) stays under it
      z.x = cx - (cx - z.x) * (next / z.scale);
      z.y = cy - (cy - z.y) * (next / z.scale);
      z.scale = next;
      draw();
    }

    function centre() {
      return [box.clientWidth / 2, box.clientHeight / 2];
    }

    function actual() {
      var c = centre();
      zoomAt(1 / z.scale, c[0], c[1]);
    }

    box.addEventListener("wheel", function (event) {
      event.preventDefault();
      var rect = box.getBoundingClientRect();
      zoomAt(event.deltaY < 0 ? STEP : 1 / STEP, event.clientX - rect.left, event.clientY - rect.top);
    }, { passive: false });

    var drag = null;
    box.addEventListener("pointerdown", function (event) {
      if (event.button !== 0) return;
      drag = { id: event.pointerId, x: event.clientX, y: event.clientY, ox: z.x, oy: z.y };
      box.setPointerCapture(event.pointerId);
      box.classList.add("zoom--dragging");
    });
    box.addEventListener("pointermove", function (event) {
      if (!drag || event.pointerId !== drag.id) return;
      z.x = drag.ox + event.clientX - drag.x;
      z.y = drag.oy + event.clientY - drag.y;
      draw();
    });
    function endDrag(event) {
      if (!drag || event.pointerId !== drag.id) return;
      drag = null;
      box.classList.remove("zoom--dragging");
    }
    box.addEventListener("pointerup", endDrag);
    box.addEventListener("pointercancel", endDrag);

    box.addEventListener("dblclick", function (event) {
      var rect = box.getBoundingClientRect();
      if (Math.abs(z.scale - z.fit) < 1e-6) {
        zoomAt(Math.max(1, z.fit * 2) / z.scale, event.clientX - rect.left, event.clientY - rect.top);
      } else {
        fit();
      }
    });

    box.addEventListener("keydown", function (event) {
      var c = centre();
      var step = 40;
      switch (event.key) {
        case "+": case "=": zoomAt(STEP, c[0], c[1]); break;
        case "-": case "_": zoomAt(1 / STEP, c[0], c[1]); break;
        case "0": fit(); break;
        case "1": actual(); break;
        case "ArrowLeft": z.x += step; draw(); break;
        case "ArrowRight": z.x -= step; draw(); break;
        case "ArrowUp": z.y += step; draw(); break;
        case "ArrowDown": z.y -= step; draw(); break;
        default: return;
      }
      event.preventDefault();
    });

    function on(selector, handler) {
      var button = root.querySelector(selector);
      if (button) button.addEventListener("click", handler);
    }
    on("[data-zoom-in]", function () { var c = centre(); zoomAt(STEP, c[0], c[1]); });
    on("[data-zoom-out]", function () { var c = centre(); zoomAt(1 / STEP, c[0], c[1]); });
    on("[data-zoom-fit]", fit);
    on("[data-zoom-actual]", actual);

    if (img.complete) fit(); else img.addEventListener("load", fit);
    window.addEventListener("resize", fit);
    box.classList.add("zoom--ready");
  }

  var boxes = document.querySelectorAll("[data-zoom]");
  for (var i = 0; i < boxes.length; i++) setUp(boxes[i]);
})();
