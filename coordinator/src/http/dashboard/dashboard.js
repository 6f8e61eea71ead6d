"use strict";
const REFRESH_MS = 5000;
const COLORS = ["#2b6cb0", "#2f8f5b", "#b7791f", "#805ad5", "#c05621", "#2c7a7b", "#b83280", "#718096"];
const HISTORY_DAYS = 7;
const params = new URLSearchParams(location.hash.slice(1));
let token = params.get("token") || sessionStorage.getItem("ferry-token") || "";
let devices = [];

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "style") e.setAttribute("style", v);
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}
function svg(tag, attrs, ...children) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children.flat()) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}
// A version keeps its colour across refreshes and models: picked by its name, not its rank.
function colorOf(version) {
  if (!version) return "#a0a7b4";
  let h = 0;
  for (const c of version) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return COLORS[h % COLORS.length];
}
function fill(id, rows) { const t = document.getElementById(id); t.replaceChildren(...rows); return rows.length; }
function ago(secs) {
  const d = Math.max(0, Math.floor(Date.now() / 1000) - secs);
  if (d < 60) return d + "s ago";
  if (d < 3600) return Math.floor(d / 60) + "m ago";
  if (d < 86400) return Math.floor(d / 3600) + "h ago";
  return Math.floor(d / 86400) + "d ago";
}
function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}
async function api(path) {
  const r = await fetch("/api/v1" + path, { headers: { Authorization: "Bearer " + token } });
  if (r.status === 401) throw Object.assign(new Error("the token was refused"), { login: true });
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

function versionsChart(versions) {
  const total = versions.reduce((s, v) => s + v.devices, 0) || 1;
  const w = 560, h = 26;
  let x = 0;
  const rects = versions.map((v) => {
    const width = (v.devices / total) * w;
    const r = svg("rect", { x, y: 0, width: Math.max(width, 0), height: h, fill: colorOf(v.version) },
      svg("title", {}, (v.version || "none") + ": " + v.devices));
    x += width;
    return r;
  });
  return svg("svg", { viewBox: `0 0 ${w} ${h}`, width: "100%", height: h, role: "img",
    preserveAspectRatio: "none", "aria-label": "devices per version" }, rects);
}

// The index over the last `days` days on a time axis (a day per tick), 0 to 1 upwards:
// ten minutes of samples take ten minutes' width, not the whole chart.
function historyChart(history, days) {
  const w = 560, h = 130, left = 30, right = 10, top = 8, bottom = 22;
  const now = Date.now() / 1000, t0 = now - days * 86400;
  const xs = (t) => left + ((t - t0) / (now - t0)) * (w - left - right);
  const ys = (v) => h - bottom - v * (h - top - bottom);
  const axes = [];
  for (const v of [0, 0.5, 1]) {
    axes.push(svg("line", { x1: left, y1: ys(v), x2: w - right, y2: ys(v), stroke: "var(--line)" }),
      svg("text", { x: left - 4, y: ys(v) + 3, "text-anchor": "end", "font-size": 10 }, v.toFixed(1)));
  }
  for (let d = 0; d <= days; d++) {
    const t = t0 + d * 86400;
    const anchor = d === 0 ? "start" : d === days ? "end" : "middle";
    axes.push(svg("line", { x1: xs(t), y1: ys(0), x2: xs(t), y2: ys(0) + 4, stroke: "var(--muted)" }),
      svg("text", { x: xs(t), y: h - 6, "text-anchor": anchor, "font-size": 10 },
        d === days ? "now" : new Date(t * 1000).toLocaleDateString(undefined, { month: "short", day: "numeric" })));
  }
  const shown = history.filter((p) => p.at >= t0);
  const points = shown.map((p) => `${xs(p.at).toFixed(1)},${ys(p.index).toFixed(1)}`).join(" ");
  return svg("svg", { viewBox: `0 0 ${w} ${h}`, width: "100%", role: "img",
      "aria-label": `fragmentation index, last ${days} days`, "data-samples": shown.length },
    axes,
    shown.length > 1 ? svg("polyline", { points, fill: "none", stroke: "var(--accent)", "stroke-width": 2 }) : [],
    shown.map((p) => svg("circle", { cx: xs(p.at), cy: ys(p.index), r: shown.length > 1 ? 1.5 : 3, fill: "var(--accent)" },
      svg("title", {}, new Date(p.at * 1000).toLocaleString() + ": " + p.index.toFixed(2)))),
    shown.length === 0 ? svg("text", { x: (w + left) / 2, y: h / 2, "text-anchor": "middle", "font-size": 12 }, "no sample yet") : []);
}

function renderModels(status, frag) {
  const byName = Object.fromEntries(frag.models.map((m) => [m.model, m]));
  // Models no device follows yet share one line rather than a card each.
  const idle = status.models.filter((m) => m.devices === 0);
  const sections = status.models.filter((m) => m.devices > 0).map((m) => {
    const f = byName[m.model];
    const index = f ? f.overall.index : 0;
    const legend = m.versions.map((v) => el("span", { "data-version": v.version || "none", "data-count": v.devices },
      el("span", { class: "swatch", style: "background:" + colorOf(v.version) }),
      (v.version || "none") + " — " + v.devices + " (" + Math.round(v.share * 100) + "%)"));
    const aliases = m.aliases.map((a) => el("tr", { "data-alias": a.alias },
      el("td", {}, a.alias), el("td", {}, a.version), el("td", {}, a.on_target + " / " + a.following)));
    const since = Date.now() / 1000 - HISTORY_DAYS * 86400;
    const samples = (f ? f.history : []).filter((p) => p.at >= since).length;
    return el("section", { class: "model", "data-model": m.model, "data-devices": m.devices,
        "data-index": index.toFixed(4), "data-samples": samples },
      el("h2", {}, "Model " + m.model + " — " + m.devices + " device(s), fragmentation index ",
        el("span", { class: "index" }, index.toFixed(2))),
      el("div", { class: "grid2" },
        el("div", {}, el("div", { class: "muted" }, "versions running"), versionsChart(m.versions),
          el("div", { class: "legend" }, legend),
          el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "alias"), el("th", {}, "target"), el("th", {}, "on target / following"))),
            el("tbody", {}, aliases))),
        el("div", {}, el("div", { class: "muted" }, `fragmentation index, last ${HISTORY_DAYS} days`),
          historyChart(f ? f.history : [], HISTORY_DAYS))));
  });
  if (idle.length > 0) {
    sections.push(el("section", { class: "empty-models" }, el("span", { class: "muted" }, "No device follows "),
      idle.map((m) => el("span", { class: "model", "data-model": m.model, "data-devices": 0, "data-index": "0.0000" }, m.model))));
  }
  document.getElementById("models").replaceChildren(...sections);
  document.getElementById("models-count").textContent = status.models.length;
}

