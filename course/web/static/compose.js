// The composer's live preview (the CSP allows no inline script). Without this script the Preview
// button posts the form into the frame; with it, the frame follows the form as the editor types:
// a moment after the last keystroke the form is posted to /admin/campaigns/draft-preview into the
// frame (a form post, so the email keeps its own stricter CSP and its inline styles). Nothing is saved.
(function () {
  "use strict";
  var form = document.querySelector("[data-live-form]");
  var frame = document.querySelector("[data-live-preview]");
  var button = document.querySelector("[data-preview-button]");
  if (!form || !frame || !button) { return; }
  var status = document.querySelector("[data-live-status]");
  document.querySelectorAll("[data-live-hint]").forEach(function (hint) { hint.hidden = false; });
  var WAIT = 600;
  var timer = null;

  function refresh() {
    timer = null;
    var action = form.getAttribute("action"), target = form.getAttribute("target");
    form.setAttribute("action", button.getAttribute("formaction"));
    form.setAttribute("target", button.getAttribute("formtarget"));
    try { form.submit(); } finally {
      form.setAttribute("action", action);
      if (target === null) { form.removeAttribute("target"); } else { form.setAttribute("target", target); }
    }
  }

  function later() {
    if (timer !== null) { window.clearTimeout(timer); }
    timer = window.setTimeout(refresh, WAIT);
  }

  form.addEventListener("input", later);
  form.addEventListener("change", later);
  frame.addEventListener("load", function () {
    if (status && frame.getAttribute("src") !== "about:blank") { status.textContent = "Preview updated."; }
  });
  refresh();
})();
