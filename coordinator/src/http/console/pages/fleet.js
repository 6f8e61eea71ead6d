// The fleet at a glance: totals, each model's versions and fragmentation over a week, the
// rollouts running, and the devices behind their target with why.
"use strict";
import { add, api, el, section, table, link, ago, bytes, colorOf, gateName, encode } from "../core.js";
import { versionsChart, historyChart } from "../charts.js";

const HISTORY_DAYS = 7;
const BEHIND_SHOWN = 100;

export const live = true;

export async function render(view) {
  const [status, frag, rollouts] = await Promise.all([
    api("/fleet/status"), api(`/fleet/fragmentation?days=${HISTORY_DAYS}&behind=${BEHIND_SHOWN}`), api("/rollouts?active=true")]);
  add(view, 
    el("div", { class: "cards" },
      card("devices", status.devices_total, "devices-total", "#/devices"),
      card("connected", status.devices_connected, "devices-connected"),
      card("models", status.models.length, "models-count", "#/releases"),
      card("served since start", bytes(status.bytes_served), "bytes-served")),
    el("div", { id: "models" }, models(status, frag)),
    activeRollouts(rollouts),
    behind(frag));
}

function card(label, figure, id, href) {
  const body = [el("div", { class: "muted" }, label), el("div", { class: "figure", id }, figure)];
  return el("div", { class: "card" }, href ? el("a", { href, class: "plain" }, body) : body);
}

function models(status, frag) {
  const byName = Object.fromEntries(frag.models.map((m) => [m.model, m]));
  // Models no device follows yet share one line rather than a card each.
  const idle = status.models.filter((m) => m.devices === 0);
  const out = status.models.filter((m) => m.devices > 0).map((m) => {
    const f = byName[m.model];
    const index = f ? f.overall.index : 0;
    const legend = m.versions.map((v) => el("span", { "data-version": v.version || "none", "data-count": v.devices },
      el("span", { class: "swatch", style: "background:" + colorOf(v.version) }),
      (v.version || "none") + " — " + v.devices + " (" + Math.round(v.share * 100) + "%)"));
    const aliases = m.aliases.map((a) => el("tr", { "data-alias": a.alias },
      el("td", {}, a.alias), el("td", {}, link(`/releases/${encode(m.model)}/${encode(a.version)}`, a.version)),
      el("td", {}, a.on_target + " / " + a.following)));
    const since = Date.now() / 1000 - HISTORY_DAYS * 86400;
    const samples = (f ? f.history : []).filter((p) => p.at >= since).length;
    return el("section", { class: "model", "data-model": m.model, "data-devices": m.devices,
        "data-index": index.toFixed(4), "data-samples": samples },
      el("h2", {}, "Model ", link(`/releases?model=${encode(m.model)}`, m.model), " — " + m.devices + " device(s), fragmentation index ",
        el("span", { class: "index" }, index.toFixed(2))),
      el("div", { class: "grid2" },
        el("div", {}, el("div", { class: "muted" }, "versions running"), versionsChart(m.versions),
          el("div", { class: "legend" }, legend),
          table(["alias", "target", "on target / following"], aliases)),
        el("div", {}, el("div", { class: "muted" }, `fragmentation index, last ${HISTORY_DAYS} days`),
          historyChart(f ? f.history : [], HISTORY_DAYS))));
  });
  if (idle.length > 0) {
    out.push(el("section", { class: "empty-models" }, el("span", { class: "muted" }, "No device follows "),
      idle.map((m) => el("span", { class: "model", "data-model": m.model, "data-devices": 0, "data-index": "0.0000" },
        link(`/releases?model=${encode(m.model)}`, m.model)))));
  }
  return out;
}

// The adoption bar: devices on the target of those the waves reach, not the wave's share
// ("0 on target" must not look finished).
export function adoptionBar(r) {
  const adoption = r.devices.targeted ? Math.round((r.devices.on_target / r.devices.targeted) * 100) : 0;
  return el("div", { class: "bar", title: `${adoption}% on target`, "data-adoption": adoption, role: "img",
    "aria-label": `${adoption}% of the devices reached run the target` },
  el("div", { style: `width:${adoption}%` }));
}

export function gateLine(g) {
  const value = g.value === null || g.value === undefined ? "–" : g.value.toFixed(4);
  return el("div", { class: g.verdict.toLowerCase(), "data-gate": gateName(g.gate), "data-verdict": g.verdict },
    `${gateName(g.gate)}: ${value} (limit ${g.gate.threshold}, ${g.samples}/${g.gate.min_samples} samples) ${g.verdict.toLowerCase()}`);
}

function activeRollouts(rollouts) {
  const active = rollouts.filter((r) => ["Running", "AwaitingApproval"].includes(r.phase));
  const rows = active.map((r) => {
    const waves = r.waves.length, inForce = r.waves_in_force;
    const pct = r.waves[inForce - 1] || 0;
    const adoption = r.devices.targeted ? Math.round((r.devices.on_target / r.devices.targeted) * 100) : 0;
    return el("tr", { "data-rollout": r.id, "data-phase": r.phase, "data-wave": inForce + "/" + waves, "data-adoption": adoption },
      el("td", {}, link(`/rollouts/${encode(r.id)}`, r.id)), el("td", {}, r.model + " " + r.version),
      el("td", {}, r.phase + (r.paused ? " (paused)" : "")),
      el("td", {}, `${inForce}/${waves} (${pct}% of the cohort${r.shadow_waves.includes(inForce - 1) ? ", shadow" : ""})`, adoptionBar(r)),
      el("td", {}, `${r.devices.on_target} on target of ${r.devices.targeted} reached`,
        (r.notes || []).map((note) => el("div", { class: "muted note" }, note)),
        (r.stragglers || []).slice(0, 5).map((s) =>
          el("div", { class: "straggler", "data-device": s.device }, link(`/devices/${encode(s.device)}`, s.device.slice(0, 12) + "…"), ": " + s.reason))),
      el("td", {}, r.gates.map(gateLine)));
  });
  return section("Active rollouts",
    rows.length ? table(["rollout", "version", "phase", "wave", "devices", "gates"], rows, { id: "rollouts" })
      : el("p", { class: "muted", id: "rollouts-empty" }, "No rollout is running. ", link("/rollouts", "All rollouts")));
}

function behind(frag) {
  const rows = [];
  let total = 0;
  for (const m of frag.models) {
    total += Object.values(m.overall.behind_by_reason).reduce((a, b) => a + b, 0);
    for (const b of m.overall.behind.slice(0, BEHIND_SHOWN)) {
      const why = b.reason === "offline" ? "offline, last seen " + ago(b.last_seen)
        : b.reason + (b.detail ? ": " + b.detail : "");
      rows.push(el("tr", { "data-behind": b.id, "data-reason": b.reason },
        el("td", {}, link(`/devices/${encode(b.id)}`, el("code", {}, b.id))), el("td", {}, m.model), el("td", {}, b.running || "–"),
        el("td", {}, b.target), el("td", {}, b.versions_behind), el("td", {}, why)));
    }
  }
  return section("Devices behind their target",
    rows.length ? table(["device", "model", "runs", "target", "behind by", "why"], rows, { id: "behind" })
      : el("p", { class: "muted", id: "behind-empty" }, "Every device runs its alias's target."),
    total > rows.length ? el("p", { class: "muted" }, `${rows.length} of ${total} shown (${BEHIND_SHOWN} per model); `,
      link("/devices", "search the devices")) : null);
}
