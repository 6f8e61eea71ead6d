// One rollout: its waves with the one in force, its gates now and over time, the devices
// by where they stand and those holding it up, and the actions the token's role allows
// (approve, pause, resume, abort, roll back), each with a reason for the audit trail.
"use strict";
import { add, api, el, section, table, link, ago, encode, actionButton, changed } from "../core.js";
import { gateChart, gateColor } from "../charts.js";
import { adoptionBar, gateLine } from "./fleet.js";

export const live = true;

// The counts, in the API's standing names: each links to its list below them.
const STANDINGS = [
  ["cohort", "in the cohort"], ["targeted", "reached by the waves in force"],
  ["on_target", "on the target"], ["shadowing", "shadowing (staged, not serving)"],
  ["install_failed", "install failed"], ["health_failed", "health check failed"],
  ["holding_up", "holding it up"], ["left_out", "left out"],
];
const PAGE = 50;

export async function render(view, { params, query }) {
  const id = params[0];
  const standing = STANDINGS.some(([s]) => s === query.get("standing")) ? query.get("standing") : null;
  const listParams = new URLSearchParams({ standing: standing || "cohort", limit: PAGE });
  if (query.get("after")) listParams.set("after", query.get("after"));
  const [r, list] = await Promise.all([
    api(`/rollouts/${encode(id)}`),
    standing ? api(`/rollouts/${encode(id)}/devices?${listParams}`) : null,
  ]);
  const active = !["Completed", "Aborted", "RolledBack"].includes(r.phase);
  const act = (verb, label, action, detail, danger) => actionButton({
    label, action, model: r.model, key: verb, danger, detail,
    title: `${label} rollout ${r.id}`,
    run: (reason) => api(`/rollouts/${encode(r.id)}/${verb}`, { method: "POST", body: { reason } }),
    done: changed,
  });
  const buttons = active ? [
    r.phase === "AwaitingApproval" ? act("approve", "Approve", "approve", `Lets wave ${r.waves_in_force + 1} of ${r.waves.length} start.`) : null,
    r.paused ? act("resume", "Resume", "run-rollout") : act("pause", "Pause", "run-rollout", "No wave advances until it is resumed; devices keep what they have."),
    act("abort", "Abort", "run-rollout", "Stops the rollout where it is: devices that took the release keep it.", true),
    act("rollback", "Roll back", "roll-back", "Every device of the rollout goes back to the alias's release.", true),
  ] : [];
  const counts = {
    cohort: r.devices.cohort, targeted: r.devices.targeted, on_target: r.devices.on_target,
    shadowing: r.devices.shadowing, install_failed: r.devices.install_failed,
    health_failed: r.devices.health_failed, holding_up: r.stragglers_total, left_out: r.left_out,
  };
  const here = `/rollouts/${encode(r.id)}`;
  add(view, 
    el("div", { class: "page-head" },
      el("h1", {}, "Rollout ", r.id),
      el("div", { class: "buttons", id: "rollout-actions" }, buttons)),
    el("p", { id: "rollout-summary", "data-phase": r.phase, "data-wave": `${r.waves_in_force}/${r.waves.length}` },
      el("strong", { class: r.phase === "RolledBack" ? "fail" : r.phase === "Completed" ? "pass" : null }, r.phase + (r.paused ? " (paused)" : "")),
      ` — ${r.model} `, link(`/releases/${encode(r.model)}/${encode(r.version)}`, r.version), ` to ${r.cohort || "every device"} following ${r.alias}; started by ${r.created_by} ${ago(r.created_at)}, last change ${ago(r.updated_at)}`),
    r.reason ? el("p", { id: "rollout-reason", class: r.phase === "RolledBack" ? "fail" : "muted" }, "Why: " + r.reason) : null,
    (r.notes || []).map((n) => el("p", { class: "note muted" }, n)),
    el("div", { class: "grid2" },
      section("Waves", el("ol", { class: "waves", id: "wave-list" }, r.waves.map((share, i) => el("li", {
        class: i < r.waves_in_force ? "in-force" : null, "data-wave": i + 1, "aria-current": i + 1 === r.waves_in_force ? "step" : null },
      `${share} % of the cohort${r.shadow_waves.includes(i) ? ", shadow (staged, not serving)" : ""}`,
      i < r.waves_in_force ? " — in force" : i === r.waves_in_force && r.phase === "AwaitingApproval" ? " — waits for approval" : ""))),
      adoptionBar(r)),
      section("Devices", el("dl", { class: "facts", id: "rollout-devices" }, STANDINGS.map(([key, words]) =>
        [el("dt", {}, words), el("dd", { "data-count": key },
          counts[key] > 0 && key !== standing
            ? link(`${here}?standing=${key}`, String(counts[key]), { "aria-label": `list the ${counts[key]} device(s) ${words}` })
            : String(counts[key]))])))),
    list ? deviceList(list, here, STANDINGS.find(([s]) => s === standing)[1], query.get("after")) : null,
    section("Gates of the wave in force",
      el("div", { id: "gates" }, r.gates.map((g, i) => el("div", { class: "gate-row" },
        el("span", { class: "swatch", style: "background:" + gateColor(i) }), gateLine(g)))),
      el("div", { class: "muted" }, "Each gate's value as a share of its limit, over time (1 = the limit: a gate at or over it fails)"),
      gateChart(r.gates, r.gate_history || [])),
    section("Holding it up",
      r.stragglers.length === 0 ? el("p", { class: "muted" }, "No device of the waves in force is without an outcome.")
        : table(["device", "wave", "why", ""], r.stragglers.map((s) => el("tr", { "data-straggler": s.device },
          el("td", {}, link(`/devices/${encode(s.device)}`, el("code", {}, s.device.slice(0, 16) + "…"))),
          el("td", {}, s.wave), el("td", {}, s.reason), el("td", {}, s.left_out ? "left out" : "")))),
      r.stragglers_total > r.stragglers.length ? el("p", { class: "muted" }, `${r.stragglers.length} of ${r.stragglers_total} shown`) : null),
    section("Its audit entries", el("p", {}, link(`/audit?subject=${encode(r.id)}`, "Changes to " + r.id, { id: "rollout-audit" }))));
}

// One standing's devices, a page at a time (the API pages in id order).
function deviceList(list, here, words, after) {
  const base = `${here}?standing=${list.standing}`;
  return section(`Devices ${words} (${list.total})`,
    table(["device", "wave", "runs", "staged", "connection", "holding it up"], list.devices.map((d) =>
      el("tr", { "data-listed": d.id },
        el("td", {}, link(`/devices/${encode(d.id)}`, d.name ? d.name : el("code", {}, d.id.slice(0, 16) + "…"), { title: d.id })),
        el("td", {}, d.wave), el("td", {}, d.current || "–"), el("td", {}, d.candidate || "–"),
        el("td", {}, d.offline_since ? "offline " + ago(d.offline_since) : "connected"),
        el("td", {}, d.holdup || ""))), { id: "standing-devices", "data-standing": list.standing }),
    el("nav", { class: "pager", "aria-label": "pages of devices" },
      link(here, "Close the list"),
      after ? link(base, "First page") : null,
      list.next ? link(`${base}&after=${encode(list.next)}`, "Next page", { id: "standing-next" }) : null));
}
