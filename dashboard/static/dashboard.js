// inngest_like dashboard: live tables and the live run page, over server-sent events.
// Plain JavaScript, no dependencies. Rows arrive as HTML rendered (and escaped) by the server.
(function () {
  "use strict";

  function setStatus(el, state, text) {
    if (!el) return;
    el.dataset.state = state;
    el.textContent = text;
  }

  function rowFromHtml(html) {
    var tpl = document.createElement("template");
    tpl.innerHTML = html.trim();
    return tpl.content.querySelector("tr");
  }

  // A table whose rows stay current: `data-stream` is the SSE URL (with the page's filters),
  // `data-after` the server time the page was rendered; new rows are inserted in score order.
  function liveTable(table) {
    var tbody = table.tBodies[0];
    var statusEl = document.getElementById(table.dataset.statusEl || "");
    var acceptNew = table.dataset.acceptNew === "1";
    var max = parseInt(table.dataset.max || "50", 10) * 2;
    var after = parseInt(table.dataset.after || "0", 10);
    var pending = [];
    var source = null;
    var announced = 0;

    function params() {
      var watch = [];
      tbody.querySelectorAll("tr[data-id]").forEach(function (tr) {
        var score = parseInt(tr.dataset.score || "0", 10);
        if (acceptNew && score > after) after = score;
        if (tr.dataset.status === "Running") watch.push(tr.dataset.id);
      });
      var base = table.dataset.stream;
      return base + (base.indexOf("?") < 0 ? "?" : "&") +
        "after=" + after +
        "&watch=" + encodeURIComponent(watch.slice(0, 200).join(",")) +
        "&pend=" + encodeURIComponent(pending.slice(0, 200).join(","));
    }

    function insert(row, score) {
      var rows = tbody.querySelectorAll("tr[data-id]");
      var before = null;
      for (var i = 0; i < rows.length; i++) {
        if (parseInt(rows[i].dataset.score || "0", 10) <= score) { before = rows[i]; break; }
      }
      var empty = tbody.querySelector("tr.empty");
      if (empty) empty.remove();
      tbody.insertBefore(row, before);
      var all = tbody.querySelectorAll("tr[data-id]");
      for (var j = max; j < all.length; j++) all[j].remove();
    }

    function apply(msg) {
      var row = rowFromHtml(msg.html);
      if (!row) return;
      var old = null;
      tbody.querySelectorAll("tr[data-id]").forEach(function (tr) {
        if (tr.dataset.id === msg.id) old = tr;
      });
      if (old) {
        if (old.dataset.status !== row.dataset.status) row.classList.add("fresh");
        old.replaceWith(row);
      } else if (msg.new && acceptNew) {
        row.classList.add("fresh");
        insert(row, msg.score);
        announced += 1;
        setStatus(statusEl, "live", "Live · " + announced + " new");
      }
    }

    function connect() {
      source = new EventSource(params());
      source.addEventListener("open", function () { setStatus(statusEl, "live", "Live"); });
      source.addEventListener("row", function (e) { apply(JSON.parse(e.data)); });
      source.addEventListener("pending", function (e) { pending = JSON.parse(e.data); });
      source.addEventListener("error", function () {
        // the server ends each stream after a few seconds: reconnect with fresh parameters
        source.close();
        setStatus(statusEl, "reconnecting", "Reconnecting…");
        window.setTimeout(connect, 1000);
      });
    }
    connect();
  }

  // The run page: when the run changes, fetch the page again and swap its live sections,
  // keeping open/closed <details> and never replacing the section that has the focus.
  function liveRun(el) {
    var statusEl = document.getElementById("run-live-status");
    var source = null;
    var busy = false;

    function swap(html) {
      var doc = new DOMParser().parseFromString(html, "text/html");
      document.querySelectorAll("[data-swap]").forEach(function (current) {
        var fresh = doc.getElementById(current.id);
        if (!fresh || current.contains(document.activeElement)) return;
        var open = {};
        current.querySelectorAll("details").forEach(function (d, i) {
          var key = (d.closest("[id]") || {}).id + ":" + i;
          open[key] = d.open;
        });
        fresh.querySelectorAll("details").forEach(function (d, i) {
          var key = (d.closest("[id]") || {}).id + ":" + i;
          if (key in open) d.open = open[key];
        });
        current.replaceWith(fresh);
      });
    }

    function refresh(status) {
      if (busy) return;
      busy = true;
      fetch(window.location.href, { credentials: "same-origin" })
        .then(function (r) { return r.text(); })
        .then(function (html) {
          swap(html);
          if (status !== "Running") {
            if (source) source.close();
            setStatus(document.getElementById("run-live-status"), "ended", "Run " + status.toLowerCase());
          }
        })
        .finally(function () { busy = false; });
    }

    function connect() {
      source = new EventSource(el.dataset.liveRun);
      source.addEventListener("open", function () { setStatus(statusEl, "live", "Live"); });
      source.addEventListener("changed", function (e) {
        var msg = JSON.parse(e.data);
        var url = new URL(el.dataset.liveRun, window.location.href);
        url.searchParams.set("v", msg.version);
        el.dataset.liveRun = url.pathname + url.search;
        refresh(msg.status);
      });
      source.addEventListener("error", function () {
        source.close();
        if (document.getElementById("run-live") && document.getElementById("run-live").dataset.liveRun) {
          window.setTimeout(connect, 1000);
        }
      });
    }
    connect();
  }

  document.querySelectorAll("table[data-live]").forEach(liveTable);
  var run = document.querySelector("[data-live-run]");
  if (run) liveRun(run);
})();
