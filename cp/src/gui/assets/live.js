// kuma-rs GUI live updates. The pages are complete without this script; it only keeps them
// current: it listens to the control plane's server-sent events (one "revision" event per
// store change) and swaps in a freshly fetched <main> when the revision moves.
(function () {
  "use strict";
  var body = document.body;
  var url = body.getAttribute("data-events");
  if (!url || !window.EventSource || !window.fetch || !window.DOMParser) {
    return;
  }
  var shown = body.getAttribute("data-revision") || "";
  var wanted = shown;
  var busy = false;
  var timer = null;
  var last = 0;
  // At most two refreshes a second, however fast the store changes.
  var MIN_GAP_MS = 500;

  function interacting() {
    var active = document.activeElement;
    return active && active.closest && active.closest("main form") !== null;
  }

  function refresh() {
    timer = null;
    var wait = last + MIN_GAP_MS - Date.now();
    if (busy || wait > 0 || interacting()) { schedule(Math.max(wait, 250)); return; }
    busy = true;
    last = Date.now();
    var target = wanted;
    fetch(window.location.href, { headers: { "Accept": "text/html" }, cache: "no-store" })
      .then(function (response) { return response.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.querySelector("main");
        var current = document.querySelector("main");
        if (fresh && current) {
          current.replaceWith(document.importNode(fresh, true));
          document.title = doc.title;
          shown = target;
          body.setAttribute("data-revision", shown);
        }
      })
      .catch(function () { /* the next event retries */ })
      .then(function () {
        busy = false;
        if (wanted !== shown) { schedule(); }
      });
  }

  function schedule(delay) {
    if (timer === null) { timer = window.setTimeout(refresh, delay || 100); }
  }

  function connect() {
    var source = new EventSource(url);
    source.addEventListener("open", function () { body.setAttribute("data-live", "connected"); });
    source.addEventListener("revision", function (event) {
      body.setAttribute("data-live", "connected");
      wanted = event.data;
      if (wanted !== shown) { schedule(); }
    });
    source.addEventListener("error", function () { body.setAttribute("data-live", "reconnecting"); });
  }
  connect();
  // Times ("12s ago") age even when nothing changes: refresh quietly twice a minute.
  window.setInterval(function () { schedule(); }, 30000);
})();
