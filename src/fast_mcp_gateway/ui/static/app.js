// Fast MCP Gateway dashboard: live updates from /ui/events (Server-Sent Events).
// Each event fires "gw-live" on <body> (htmx parts refresh themselves on it) and is
// appended to the Live page's feed.  No inline script anywhere (CSP: script-src 'self').
(function () {
  "use strict";
  var body = document.body;
  var url = body.dataset.live;
  var status = document.getElementById("live-status");
  if (!url || !window.EventSource) { return; }
  var feed = document.getElementById("live-feed");

  function describe(kind, data) {
    if (kind === "call") {
      return data.server + " · " + data.kind + " " + data.name + " → " + data.status +
        " (" + data.duration_ms.toFixed(1) + " ms)";
    }
    if (kind === "transition") {
      return data.server + " · " + data.replica + " → " + data.status +
        (data.detail ? " (" + data.detail + ")" : "");
    }
    if (kind === "catalog") { return "catalog changed: " + (data.kinds || []).join(", "); }
    if (kind === "alert") {
      return (data.state === "firing" ? "ALERT FIRING " : "alert resolved ") +
        data.rule + " on " + data.server + " [" + data.severity + "]" +
        (data.message ? ": " + data.message : "");
    }
    return kind + ": " + JSON.stringify(data);
  }

  function show(kind, data) {
    if (!feed) { return; }
    var empty = document.getElementById("live-empty");
    if (empty) { empty.remove(); }
    var item = document.createElement("li");
    item.className = "event event-" + kind;
    item.dataset.kind = kind;
    if (kind === "alert") {
      item.classList.add("alert-" + data.state);
      item.dataset.alert = data.state;
      item.dataset.severity = data.severity;
    }
    var when = document.createElement("time");
    when.dateTime = new Date(data.at * 1000).toISOString();
    when.textContent = new Date(data.at * 1000).toLocaleTimeString() + " ";
    item.appendChild(when);
    item.appendChild(document.createTextNode(describe(kind, data)));  // text, never HTML
    feed.insertBefore(item, feed.firstChild);
    while (feed.children.length > 200) { feed.removeChild(feed.lastChild); }
  }

  // A firing or resolved alert is announced on every page (a polite live region).
  var toastBox = document.getElementById("alert-toast");
  var toastTimer = null;
  function toast(data) {
    if (!toastBox) { return; }
    toastBox.textContent = describe("alert", data);
    toastBox.dataset.alert = data.state;
    toastBox.hidden = false;
    if (toastTimer) { clearTimeout(toastTimer); }
    toastTimer = setTimeout(function () { toastBox.hidden = true; }, 8000);
  }

  // How a stream newer ones displaced connects again (the tab's own, or the shared one).
  var reconnect = null;
  var displaced = false;
  function state(value, title) {
    if (value === "live") { body.dataset.liveConnected = "true"; }
    displaced = value === "displaced";
    if (!status) { return; }
    status.classList.toggle("on", value === "live");
    status.classList.toggle("resumable", displaced);
    if (displaced) {
      status.tabIndex = 0;
      status.setAttribute("role", "button");
    } else {
      status.removeAttribute("tabindex");
      status.setAttribute("role", "status");
    }
    if (value === "live") {
      status.textContent = "live";
      status.title = "live updates";
    } else if (value === "stopped" || displaced) {
      status.textContent = "stopped";
      status.title = title || (displaced ? "live updates stopped: newer live streams " +
        "of yours ended this one; use this page (or click here) to resume them" :
        "live updates stopped: the gateway refused them; reload the page");
    } else if (value === "reconnecting") {
      status.textContent = "reconnecting";
    }
  }
  // A displaced stream comes back when its page is used again: shown, focused, clicked
  // or typed in.  Never by itself: it would end the caller's oldest stream, whose page
  // would do the same, two pages taking one place from each other for ever.
  function resume() {
    if (displaced && reconnect) {
      displaced = false;
      reconnect();
    }
  }
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") { resume(); }
  });
  window.addEventListener("focus", resume);
  document.addEventListener("pointerdown", resume, true);
  document.addEventListener("keydown", resume, true);
  function event(kind, data) {
    show(kind, data);
    if (kind === "alert") { toast(data); }
    body.dispatchEvent(new CustomEvent("gw-live", { detail: { kind: kind } }));
    if (kind === "alert") {
      body.dispatchEvent(new CustomEvent("gw-alert", { detail: data }));
    }
  }
  // The session ended (logged out elsewhere, its token expired or removed): the page
  // reloads, which leads to the login page saying why.  Not in the tab logging out: its
  // own way to the login page is under way, and the reload replaced it (a page that
  // answered a form, as the inspector's result, was posted again: "Not logged in").
  var leaving = false;
  document.addEventListener("submit", function (e) {
    var action = e.target.getAttribute("action") || "";
    if (action === body.dataset.base + "/logout") { leaving = true; }
  }, true);
  function ended() { if (!leaving) { window.location.reload(); } }

  // One stream per browser, shared by its tabs (static/live-worker.js): a browser opens
  // 6 connections to a host at most, and a stream per tab left a 7th tab unable to load.
  function shared() {
    var worker;
    try {
      worker = new SharedWorker(body.dataset.base + "/static/live-worker.js",
                                { name: "mgw-live" });
    } catch (e) {
      return false;  // no SharedWorker here (or refused): a stream of the tab's own
    }
    var join = {
      type: "join", url: new URL(url, window.location.href).href,
      key: body.dataset.liveKey || ""
    };
    var heard = false;
    worker.onerror = function () {  // its script did not load: a stream of the tab's own
      if (!heard) { heard = true; own(); }
    };
    worker.port.onmessage = function (m) {
      heard = true;
      var message = m.data;
      if (message.type === "state") { state(message.state, message.title); }
      else if (message.type === "event") { event(message.kind, JSON.parse(message.data)); }
      else if (message.type === "ended") { ended(); }
    };
    worker.port.start();
    worker.port.postMessage(join);
    reconnect = function () { worker.port.postMessage({ type: "resume" }); };
    window.addEventListener("pagehide", function () {
      worker.port.postMessage({ type: "leave" });
    });
    window.addEventListener("pageshow", function (e) {
      if (e.persisted) { worker.port.postMessage(join); }  // back from the page cache
    });
    return true;
  }

  function own() {
    var source = new EventSource(url);
    reconnect = own;
    source.onopen = function () { state("live"); };
    // A lost stream is retried by the browser (CONNECTING); a refused one (a 403, a
    // redirect to the login page: anything but an event stream) never is (CLOSED).
    source.onerror = function () {
      state(source.readyState === EventSource.CLOSED ? "stopped" : "reconnecting");
    };
    ["call", "transition", "catalog", "alert"].forEach(function (kind) {
      source.addEventListener(kind, function (e) { event(kind, JSON.parse(e.data)); });
    });
    source.addEventListener("displaced", function (e) {  // see live-worker.js
      source.close();
      state("displaced", JSON.parse(e.data).message);
    });
    source.addEventListener("ended", function () {
      source.close();
      ended();
    });
    window.addEventListener("pagehide", function () { source.close(); }, { once: true });
  }

  if (!(window.SharedWorker && shared())) { own(); }

  // The alert rule form: not_ready takes no threshold, so its fields hide (and, being
  // disabled, are not sent).
  var ruleForm = document.getElementById("rule-form");
  if (ruleForm) {
    var metric = document.getElementById("rule-metric");
    var syncMetric = function () {
      var none = metric.value === "not_ready";
      ruleForm.querySelectorAll(".metric-threshold").forEach(function (box) {
        box.hidden = none;
        box.querySelectorAll("input, select").forEach(function (f) { f.disabled = none; });
      });
    };
    metric.addEventListener("change", syncMetric);
    syncMetric();
  }

  // The add-server form shows the fields of the chosen kind only.
  var form = document.getElementById("server-form");
  if (form) {
    var sync = function () {
      var kind = (form.querySelector("input[name=kind]:checked") || {}).value || "stdio";
      form.querySelectorAll(".kind-stdio").forEach(function (f) { f.hidden = kind !== "stdio"; });
      form.querySelectorAll(".kind-http").forEach(function (f) { f.hidden = kind !== "http"; });
    };
    form.addEventListener("change", sync);
    sync();
  }
})();
