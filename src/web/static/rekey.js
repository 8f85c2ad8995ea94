// rekey console: the only script, and optional. Every action works without
// it (forms post, pages reload); with it, copy buttons copy, and regions
// marked data-live refresh themselves while work is in progress.
(function () {
  "use strict";
  document.addEventListener("click", function (ev) {
    var b = ev.target.closest("button[data-copy]");
    if (!b) return;
    var el = document.getElementById(b.getAttribute("data-copy"));
    if (!el || !navigator.clipboard) return;
    navigator.clipboard.writeText(el.textContent.trim()).then(function () {
      var was = b.textContent;
      b.textContent = "Copied";
      setTimeout(function () { b.textContent = was; }, 1500);
    });
  });
  document.querySelectorAll("button[data-copy]").forEach(function (b) { b.hidden = false; });
  // The live region (`id="live"`, polling while it carries data-live):
  // fetch this same page and swap the region in every few seconds; the
  // last swap brings the finished state and stops (no data-live on it).
  var live = document.querySelector("#live[data-live]");
  if (live) {
    var every = Math.max(1, parseInt(live.getAttribute("data-live"), 10) || 3) * 1000;
    var tick = function () {
      fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (!html) { setTimeout(tick, every * 2); return; }
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.getElementById("live");
          var now = document.getElementById("live");
          if (fresh && now) { now.replaceWith(fresh); }
          if (fresh && fresh.hasAttribute("data-live")) setTimeout(tick, every);
        })
        .catch(function () { setTimeout(tick, every * 2); });
    };
    setTimeout(tick, every);
  }
})();
