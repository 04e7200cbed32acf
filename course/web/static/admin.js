// The web admin's only script (the CSP allows no inline script). Everything works without it:
// - the browser's time zone in empty time zone fields (sign-in form, account page);
// - copy buttons for secrets shown once;
// - "Insert" buttons by the catalogue's guides in the composer: a Markdown link at the body's cursor;
// - live progress on a campaign page: polls /admin/campaigns/<id>/progress.json every few seconds
//   and updates the numbers in place, until the campaign is done or cancelled; when its status
//   changes (the fan-out came, it finished), the note says to reload for the actions that apply;
// - a job's page (an import, a bulk action) follows the job in place while it runs.
(function () {
  "use strict";

  var zone = "";
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (error) { zone = ""; }
  document.querySelectorAll("input[data-fill-timezone]").forEach(function (input) {
    if (!input.value && zone) { input.value = zone; }
  });

  document.querySelectorAll("button[data-copy-target]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var source = document.getElementById(button.getAttribute("data-copy-target"));
      if (!source || !navigator.clipboard) { return; }
      navigator.clipboard.writeText(source.textContent.trim()).then(function () {
        var label = button.textContent;
        button.textContent = "Copied";
        window.setTimeout(function () { button.textContent = label; }, 1600);
      });
    });
  });

  // Guide links: [title](url) at the cursor, or [selected words](url) around a selection.
  var insertStatus = document.querySelector("[data-insert-status]");
  document.querySelectorAll("button[data-insert-target]").forEach(function (button) {
    var body = document.getElementById(button.getAttribute("data-insert-target"));
    if (!body || typeof body.setRangeText !== "function") { return; }
    button.hidden = false;
    document.querySelectorAll("[data-insert-hint]").forEach(function (hint) { hint.hidden = false; });
    document.querySelectorAll("[data-copy-hint]").forEach(function (hint) { hint.hidden = true; });
    button.addEventListener("click", function () {
      var start = body.selectionStart, end = body.selectionEnd;
      var words = body.value.slice(start, end).trim() || button.getAttribute("data-insert-title");
      var link = "[" + words.replace(/[\[\]]/g, "") + "](" + button.getAttribute("data-insert-url") + ")";
      body.setRangeText(link, start, end, "end");
      body.focus();
      if (insertStatus) { insertStatus.textContent = "Inserted a link to " + button.getAttribute("data-insert-title") + "."; }
    });
  });

  // A page following a job (an import, a bulk action): while its [data-follow] part is there, the
  // same page is fetched every few seconds and that part replaced in place (focus and scroll kept;
  // no page reload, which is what a meta refresh would do). The job's end renders it without
  // data-follow, and the following stops; "stop updating" links to the page without it.
  var followed = document.querySelector("[data-follow]");
  if (followed && window.fetch && window.DOMParser) {
    var followInterval = (Number(followed.getAttribute("data-follow")) || 2) * 1000;
    var follow = function () {
      fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (response) {
          if (!response.ok) { throw new Error("status " + response.status); }
          return response.text();
        })
        .then(function (html) {
          var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("#" + followed.id);
          if (!fresh) { return; }
          followed.innerHTML = fresh.innerHTML;
          if (fresh.hasAttribute("data-follow")) { window.setTimeout(follow, followInterval); }
          else { followed.removeAttribute("data-follow"); }
        })
        .catch(function () { window.setTimeout(follow, followInterval * 4); });
    };
    window.setTimeout(follow, followInterval);
  }

  var panel = document.querySelector("[data-progress-live]");
  if (!panel || !window.fetch) { return; }
  var url = panel.getAttribute("data-progress-url");
  var note = panel.querySelector("[data-progress-note]");
  var badge = document.querySelector("[data-progress-status] .badge");
  var meter = panel.querySelector("[data-progress-meter]");
  var INTERVAL = 2000;
  var failures = 0;
  var renderedStatus = badge ? badge.textContent.trim() : "";

  function number(value) { return Number(value).toLocaleString("en-GB"); }
  function duration(seconds) {
    if (seconds === null || seconds === undefined) { return "—"; }
    if (seconds < 60) { return "< 1 min"; }
    if (seconds < 3600) { return Math.floor(seconds / 60) + " min"; }
    return Math.floor(seconds / 3600) + " h " + Math.floor((seconds % 3600) / 60) + " min";
  }

  function show(progress) {
    if (progress.total > 0) {  // the fan-out has written the rows: the numbers replace the wait
      panel.querySelectorAll("[data-progress-waiting]").forEach(function (text) { text.hidden = true; });
      panel.querySelectorAll("[data-progress-stats], [data-progress-meter]").forEach(function (part) { part.hidden = false; });
    }
    panel.querySelectorAll("[data-progress]").forEach(function (cell) {
      var key = cell.getAttribute("data-progress");
      cell.textContent = key === "eta_seconds" ? duration(progress[key]) : number(progress[key]);
    });
    if (meter) {
      var step = Math.floor(progress.percent_settled / 5) * 5;
      meter.setAttribute("aria-label", progress.percent_settled + "% settled");
      meter.firstElementChild.className = "w-" + step;
    }
    if (badge) {
      badge.className = "badge badge-" + progress.status;
      badge.textContent = progress.status;
    }
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("status " + response.status); }
        return response.json();
      })
      .then(function (progress) {
        failures = 0;
        show(progress);
        // Scheduled -> sending -> done changes what may be done (pause, cancel, back to draft):
        // the numbers follow in place, and the note says the page's actions are from before.
        var changed = renderedStatus && progress.status !== renderedStatus
          ? " Its status changed since this page was loaded: reload it for the actions that apply now." : "";
        if (progress.final) {
          if (note) { note.textContent = "Finished: " + progress.status + "." + changed; }
          return;
        }
        if (note) { note.textContent = "Updated " + new Date().toLocaleTimeString("en-GB") + "." + changed; }
        window.setTimeout(poll, INTERVAL);
      })
      .catch(function () {
        failures += 1;
        if (note) { note.textContent = "Cannot reach the server; trying again."; }
        window.setTimeout(poll, Math.min(30000, INTERVAL * Math.pow(2, failures)));
      });
  }

  window.setTimeout(poll, INTERVAL);
})();
