// The status page: polls the JSON API every second and redraws. Every value from the API goes in
// through textContent, never as HTML, so a name or a reason cannot inject markup.
"use strict";

const PERIOD_MS = 1000;
// A poll that hangs (an overwatch stopped, not gone) must still turn into the banner.
const TIMEOUT_MS = 2500;

let lastGood = null; // Date of the last poll that succeeded

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

async function getJson(path, okStatuses) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
  try {
    const r = await fetch(path, { cache: "no-store", signal: ctl.signal });
    let body = null;
    try { body = await r.json(); } catch (_) { /* not JSON: reported below */ }
    if (!okStatuses.includes(r.status) || body === null) {
      const why = body && body.message ? body.message : r.statusText;
      throw new Error(`${path}: HTTP ${r.status} ${why}`);
    }
    return body;
  } catch (e) {
    throw e.name === "AbortError" ? new Error(`${path}: no answer within ${TIMEOUT_MS / 1000} s`) : e;
  } finally {
    clearTimeout(timer);
  }
}

function age(fromIso, nowIso) {
  const s = (Date.parse(nowIso) - Date.parse(fromIso)) / 1000;
  return Number.isFinite(s) ? `${Math.max(0, s).toFixed(1)} s ago` : fromIso;
}

function row(b, generatedAt) {
  const reason = b.override_reason ? `${b.reason}: ${b.override_reason}`
    : b.agent_reason ? `${b.reason}: ${b.agent_reason}` : b.reason;
  const last = el("td", {}, b.agent_last_seen ? age(b.agent_last_seen, generatedAt) : "—");
  if (b.agent_last_seen) last.title = b.agent_last_seen;
  return el("tr", {
    class: `status-${b.effective_status}`,
    "data-backend": `${b.service}/${b.address}/${b.port}`,
    "data-status": b.effective_status,
    "data-reason": b.reason,
  },
    el("td", {}, b.address),
    el("td", { class: "num" }, b.port),
    el("td", { class: "st" }, b.effective_status),
    el("td", { class: "reason" }, reason),
    el("td", { class: "agent" }, b.agent_id || `(${b.source})`),
    last,
    el("td", { class: "in-dns" }, b.in_table ? "yes" : "no"),
  );
}

function drawBackends(data) {
  const byService = new Map();
  for (const b of data.backends) {
    if (!byService.has(b.service)) byService.set(b.service, []);
    byService.get(b.service).push(b);
  }
  const main = document.getElementById("services");
  if (byService.size === 0) {
    main.replaceChildren(el("p", { class: "empty" }, "No backends."));
    return;
  }
  const sections = [...byService.keys()].sort().map((service) => {
    const head = el("tr", {}, ...["address", "port", "status", "reason", "agent", "last report", "in DNS"]
      .map((h) => el("th", {}, h)));
    const rows = byService.get(service).map((b) => row(b, data.generated_at));
    return el("section", { "data-service": service },
      el("h2", {}, service),
      el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows)));
  });
  main.replaceChildren(...sections);
}

function drawReady(r) {
  const ready = document.getElementById("ready");
  ready.textContent = r.ready ? "ready" : `not ready: ${r.message || ""}`;
  ready.className = `pill ${r.ready ? "ok" : "bad"}`;
  const xdp = document.getElementById("xdp");
  xdp.textContent = `XDP ${r.xdp}`;
  xdp.className = `pill ${r.xdp === "attached" ? "ok" : r.xdp === "unavailable" ? "bad" : ""}`;
  const store = document.getElementById("store");
  const s = r.store || { backend: "embedded", writable: true };
  store.textContent = s.backend === "etcd"
    ? (s.writable ? "etcd reachable" : `etcd unreachable: serving the last state, changes refused (${s.error || ""})`)
    : "store embedded";
  store.className = `pill ${s.writable ? "ok" : "bad"}`;
}

function showProblem(message) {
  const banner = document.getElementById("banner");
  const since = lastGood ? `showing data from ${lastGood.toLocaleTimeString()}` : "no data yet";
  banner.textContent = `Stale / disconnected: ${message} (${since})`;
  banner.hidden = false;
  document.body.classList.add("disconnected");
}

async function poll() {
  const started = Date.now();
  try {
    // 503 is readiness saying "not yet", with a body: shown, not an error.
    const [ready, backends] = await Promise.all([
      getJson("/api/v1/ready", [200, 503]),
      getJson("/api/v1/overwatch/backends", [200]),
    ]);
    drawReady(ready);
    drawBackends(backends);
    lastGood = new Date();
    document.getElementById("updated").textContent = `updated ${backends.generated_at}`;
    document.getElementById("banner").hidden = true;
    document.body.classList.remove("disconnected");
  } catch (e) {
    showProblem(e.message || String(e));
  } finally {
    // One poll starts a period after the last one started, and never before it ended: a change shows
    // within a second, and a slow overwatch never gets overlapping polls.
    setTimeout(poll, Math.max(0, PERIOD_MS - (Date.now() - started)));
  }
}

poll();