function renderRollouts(rollouts) {
  const active = rollouts.filter((r) => ["Running", "AwaitingApproval"].includes(r.phase));
  const n = fill("rollouts", active.map((r) => {
    const waves = r.waves.length, inForce = r.waves_in_force;
    const pct = r.waves[inForce - 1] || 0;
    // The bar shows adoption (devices on the target of those the waves reach), not the
    // wave's share: "0 on target" must not look finished.
    const adoption = r.devices.targeted ? Math.round((r.devices.on_target / r.devices.targeted) * 100) : 0;
    const gates = r.gates.map((g) => {
      const kind = g.gate.kind;
      const name = typeof kind === "string" ? kind
        : kind.Drift ? `drift of ${kind.Drift.metric} (${kind.Drift.statistic})`
        : "custom " + Object.values(kind)[0];
      const value = g.value === null || g.value === undefined ? "–" : g.value.toFixed(4);
      return el("div", { class: g.verdict.toLowerCase() }, `${name}: ${value} (threshold ${g.gate.threshold}, ${g.samples}/${g.gate.min_samples} samples) ${g.verdict.toLowerCase()}`);
    });
    return el("tr", { "data-rollout": r.id, "data-phase": r.phase, "data-wave": inForce + "/" + waves,
        "data-adoption": adoption },
      el("td", {}, r.id), el("td", {}, r.model + " " + r.version),
      el("td", {}, r.phase + (r.paused ? " (paused)" : "")),
      el("td", {}, `${inForce}/${waves} (${pct}% of the fleet${r.shadow_waves.includes(inForce - 1) ? ", shadow" : ""})`,
        el("div", { class: "bar", title: `${adoption}% on target`, "data-adoption": adoption },
          el("div", { style: `width:${adoption}%` }))),
      el("td", {}, `${r.devices.on_target} on target of ${r.devices.targeted} targeted`,
        ...(r.notes || []).map((note) => el("div", { class: "muted note" }, note)),
        ...(r.stragglers || []).slice(0, 5).map((s) =>
          el("div", { class: "straggler", "data-device": s.device }, `${s.device.slice(0, 12)}…: ${s.reason}`))),
      el("td", {}, gates));
  }));
  document.getElementById("rollouts-empty").hidden = n > 0;
}

