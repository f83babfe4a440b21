"use strict";
(function () {
  var doc = JSON.parse(document.getElementById("initial").textContent);
  var received = Date.now();
  var el = function (id) { return document.getElementById(id); };
  var admin = document.body.getAttribute("data-admin") || "";
  function esc(s) { return String(s).replace(/[&<>"']/g, function (c) { return "&#" + c.charCodeAt(0) + ";"; }); }
  function pct(v) { return v == null ? "n/a" : v.toFixed(1) + "%"; }
  function bar(name, v, limit) {
    if (v == null) return "<span>" + name + "</span><span class=na>—</span><span class=na>n/a</span>";
    var w = Math.max(0, Math.min(100, v));
    return "<span>" + name + "</span><div class=bar><i style='width:" + w + "%'" + (v >= limit ? " class=hot" : "") +
      "></i></div><span>" + pct(v) + "</span>";
  }
  function spark(h, limit) {
    if (!h || h.length < 2) return "";
    var n = 120, pts = [], out = "";
    for (var i = 0; i < h.length; i++) {
      var x = ((n - h.length + i) / (n - 1)) * 300, y = 36 - (Math.max(0, h[i]) / 100) * 34 - 1;
      if (h[i] < 0) { if (pts.length > 1) out += "<polyline points='" + pts.join(" ") + "'/>"; pts = []; continue; }
      pts.push(x.toFixed(1) + "," + y.toFixed(1));
    }
    if (pts.length > 1) out += "<polyline points='" + pts.join(" ") + "'/>";
    var ly = 36 - (limit / 100) * 34 - 1;
    return "<svg class=spark viewBox='0 0 300 36' preserveAspectRatio=none aria-label='load, last 10 minutes'>" +
      "<line x1=0 x2=300 y1=" + ly + " y2=" + ly + " />" + out + "</svg>";
  }
  function ago(s) {
    if (!s.lastSeen) return "never heard from";
    var now = Date.parse(doc.summary.now || "") || Date.now();
    var secs = Math.max(0, (now - Date.parse(s.lastSeen) + (Date.now() - received)) / 1000);
    return (s.source === "poll" ? "polled (no agent) " : "last heartbeat ") + secs.toFixed(secs < 10 ? 1 : 0) + " s ago";
  }
  function policy(s) {
    var p = s.sharing;
    if (!p) return "";
    var parts = [];
    if (p.allowedRepositories.length) parts.push("dedicated to " + p.allowedRepositories.join(", "));
    parts.push(p.docker && p.shareIdleTime > 0 ? "shares idle time up to " + p.shareIdleTime + "% (docker)" : "shares no idle time");
    if (p.blockedRepositories.length) parts.push("blocks " + p.blockedRepositories.join(", "));
    parts.push("sessions: " + s.dedicatedSessions + " dedicated, " + s.sharedSessions + " shared");
    return "<p class=policy>" + esc(parts.join(" · ")) + "</p>";
  }
  function card(s) {
    var lim = doc.summary.loadThreshold;
    var why = "";
    if (s.state === "full") why = s.saturated ? "saturated: " + s.saturated : "load " + pct(s.load) + " at or above " + lim + "%";
    else if (s.state === "down") why = (s.reason || "down") + " · since " + new Date(s.since).toLocaleString();
    else if (s.state === "draining") why = s.drainedBy ? "drained by " + s.drainedBy + ": takes no new session" : "draining: takes no new session";
    else if (s.state === "unknown") why = "not heard from since the coordinator started: no agent, and its /load does not answer";
    if (s.probe && s.state !== "down") why += (why ? " · " : "") + "probe: " + s.probe;
    return "<article class='server st-" + s.state + "' data-server='" + esc(s.server) + "'>" +
      "<h2><a href='" + esc(s.link) + "'>" + esc(s.server) + "</a> <span class=state>" + s.state + "</span>" +
      (s.source ? " <span class=source data-source='" + s.source + "'>" + (s.source === "poll" ? "polled" : "agent") + "</span>" : "") + "</h2>" +
      "<div class=bars>" + bar("load", s.lastSeen ? s.load : null, lim) + bar("CPU", s.cpu, lim) +
      bar("RAM", s.memory, lim) + bar("swap", s.swap, lim) + bar("GPU", s.gpu, lim) + bar("VRAM", s.vram, lim) + "</div>" +
      "<div class=facts><span>sessions " + (s.sessions || 0) + " / " + (s.maxSessions || "?") + "</span><span>handed out " +
      s.handedOut + "</span><span class=ago>" + ago(s) + "</span></div>" +
      spark(s.history, lim) + (why ? "<p class=reason>" + esc(why) + "</p>" : "") + policy(s) + button(s) + "</article>";
  }
  // An admin's page (/monitor?admin) has a drain or undrain button per server.
  function button(s) {
    if (!admin) return "";
    var act = s.drainedBy ? "undrain" : "drain";
    return "<button class=act data-action=" + act + " data-server='" + esc(s.server) + "'>" + act + "</button>";
  }
  document.addEventListener("click", function (e) {
    var b = e.target;
    if (!admin || !b.matches || !b.matches("button.act")) return;
    b.disabled = true;
    fetch(location.pathname, { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Simgate-Action": b.getAttribute("data-action") },
      body: JSON.stringify({ action: b.getAttribute("data-action"), server: b.getAttribute("data-server") }) })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return fetch(location.pathname + "?feed=json", { cache: "no-store" }); })
      .then(function (r) { return r.json(); }).then(update)
      .catch(function (err) { b.disabled = false; b.textContent = b.getAttribute("data-action") + " failed (" + err.message + ")"; });
  });
  function render() {
    var m = doc.summary;
    el("s-avail").textContent = m.available;
    el("s-total").textContent = m.servers;
    el("s-mean").textContent = m.meanLoad == null ? "N/A" : m.meanLoad.toFixed(1) + "%";
    el("s-handed").textContent = m.handedOut;
    el("s-none").textContent = m.noServer;
    // Why visitors were turned away (simgate_refusals_total).
    el("s-why").textContent = Object.keys(m.refusals || {}).sort().map(function (k) { return k + " " + m.refusals[k]; }).join(" · ");
    var q = doc.queue || { enabled: false, waiting: 0, oldestWaitSeconds: 0 };
    el("s-queue").textContent = q.enabled ? q.waiting : "off";
    el("s-queue-note").textContent = !q.enabled ? "waiting room" : q.waiting > 0 ?
      "waiting in line, the first for " + Math.floor(q.oldestWaitSeconds / 60) + " min " + (q.oldestWaitSeconds % 60) + " s" : "waiting in line";
    // The first visitor's wait over 10 minutes, scaled to its longest (a minute at least).
    var top = Math.max(60, Math.max.apply(null, (q.history || [0]).concat([0])));
    el("s-queue-plot").innerHTML = q.enabled ? spark((q.history || []).map(function (w) { return w < 0 ? -1 : 100 * w / top; }), 100)
      .replace("load, last 10 minutes", "the first visitor's wait, last 10 minutes (top: " + Math.round(top / 60) + " min)") : "";
    el("started").textContent = new Date(m.started).toLocaleString();
    el("alerts").innerHTML = (m.alerts || []).map(function (a) { return "<p>" + esc(a) + "</p>"; }).join("");
    el("servers").innerHTML = doc.servers.map(card).join("");
  }
  function update(d) { doc = d; received = Date.now(); render(); }
  function live(on, how) { var l = el("live"); l.className = on ? "live" : "live off"; l.textContent = on ? "live (" + how + ")" : how; }
  var polling = null;
  function poll() {
    if (polling) return;
    polling = setInterval(function () {
      fetch(location.pathname + "?feed=json", { cache: "no-store" }).then(function (r) { return r.json(); })
        .then(function (d) { update(d); live(true, "polling: no WebSocket"); el("live").title = "This page's WebSocket did not open, so it asks for the farm every second: the proxy in front passes no WebSocket on /monitor (the README's Apache rules)."; }).catch(function () { live(false, "offline"); });
    }, 1000);
  }
  function connect() {
    var ws;
    try { ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + location.pathname); }
    catch (e) { poll(); return; }
    var opened = false;
    ws.onopen = function () { opened = true; if (polling) { clearInterval(polling); polling = null; } live(true, "push"); };
    ws.onmessage = function (e) { update(JSON.parse(e.data)); };
    ws.onclose = function () { if (!opened) { poll(); return; } live(false, "reconnecting…"); setTimeout(connect, 1000); };
  }
  // Capacity: the demand history (a day or a week) and the what-if,
  // from /api/capacity once a minute (README, Capacity).
  var cap = null;
  function capPlot(points) {
    var W = 1000, H = 160, top = 1;
    points.forEach(function (p) { top = Math.max(top, p.visitors, p.refused, p.sessions); });
    function line(cls, f) {
      return "<polyline class=" + cls + " points='" + points.map(function (p, i) {
        return (i / Math.max(1, points.length - 1) * W).toFixed(1) + "," + (H - 14 - f(p) / top * (H - 24)).toFixed(1);
      }).join(" ") + "'/>";
    }
    var first = points.length ? new Date(points[0].start).toLocaleString() : "";
    return "<svg class=cap viewBox='0 0 " + W + " " + H + "' preserveAspectRatio=none role=img aria-label='visitors, turned away and sessions'>" +
      line("visitors", function (p) { return p.visitors; }) + line("refused", function (p) { return p.refused; }) +
      line("sessions", function (p) { return p.sessions; }) +
      "<text x=4 y=12>" + top + "</text><text x=4 y=" + (H - 2) + ">" + esc(first) + "</text></svg>" +
      "<p class=legend><span><i style='background:#3b6fd8'></i>visitors per step</span><span><i style='background:var(--full)'></i>turned away</span>" +
      "<span><i style='background:var(--up)'></i>sessions running (mean)</span></p>";
  }
  function capRender() {
    if (!cap) return;
    var span = el("cap-span").value;
    el("cap-plot").innerHTML = capPlot(span === "week" ? cap.week : cap.day);
    var w = cap.whatIf, t = el("cap-whatif");
    if (!w) { t.innerHTML = ""; el("cap-note").textContent = cap.computing ? "the what-if is being made…" : (cap.error || ""); return; }
    if (w.error) { t.innerHTML = ""; el("cap-note").textContent = "what-if: " + w.error; return; }
    el("cap-note").textContent = "what-if: the " + w.visitors + " visitors since " + new Date(w.from).toLocaleString() +
      " replayed through simgate's placement on N+k servers (" + w.seatsPerServer + " sessions each, sessions of " +
      w.meanSessionSeconds.toFixed(0) + " s in the mean)" + (cap.computing ? " · a newer one is being made" : "");
    t.innerHTML = "<tr><th>servers</th><th>k</th><th>placed</th><th>seated from the line</th><th>turned away</th><th>wait p95</th></tr>" +
      w.rows.map(function (r) {
        return "<tr" + (r.k === 0 ? " class=now" : "") + "><td>" + r.servers + "</td><td>" + (r.k > 0 ? "+" : "") + r.k + "</td><td>" + r.placed +
          "</td><td>" + r.seated + "</td><td>" + r.refused + "</td><td>" + r.waitP95Seconds.toFixed(0) + " s</td></tr>";
      }).join("");
  }
  function capFetch() {
    fetch(location.pathname.replace(/monitor$/, "") + "api/capacity", { cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (d) { cap = d; capRender(); setTimeout(capFetch, d.computing ? 5000 : 60000); })
      .catch(function () { setTimeout(capFetch, 60000); });
  }
  el("cap-span").addEventListener("change", capRender);
  capFetch();
  render();
  setInterval(function () {
    var a = document.querySelectorAll(".ago");
    for (var i = 0; i < a.length && i < doc.servers.length; i++) a[i].textContent = ago(doc.servers[i]);
  }, 1000);
  connect();
})();
