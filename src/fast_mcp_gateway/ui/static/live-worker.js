// Fast MCP Gateway dashboard: one live stream (/ui/events) per browser, shared by all
// of its dashboard tabs (a SharedWorker; app.js falls back to a stream of its own).
// A browser opens at most 6 connections to one host over HTTP/1.1 and each tab held one
// for its stream: a 7th tab of the dashboard never loaded, nor did anything else of the
// gateway in that browser, until a tab was closed.
// Tabs join with the stream's URL and their session's key (its CSRF token): tabs of one
// session share a stream; a tab of another login gets its own.  A stream whose last tab
// left is closed.  One a newer stream of the caller displaced waits until a tab of it
// is used again (app.js sends "resume": shown, focused, clicked), then reconnects.
"use strict";

var streams = {};
var KINDS = ["call", "transition", "catalog", "alert"];

function open(id, url) {
  var stream = { ports: [], state: "connecting", url: url, source: null };
  streams[id] = stream;
  connect(id, stream);
  return stream;
}

function connect(id, stream) {
  var source = new EventSource(stream.url);
  stream.source = source;
  function send(message) {
    stream.ports.forEach(function (port) { port.postMessage(message); });
  }
  function state(value, title) {
    if (stream.source !== source) { return; }  // a source this stream has replaced
    stream.state = value;
    send({ type: "state", state: value, title: title });
  }
  source.onopen = function () { state("live"); };
  // A lost stream is retried by the browser (CONNECTING); a refused one (a 403, a
  // redirect to the login page: anything but an event stream) never is (CLOSED).
  source.onerror = function () {
    if (source.readyState === EventSource.CLOSED) {
      if (stream.source === source) { delete streams[id]; }  // a tab that reloads opens it again
      state("stopped");
    } else {
      state("reconnecting");
    }
  };
  KINDS.forEach(function (kind) {
    source.addEventListener(kind, function (e) {
      if (stream.source === source) { send({ type: "event", kind: kind, data: e.data }); }
    });
  });
  // A newer stream of the same caller ended this one (the gateway's per-caller bound):
  // reconnecting at once would end another, which would do the same, so it waits,
  // saying why, for one of its tabs to be used again ("resume") or a tab to join.
  source.addEventListener("displaced", function (e) {
    source.close();
    state("displaced", JSON.parse(e.data).message);
  });
  source.addEventListener("ended", function () {
    source.close();
    if (stream.source === source) { delete streams[id]; }
    send({ type: "ended" });
  });
}

// A displaced stream connects again for all its tabs when one of them is used.
function resume(id) {
  var stream = streams[id];
  if (!stream || stream.state !== "displaced") { return; }
  stream.state = "reconnecting";
  stream.ports.forEach(function (port) {
    port.postMessage({ type: "state", state: "reconnecting" });
  });
  connect(id, stream);
}

function leave(port, id) {
  var stream = streams[id];
  if (!stream) { return; }
  stream.ports = stream.ports.filter(function (p) { return p !== port; });
  if (!stream.ports.length) {
    stream.source.close();
    delete streams[id];
  }
}

self.onconnect = function (e) {
  var port = e.ports[0];
  var joined = null;
  port.onmessage = function (m) {
    var message = m.data || {};
    if (message.type === "resume") {
      if (joined !== null) { resume(joined); }
      return;
    }
    if (joined !== null) { leave(port, joined); joined = null; }
    if (message.type === "join") {
      joined = message.url + "\n" + message.key;
      var stream = streams[joined] || open(joined, message.url);
      stream.ports.push(port);
      port.postMessage({ type: "state", state: stream.state });
      resume(joined);  // a tab (re)loading is one used again
    }
  };
  port.start();
};