function renderBehind(frag) {
  const rows = [];
  for (const m of frag.models) {
    for (const b of m.overall.behind.slice(0, 100)) {
      const why = b.reason === "offline" ? "offline, last seen " + ago(b.last_seen)
        : b.reason + (b.detail ? ": " + b.detail : "");
      rows.push(el("tr", { "data-behind": b.id, "data-reason": b.reason },
        el("td", {}, el("code", {}, b.id)), el("td", {}, m.model), el("td", {}, b.running || "–"),
        el("td", {}, b.target), el("td", {}, b.versions_behind), el("td", {}, why)));
    }
  }
  document.getElementById("behind-empty").hidden = fill("behind", rows) > 0;
}

function renderDevices() {
  const q = document.getElementById("search").value.trim();
  const [key, value] = q.includes("=") ? q.split("=", 2).map((s) => s.trim()) : [null, null];
  const match = (d) => !q || (key !== null ? d.labels[key] === value
    : d.id.includes(q) || Object.values(d.labels).some((v) => v === q));
  const shown = devices.filter(match);
  fill("devices", shown.slice(0, 200).map((d) => {
    const m = d.models[0] || {};
    const phase = typeof m.phase === "string" ? m.phase : Object.keys(m.phase || {})[0] || "–";
    return el("tr", { "data-device": d.id },
      el("td", {}, el("code", {}, d.id)),
      el("td", {}, Object.entries(d.labels).map(([k, v]) => k + "=" + v).join(", ")),
      el("td", {}, m.active || "–"), el("td", {}, (d.connected ? "connected, " : "offline, ") + phase.toLowerCase()),
      el("td", {}, ago(d.last_seen)));
  }));
  document.getElementById("search-count").textContent = q ? `${shown.length} of ${devices.length}` : `${devices.length} device(s)`;
}

async function refresh() {
  try {
    const [status, frag, rollouts, devs] = await Promise.all([
      api("/fleet/status"), api("/fleet/fragmentation?days=7"), api("/rollouts"), api("/devices")]);
    devices = devs;
    document.getElementById("devices-total").textContent = status.devices_total;
    document.getElementById("devices-connected").textContent = status.devices_connected;
    document.getElementById("bytes-served").textContent = bytes(status.bytes_served);
    renderModels(status, frag);
    renderRollouts(rollouts);
    renderBehind(frag);
    renderDevices();
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    document.getElementById("problem").textContent = "";
    document.body.dataset.loaded = "true";
  } catch (e) {
    if (e.login) return showLogin(e.message);
    document.getElementById("problem").textContent = e.message;
  }
}

function showLogin(message) {
  document.getElementById("updated").textContent = "";
  document.getElementById("app").hidden = true;
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = message || "";
}

function start() {
  document.getElementById("updated").textContent = "loading…";
  document.getElementById("login").hidden = true;
  document.getElementById("app").hidden = false;
  refresh();
}

document.getElementById("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = document.getElementById("token").value.trim();
  sessionStorage.setItem("ferry-token", token);
  start();
});
document.getElementById("search").addEventListener("input", renderDevices);
if (params.get("q")) document.getElementById("search").value = params.get("q");
if (params.get("token")) {
  sessionStorage.setItem("ferry-token", token);
  history.replaceState(null, "", location.pathname + (params.get("q") ? "#q=" + encodeURIComponent(params.get("q")) : ""));
}
if (token) start(); else showLogin();
setInterval(() => { if (token && !document.getElementById("app").hidden) refresh(); }, REFRESH_MS);
