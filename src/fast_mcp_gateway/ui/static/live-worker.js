// Fast MCP Gateway dashboard: one live stream (/ui/events) per browser, shared by all
// of its dashboard tabs (a SharedWorker; app.js falls back to a stream of its own).
// A browser opens at most 6 connections to one host over HTTP/1.1 and each tab held one
// for its stream: a 7th tab of the dashboard never loaded, nor did anything else of the
// gateway in that browser, until a tab was closed.
// Tabs join with the stream's URL and their session's key (its CSRF token): tabs of one
// session share a stream; a tab of another login gets its own.  A stream whose last tab
// left is closed.
"use strict";

var streams = {};
var KINDS = ["call", "transition", "catalog", "alert"];

function open(id, url) {
  var stream = { ports: [], state: "connecting", source: new EventSource(url) };
  var source = stream.source;
  function send(message) {
    stream.ports.forEach(function (port) { port.postMessage(message); });
  }
  function state(value, title) {
    stream.state = value;
    send({ type: "state", state: value, title: title });
  }
  source.onopen = function () { state("live"); };
  // A lost stream is retried by the browser (CONNECTING); a refused one (a 403, a
  // redirect to the login page: anything but an event stream) never is (CLOSED).
  source.onerror = function () {
    if (source.readyState === EventSource.CLOSED) {
      delete streams[id];  // a tab that reloads opens it again
      state("stopped");
    } else {
      state("reconnecting");
    }
  };
  KINDS.forEach(function (kind) {
    source.addEventListener(kind, function (e) {
      send({ type: "event", kind: kind, data: e.data });
    });
  });
  // A newer stream of the same caller ended this one (the gateway's per-caller bound):
  // reconnecting would end another, so it stops, saying why.
  source.addEventListener("displaced", function (e) {
    source.close();
    delete streams[id];
    state("stopped", JSON.parse(e.data).message);
  });
  source.addEventListener("ended", function () {
    source.close();
    delete streams[id];
    send({ type: "ended" });
  });
  streams[id] = stream;
  return stream;
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
    if (joined !== null) { leave(port, joined); joined = null; }
    if (message.type === "join") {
      joined = message.url + "\n" + message.key;
      var stream = streams[joined] || open(joined, message.url);
      stream.ports.push(port);
      port.postMessage({ type: "state", state: stream.state });
    }
  };
  port.start();
};
