// inngest_like dashboard: live tables and the live run page over server-sent events, copy
// buttons, local and relative times, the theme toggle, bulk selection and the value viewer.
// Plain JavaScript, no dependencies, no inline script (the CSP allows scripts from 'self'
// only). Rows arrive as HTML rendered (and escaped) by the server.
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

  // -- times: local and relative beside UTC ---------------------------------------------
  var relative = window.Intl && Intl.RelativeTimeFormat
    ? new Intl.RelativeTimeFormat(undefined, { numeric: "auto" }) : null;

  function ago(ms) {
    var diff = (ms - Date.now()) / 1000;
    var units = [["year", 31536000], ["month", 2592000], ["day", 86400], ["hour", 3600],
                 ["minute", 60], ["second", 1]];
    for (var i = 0; i < units.length; i++) {
      var n = diff / units[i][1];
      if (Math.abs(n) >= 1 || units[i][0] === "second") {
        n = Math.round(n);
        return relative ? relative.format(n, units[i][0])
          : (Math.abs(n) + " " + units[i][0] + (Math.abs(n) === 1 ? "" : "s") + (n <= 0 ? " ago" : " from now"));
      }
    }
    return "";
  }

  function localText(date) {
    var now = new Date();
    var time = date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
    if (date.toDateString() === now.toDateString()) return time;
    return date.toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" }) + " " + time;
  }

  function enhanceTimes(root) {
    (root || document).querySelectorAll("time[datetime]").forEach(function (el) {
      if (el.dataset.local) return;
      var date = new Date(el.getAttribute("datetime"));
      if (isNaN(date.getTime())) return;
      el.dataset.local = "1";
      el.title = date.toISOString() + " UTC";
      var span = document.createElement("span");
      span.className = "when";
      span.dataset.ms = String(date.getTime());
      span.textContent = localText(date) + " local · " + ago(date.getTime());
      el.insertAdjacentElement("afterend", span);
    });
  }

  function refreshTimes() {
    document.querySelectorAll("span.when[data-ms]").forEach(function (span) {
      var ms = parseInt(span.dataset.ms, 10);
      span.textContent = localText(new Date(ms)) + " local · " + ago(ms);
    });
  }

  function duration(ms) {
    ms = Math.max(0, Math.round(ms));
    if (ms < 1000) return ms + " ms";
    var s = ms / 1000;
    if (s < 60) return (s < 10 ? s.toFixed(1) : Math.round(s)) + " s";
    var m = Math.floor(s / 60), sec = Math.floor(s % 60);
    if (m < 60) return sec ? m + " m " + sec + " s" : m + " m";
    var h = Math.floor(m / 60), min = m % 60;
    if (h < 48) return min ? h + " h " + min + " m" : h + " h";
    var d = Math.floor(h / 24), hr = h % 24;
    return hr ? d + " d " + hr + " h" : d + " d";
  }

  function tickElapsed() {
    document.querySelectorAll(".elapsed[data-since]").forEach(function (el) {
      var since = parseInt(el.dataset.since, 10);
      if (since) el.textContent = duration(Date.now() - since);
    });
  }

  // -- copy buttons ---------------------------------------------------------------------
  function announce(text) {
    var status = document.getElementById("copy-status");
    if (status) status.textContent = text;
  }

  function copyText(text, button) {
    function done(ok) {
      var label = button.textContent;
      button.textContent = ok ? "Copied" : "Copy failed";
      button.dataset.copied = ok ? "1" : "0";
      announce(ok ? "Copied to the clipboard" : "Could not copy");
      window.setTimeout(function () { button.textContent = label === "Copied" ? "Copy" : label; }, 1500);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { done(true); }, function () { done(false); });
      return;
    }
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "absolute";
    area.style.left = "-9999px";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    area.remove();
    done(ok);
  }

  document.addEventListener("click", function (e) {
    var button = e.target.closest && e.target.closest("button.copy");
    if (!button) return;
    e.preventDefault();
    var text = button.dataset.copy;
    if (text === undefined && button.dataset.copyFrom) {
      var source = document.querySelector(button.dataset.copyFrom);
      text = source ? source.textContent : "";
    }
    copyText(text || "", button);
  });

  // -- theme toggle ---------------------------------------------------------------------
  function themeToggle() {
    var button = document.getElementById("theme-toggle");
    if (!button) return;
    var order = ["auto", "light", "dark"];
    function current() { return document.documentElement.dataset.theme || "auto"; }
    function show() {
      button.textContent = "Theme: " + current();
      button.setAttribute("aria-label", "Theme: " + current() + " (change)");
    }
    button.hidden = false;
    show();
    button.addEventListener("click", function () {
      var next = order[(order.indexOf(current()) + 1) % order.length];
      if (next === "auto") delete document.documentElement.dataset.theme;
      else document.documentElement.dataset.theme = next;
      try {
        if (next === "auto") window.localStorage.removeItem("il-theme");
        else window.localStorage.setItem("il-theme", next);
      } catch (err) { /* storage disabled: the choice lasts this page */ }
      show();
    });
  }

  // -- filter forms: no empty parameters in the URL --------------------------------------
  document.querySelectorAll("form[data-drop-empty]").forEach(function (form) {
    form.addEventListener("submit", function () {
      form.querySelectorAll("input[name], select[name]").forEach(function (field) {
        if ((field.type === "checkbox" && !field.checked) || field.value === "") field.disabled = true;
      });
      window.setTimeout(function () {
        form.querySelectorAll("[disabled]").forEach(function (field) { field.disabled = false; });
      }, 0);
    });
  });

  // -- bulk selection ---------------------------------------------------------------------
  function bulkSelection() {
    var form = document.getElementById("bulk");
    if (!form) return;
    var pagePick = document.getElementById("pick-page");
    var all = document.getElementById("bulk-all");
    var note = document.getElementById("bulk-selected");
    function boxes() { return document.querySelectorAll('input[type=checkbox][form="bulk"][name="run"]'); }
    function update() {
      var n = 0;
      boxes().forEach(function (b) { if (b.checked) n += 1; });
      if (note) note.textContent = all && all.checked ? "every matching run" : (n ? n + " selected" : "");
    }
    if (pagePick) {
      pagePick.addEventListener("change", function () {
        boxes().forEach(function (b) { b.checked = pagePick.checked; });
        update();
      });
    }
    document.addEventListener("change", function (e) {
      if (e.target && (e.target.name === "run" || e.target === all)) update();
    });
  }

  // -- live tables ---------------------------------------------------------------------------
  // A table whose rows stay current: `data-stream` is the SSE URL (with the page's filters),
  // `data-after` the server time the page was rendered; new rows are inserted in score order.
  // The server ends each stream after a few seconds with a `bye` message: the table then
  // reconnects at once and says nothing; only a stream that breaks shows "Reconnecting".
  function liveTable(table) {
    var tbody = table.tBodies[0];
    var statusEl = document.getElementById(table.dataset.statusEl || "");
    var acceptNew = table.dataset.acceptNew === "1";
    var max = parseInt(table.dataset.max || "50", 10) * 2;
    var after = parseInt(table.dataset.after || "0", 10);
    var pending = [];
    var source = null;
    var announced = 0;
    var paused = false;
    var planned = false;
    var pauseButton = document.querySelector('#live-pause[data-table="' + table.id + '"]');
    table.dataset.connects = "0";

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

    // the element of `row` that matches `el` of the row it replaces (same link or box)
    function counterpart(row, el) {
      if (el.matches('input[type=checkbox]')) return row.querySelector('input[type=checkbox][value="' + CSS.escape(el.value) + '"]');
      if (el.matches("a[href]")) return row.querySelector('a[href="' + CSS.escape(el.getAttribute("href")) + '"]');
      return null;
    }

    function replace(old, row) {
      var focused = old.contains(document.activeElement) ? document.activeElement : null;
      old.querySelectorAll("input[type=checkbox]:checked").forEach(function (box) {
        var twin = counterpart(row, box);
        if (twin) twin.checked = true;
      });
      old.replaceWith(row);
      if (focused) {
        var twin = counterpart(row, focused);
        if (twin) twin.focus({ preventScroll: true });
      }
    }

    function apply(msg) {
      var row = rowFromHtml(msg.html);
      if (!row) return;
      var old = null;
      tbody.querySelectorAll("tr[data-id]").forEach(function (tr) {
        if (tr.dataset.id === msg.id) old = tr;
      });
      if (old) {
        if (old.dataset.status !== row.dataset.status || old.dataset.phase !== row.dataset.phase) row.classList.add("fresh");
        replace(old, row);
      } else if (msg.new && acceptNew) {
        row.classList.add("fresh");
        insert(row, msg.score);
        announced += 1;
        setStatus(statusEl, "live", "Live · " + announced + " new");
      } else {
        return;
      }
      enhanceTimes(row);
    }

    function connect() {
      if (paused) return;
      planned = false;
      source = new EventSource(params());
      source.addEventListener("open", function () {
        table.dataset.connects = String(parseInt(table.dataset.connects, 10) + 1);
        if (statusEl && statusEl.dataset.state !== "live") setStatus(statusEl, "live", "Live");
      });
      source.addEventListener("row", function (e) { apply(JSON.parse(e.data)); });
      source.addEventListener("pending", function (e) { pending = JSON.parse(e.data); });
      source.addEventListener("bye", function () {
        planned = true;  // the server ends streams on purpose: reconnect without a word
        source.close();
        connect();
      });
      source.addEventListener("error", function () {
        source.close();
        if (planned || paused) return;
        setStatus(statusEl, "reconnecting", "Reconnecting…");
        window.setTimeout(connect, 1000);
      });
    }

    if (pauseButton) {
      pauseButton.hidden = false;
      pauseButton.addEventListener("click", function () {
        paused = !paused;
        pauseButton.setAttribute("aria-pressed", paused ? "true" : "false");
        pauseButton.textContent = paused ? "Resume live updates" : "Pause live updates";
        if (paused) {
          if (source) source.close();
          setStatus(statusEl, "paused", "Paused");
        } else {
          setStatus(statusEl, "live", "Live");
          connect();
        }
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
    var planned = false;

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
        enhanceTimes(fresh);
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
      planned = false;
      source = new EventSource(el.dataset.liveRun);
      source.addEventListener("open", function () { setStatus(statusEl, "live", "Live"); });
      source.addEventListener("changed", function (e) {
        var msg = JSON.parse(e.data);
        var url = new URL(el.dataset.liveRun, window.location.href);
        url.searchParams.set("v", msg.version);
        el.dataset.liveRun = url.pathname + url.search;
        refresh(msg.status);
      });
      source.addEventListener("bye", function () {
        planned = true;
        source.close();
        connect();
      });
      source.addEventListener("error", function () {
        source.close();
        if (planned) return;
        if (document.getElementById("run-live") && document.getElementById("run-live").dataset.liveRun) {
          window.setTimeout(connect, 1000);
        }
      });
    }
    connect();
  }

  // -- the value viewer: fold or unfold everything ------------------------------------------
  document.querySelectorAll("button[data-fold]").forEach(function (button) {
    button.addEventListener("click", function () {
      var open = button.dataset.fold === "open";
      document.querySelectorAll("#value-tree details").forEach(function (d) { d.open = open; });
    });
  });

  themeToggle();
  enhanceTimes(document);
  tickElapsed();
  bulkSelection();
  window.setInterval(tickElapsed, 1000);
  window.setInterval(refreshTimes, 30000);
  document.querySelectorAll("table[data-live]").forEach(liveTable);
  var run = document.querySelector("[data-live-run]");
  if (run) liveRun(run);
})();
