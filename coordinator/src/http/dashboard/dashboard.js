"use strict";
const REFRESH_MS = 5000;
const COLORS = ["#2b6cb0", "#2f8f5b", "#b7791f", "#805ad5", "#c05621", "#2c7a7b", "#b83280", "#718096"];
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
  const rects = versions.map((v, i) => {
    const width = (v.devices / total) * w;
    const r = svg("rect", { x, y: 0, width: Math.max(width, 0), height: h, fill: COLORS[i % COLORS.length] },
      svg("title", {}, (v.version || "none") + ": " + v.devices));
    x += width;
    return r;
  });
  return svg("svg", { viewBox: `0 0 ${w} ${h}`, width: "100%", height: h, role: "img",
    preserveAspectRatio: "none", "aria-label": "devices per version" }, rects);
}

function historyChart(history) {
  const w = 560, h = 90, pad = 4;
  if (history.length === 0) return el("p", { class: "muted" }, "No sample yet.");
  const t0 = history[0].at, t1 = history[history.length - 1].at || t0 + 1;
  const xs = (t) => pad + ((t - t0) / Math.max(1, t1 - t0)) * (w - 2 * pad);
  const ys = (v) => h - pad - v * (h - 2 * pad);
  const points = history.map((p) => `${xs(p.at).toFixed(1)},${ys(p.index).toFixed(1)}`).join(" ");
  return svg("svg", { viewBox: `0 0 ${w} ${h}`, width: "100%", height: h, role: "img",
      preserveAspectRatio: "none", "aria-label": "fragmentation index over time" },
    svg("line", { x1: pad, y1: ys(0), x2: w - pad, y2: ys(0), stroke: "#e3e6ec" }),
    svg("line", { x1: pad, y1: ys(1), x2: w - pad, y2: ys(1), stroke: "#e3e6ec" }),
    svg("polyline", { points, fill: "none", stroke: "#2b6cb0", "stroke-width": 2 }),
    history.length === 1 ? svg("circle", { cx: xs(history[0].at), cy: ys(history[0].index), r: 3, fill: "#2b6cb0" }) : []);
}

function renderModels(status, frag) {
  const byName = Object.fromEntries(frag.models.map((m) => [m.model, m]));
  const sections = status.models.map((m) => {
    const f = byName[m.model];
    const index = f ? f.overall.index : 0;
    const legend = m.versions.map((v, i) => el("span", { "data-version": v.version || "none", "data-count": v.devices },
      el("span", { class: "swatch", style: "background:" + COLORS[i % COLORS.length] }),
      (v.version || "none") + " — " + v.devices + " (" + Math.round(v.share * 100) + "%)"));
    const aliases = m.aliases.map((a) => el("tr", { "data-alias": a.alias },
      el("td", {}, a.alias), el("td", {}, a.version), el("td", {}, a.on_target + " / " + a.following)));
    return el("section", { class: "model", "data-model": m.model, "data-devices": m.devices,
        "data-index": index.toFixed(4) },
      el("h2", {}, "Model " + m.model + " — " + m.devices + " device(s), fragmentation index ",
        el("span", { class: "index" }, index.toFixed(2))),
      el("div", { class: "grid2" },
        el("div", {}, el("div", { class: "muted" }, "versions running"), versionsChart(m.versions),
          el("div", { class: "legend" }, legend),
          el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "alias"), el("th", {}, "target"), el("th", {}, "on target / following"))),
            el("tbody", {}, aliases))),
        el("div", {}, el("div", { class: "muted" }, "fragmentation index, last 7 days"),
          historyChart(f ? f.history : []))));
  });
  document.getElementById("models").replaceChildren(...sections);
  document.getElementById("models-count").textContent = status.models.length;
}

function renderRollouts(rollouts) {
  const active = rollouts.filter((r) => ["Running", "AwaitingApproval"].includes(r.phase));
  const n = fill("rollouts", active.map((r) => {
    const waves = r.waves.length, inForce = r.waves_in_force;
    const pct = r.waves[inForce - 1] || 0;
    const gates = r.gates.map((g) => {
      const kind = g.gate.kind;
      const name = typeof kind === "string" ? kind
        : kind.Drift ? `drift of ${kind.Drift.metric} (${kind.Drift.statistic})`
        : "custom " + Object.values(kind)[0];
      const value = g.value === null || g.value === undefined ? "–" : g.value.toFixed(4);
      return el("div", { class: g.verdict.toLowerCase() }, `${name}: ${value} (threshold ${g.gate.threshold}, ${g.samples}/${g.gate.min_samples} samples) ${g.verdict.toLowerCase()}`);
    });
    return el("tr", { "data-rollout": r.id, "data-phase": r.phase, "data-wave": inForce + "/" + waves },
      el("td", {}, r.id), el("td", {}, r.model + " " + r.version),
      el("td", {}, r.phase + (r.paused ? " (paused)" : "")),
      el("td", {}, `${inForce}/${waves} (${pct}%${r.shadow_waves.includes(inForce - 1) ? " shadow" : ""})`,
        el("div", { class: "bar" }, el("div", { style: `width:${pct}%` }))),
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
  document.getElementById("app").hidden = true;
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = message || "";
}

function start() {
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
