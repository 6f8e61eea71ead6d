// The rollouts, unfinished ones first, then the ones changed last, and the form that starts one: waves (share, bake,
// shadow, approval), their gates, the cohort, and a dry run showing whom each wave reaches
// and who could not take the release (schema, hardware, disk) before anything starts.
"use strict";
import { add, api, el, section, table, link, ago, encode, may, ApiError } from "../core.js";
import { adoptionBar } from "./fleet.js";

export const live = true;

// Finished rollouts shown: each listed one is measured against the whole fleet.
const RECENT = 50;

export async function render(view) {
  const [active, recent] = await Promise.all([api("/rollouts?active=true"), api(`/rollouts?newest=${RECENT}`)]);
  const rollouts = [...active, ...recent.filter((r) => !active.some((a) => a.id === r.id))];
  const order = (r) => (["Running", "AwaitingApproval"].includes(r.phase) ? 0 : 1);
  rollouts.sort((a, b) => order(a) - order(b) || b.created_at - a.created_at);
  const rows = rollouts.map((r) => el("tr", { "data-rollout": r.id, "data-phase": r.phase },
    el("td", {}, link(`/rollouts/${encode(r.id)}`, r.id)), el("td", {}, `${r.model} ${r.version}`),
    el("td", {}, r.cohort || "all devices"),
    el("td", {}, r.phase + (r.paused ? " (paused)" : "")),
    el("td", {}, `${r.waves_in_force}/${r.waves.length}`, adoptionBar(r)),
    el("td", {}, `${r.created_by}, ${ago(r.created_at)}`)));
  add(view, el("div", { class: "page-head" }, el("h1", {}, "Rollouts"),
    may("run-rollout") ? link("/rollouts/new", "New rollout", { class: "button primary", id: "new-rollout" }) : null),
  section("Rollouts", rows.length ? table(["rollout", "release", "cohort", "phase", "waves", "started"], rows, { id: "rollout-list" })
    : el("p", { class: "muted" }, "No rollout yet."),
  recent.length === RECENT ? el("p", { class: "muted", id: "rollouts-cut" },
    `Every unfinished rollout and the ${RECENT} changed last; \`ferryctl rollout status\` lists them all.`) : null));
}

// The form. Not live: a refresh would take what the operator is typing.
export const form = {
  live: false,
  async render(view, { query, go }) {
    const releases = await api("/releases");
    const models = [...new Set(releases.map((r) => r.release.name))].sort();
    const model = select("model", "Model", models, query.get("model") || models[0]);
    const version = select("version", "Version", [], null);
    const fillVersions = () => {
      const versions = releases.filter((r) => r.release.name === model.input.value && !r.purged_at)
        .map((r) => r.release.version).reverse();
      version.input.replaceChildren(...versions.map((v) => el("option", { value: v, selected: v === query.get("version") }, v)));
    };
    model.input.addEventListener("change", fillVersions);
    fillVersions();
    const alias = field("alias", "Alias its devices follow", el("input", { id: "alias", value: "prod", required: true }));
    const cohort = field("cohort", "Cohort (label selector; empty: every device)",
      el("input", { id: "cohort", placeholder: "region=eu, accelerator in (gpu)" }));
    const id = field("rollout-id", "Name (generated when empty)", el("input", { id: "rollout-id", pattern: "[A-Za-z0-9._-]{1,64}" }));
    const waves = el("tbody", { id: "waves" });
    const addWave = (w) => waves.append(waveRow(w, waves));
    [{ percent: 10, bake: 600, shadow: true }, { percent: 10, bake: 600 }, { percent: 50, bake: 1800, approval: true }, { percent: 100, bake: 1800 }]
      .forEach(addWave);
    const gates = gateFields();
    const reason = field("reason", "Reason (recorded in the audit trail)", el("textarea", { id: "reason", rows: 2, "aria-required": "true" }));
    const force = el("input", { type: "checkbox", id: "force" });
    const preview = el("div", { id: "preview", "aria-live": "polite" });
    const error = el("p", { class: "error", role: "alert", id: "form-error" });
    const body = () => ({
      id: id.input.value.trim() || undefined,
      model: model.input.value, version: version.input.value, alias: alias.input.value.trim() || "prod",
      cohort: cohort.input.value.trim(), reason: reason.input.value.trim(), force: force.checked,
      waves: [...waves.children].map((row) => ({
        percent: Number(row.querySelector(".percent").value),
        bake_secs: Number(row.querySelector(".bake").value),
        shadow: row.querySelector(".shadow").checked,
        approval: row.querySelector(".approval").checked,
        gates: gates.read(),
      })),
    });
    const dryRun = async () => {
      error.textContent = "";
      try {
        preview.replaceChildren(reach(await api("/rollouts/check", { method: "POST", body: body() })));
      } catch (e) { error.textContent = e.message; }
    };
    const start = async (ev) => {
      ev.preventDefault();
      error.textContent = "";
      if (!reason.input.value.trim()) { error.textContent = "Give a reason: it is recorded with the rollout."; reason.input.focus(); return; }
      try {
        const created = await api("/rollouts", { method: "POST", body: body() });
        go(`/rollouts/${encode(created.id)}`);
      } catch (e) {
        error.textContent = e instanceof ApiError ? e.message : String(e);
      }
    };
    add(view, el("h1", {}, "New rollout"), el("form", { id: "rollout-form", onsubmit: start },
      section("Release and devices", el("div", { class: "fields" }, model.label, version.label, alias.label, cohort.label, id.label)),
      section("Waves",
        el("p", { class: "muted" }, "Each wave's share is cumulative. A shadow wave stages the release beside what runs, serving nothing; an approval wave waits for an approver."),
        table(["share %", "bake (s)", "shadow", "approval", ""], waves, { class: "waves" }),
        el("button", { type: "button", id: "add-wave", onclick: () => addWave({ percent: 100, bake: 600 }) }, "Add wave")),
      section("Gates of every wave", gates.fields),
      section("Start", reason.label,
        el("label", { for: "force", class: "inline" }, force, " Start even though some devices cannot take the release (recorded)"),
        el("div", { class: "buttons" },
          el("button", { type: "button", id: "dry-run", onclick: dryRun }, "Dry run"),
          el("button", { type: "submit", class: "primary", id: "start-rollout" }, "Start rollout")),
        error, preview)));
  },
};

function field(id, text, input) {
  return { input, label: el("label", { for: id }, el("span", {}, text), input) };
}

function select(id, text, options, selected) {
  return field(id, text, el("select", { id, required: true }, options.map((o) => el("option", { value: o, selected: o === selected }, o))));
}

function waveRow(w, tbody) {
  const n = () => [...tbody.children].indexOf(row) + 1;
  const row = el("tr", { class: "wave" },
    el("td", {}, el("input", { type: "number", class: "percent", min: 0.01, max: 100, step: 0.01, value: w.percent, required: true, "aria-label": "wave share in percent" })),
    el("td", {}, el("input", { type: "number", class: "bake", min: 0, step: 1, value: w.bake, required: true, "aria-label": "bake seconds" })),
    el("td", {}, el("input", { type: "checkbox", class: "shadow", checked: w.shadow, "aria-label": "shadow wave" })),
    el("td", {}, el("input", { type: "checkbox", class: "approval", checked: w.approval, "aria-label": "needs approval" })),
    el("td", {}, el("button", { type: "button", class: "remove", onclick: () => { if (tbody.children.length > 1) row.remove(); },
      "aria-label": "remove wave" }, "Remove")));
  row.addEventListener("focusin", () => row.setAttribute("aria-label", "wave " + n()));
  return row;
}

// The gates: install and health failures always (limits as shares), error rate and latency
// against the baseline when asked for.
function gateFields() {
  const spec = [
    ["InstallFailures", "install failures (largest share)", 0.05, true],
    ["HealthFailures", "health-check failures (largest share)", 0.05, true],
    ["ErrorRateIncrease", "error-rate increase over the baseline", 0.02, false],
    ["P95LatencyRatio", "p95 latency over the baseline (ratio)", 1.2, false],
  ];
  const minSamples = el("input", { type: "number", id: "gate-min-samples", min: 1, value: 1, required: true });
  const rows = spec.map(([kind, text, threshold, on]) => {
    const enabled = el("input", { type: "checkbox", id: "gate-" + kind, checked: on });
    const limit = el("input", { type: "number", id: "limit-" + kind, step: "any", min: 0, value: threshold, "aria-label": text + " limit" });
    return { kind, enabled, limit, row: el("div", { class: "gate-field" }, el("label", { for: "gate-" + kind }, enabled, " " + text), limit) };
  });
  return {
    fields: [rows.map((r) => r.row), el("label", { for: "gate-min-samples" }, el("span", {}, "samples each gate needs to decide"), minSamples)],
    read: () => rows.filter((r) => r.enabled.checked)
      .map((r) => ({ kind: r.kind, threshold: Number(r.limit.value), min_samples: Number(minSamples.value) })),
  };
}

// A dry run's answer: devices per wave, and who would not fit and why.
function reach(check) {
  const kinds = Object.entries(check.misfit_counts);
  return el("div", { id: "dry-run-result", "data-devices": check.devices },
    el("h3", {}, `Dry run: ${check.devices} device(s) follow ${check.alias} of ${check.model} in the cohort`),
    table(["wave", "share", "devices reached", "kind"], check.waves.map((w, i) => el("tr", { "data-wave": i + 1, "data-reach": w.devices },
      el("td", {}, i + 1), el("td", {}, w.percent + " %"), el("td", {}, w.devices), el("td", {}, w.shadow ? "shadow" : "serves")))),
    kinds.length === 0 ? el("p", { class: "pass", id: "no-misfits" }, "Every device reached can take the release.")
      : [el("p", { class: "fail", id: "misfits" }, "Could not take it: " + kinds.map(([k, n]) => `${n} (${k})`).join(", ")),
        table(["device", "wave", "why"], check.misfits.slice(0, 50).map((m) => el("tr", { "data-misfit": m.kind },
          el("td", {}, link(`/devices/${encode(m.device)}`, m.name || m.device.slice(0, 16) + "…")), el("td", {}, m.wave + 1), el("td", {}, m.detail))))],
    check.disk_unknown ? el("p", { class: "muted" }, `${check.disk_unknown} device(s) have not told their disk space: not judged on it.`) : null);
}
