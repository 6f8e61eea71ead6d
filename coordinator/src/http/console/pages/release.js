// One release: its model card, lineage drawn as a graph, a diff against another version,
// its stage with history and approvals, and the stage moves and approvals the token's role
// allows, each move's policy checks shown as `ferryctl stage --check` shows them.
"use strict";
import { add, api, el, section, table, link, ago, when, bytes, encode, actionButton, may, changed, confirmAction } from "../core.js";
import { lineageGraph } from "../charts.js";
import { markdown } from "../markdown.js";

export const live = false;

// The last stage move's checks, shown again once the page re-renders after it.
let lastTransition = null;

export async function render(view, { params, query, go }) {
  const [model, version] = params;
  const base = `/releases/${encode(model)}/${encode(version)}`;
  const [r, stage, lineage, card, all] = await Promise.all([
    api(base), api(base + "/stage"), api(base + "/lineage"), api(base + "/card", { text: true }), api("/releases?name=" + encode(model))]);
  const others = all.map((x) => x.release.version).filter((v) => v !== version).reverse();
  const against = query.get("diff") || others[0];
  const diff = against ? await api(`${base}/diff/${encode(against)}`) : null;
  const checks = el("div", { id: "stage-checks", "aria-live": "polite" });
  if (lastTransition && lastTransition.base === base) checks.append(transition(lastTransition.view));
  lastTransition = null;
  add(view, 
    el("div", { class: "page-head" },
      el("h1", {}, `${model} ${version} `, el("span", { class: "stage stage-" + stage.stage, id: "release-stage" }, stage.stage)),
      el("div", { class: "buttons", id: "stage-actions" }, stageButtons(model, version, stage, checks, base),
        approveButton(model, version, stage, base))),
    checks,
    el("div", { class: "grid2" },
      section("Release", el("dl", { class: "facts", id: "release-facts" },
        fact("aliases", r.aliases.join(", ") || "none"),
        fact("signer", el("code", {}, r.signer)),
        fact("revision", r.release.revision),
        fact("published", `${when(r.published_at)} by ${r.published_by}`),
        fact("expires", r.release.expires ? when(r.release.expires) : "never"),
        fact("bytes", r.purged_at ? `freed by retention ${ago(r.purged_at)}` : bytes(r.release.variants.reduce((s, v) => s + v.size, 0))),
        fact("variants", r.release.variants.map((v) => `${v.file_name} (${v.target || "any"}, ${typeof v.accelerator === "string" ? v.accelerator : JSON.stringify(v.accelerator)}, ${bytes(v.size)})`).join("; ")))),
      section("Stage history",
        el("p", {}, `In ${stage.stage} since ${when(stage.since)}.`),
        stage.history.length === 0 ? null : table(["when", "move", "by", "why", "checks"], stage.history.map((m) => el("tr", { "data-move": m.to },
          el("td", {}, when(m.at)), el("td", {}, `${m.from} → ${m.to}`), el("td", {}, m.by + (m.approvers.length ? ` (approved by ${m.approvers.join(", ")})` : "")),
          el("td", {}, m.reason || "–"), el("td", {}, `${m.checks.filter((c) => c.passed).length}/${m.checks.length} passed`)))),
        el("p", { class: "muted", id: "approvals" }, stage.approvals.length
          ? "Approvals toward production: " + stage.approvals.map((a) => `${a.by} (${ago(a.at)}${a.reason ? ": " + a.reason : ""})`).join(", ")
          : "No approval toward production yet."))),
    section("Lineage", lineageGraph(lineage.ancestors, (v) => `#/releases/${encode(model)}/${encode(v)}`)),
    section("Model card", el("div", { class: "model-card", id: "model-card" }, markdown(card))),
    section("Compared with another version",
      others.length === 0 ? el("p", { class: "muted" }, "The only release of " + model + ".") : [
        el("label", { for: "diff-against" }, "Against ",
          el("select", { id: "diff-against", onchange: (ev) => go(`${base}?diff=${encode(ev.target.value)}`) },
            others.map((v) => el("option", { value: v, selected: v === against }, v)))),
        table(["field", version, against], diff.rows.map((row) => el("tr", { class: row.differs ? "differs" : null, "data-field": row.field },
          el("td", {}, row.field), el("td", {}, row.a), el("td", {}, row.b))), { id: "diff" })]));
}

function fact(term, value) {
  return [el("dt", {}, term), el("dd", {}, value)];
}

// One Check and one Move button per stage the release may enter that the role allows.
function stageButtons(model, version, stage, checks, base) {
  return stage.next.map((to) => {
    const action = to === "production" ? "promote" : "stage";
    if (!may(action, model)) return null;
    const move = (body) => api(`${base}/stage/${to}`, { method: "POST", body, accept: [409] });
    const check = el("button", { type: "button", "data-action": "check-" + to, "data-key": "check:" + to,
      onclick: async () => {
        try { checks.replaceChildren(transition(await move({ dry_run: true }))); } catch (e) { checks.replaceChildren(el("p", { class: "error" }, e.message)); }
      } }, `Check ${to}`);
    const go = el("button", { type: "button", "data-action": "move-" + to, "data-key": "move:" + to, class: to === "rejected" ? "danger" : null,
      onclick: () => confirmAction({
        title: `Move ${model} ${version} to ${to}`, label: `Move to ${to}`, danger: to === "rejected",
        detail: `From ${stage.stage}. The stage's checks run first; a failing check refuses the move.`,
        run: async (reason) => {
          const result = await move({ reason });
          if (result && result.error) {
            checks.replaceChildren(transition(result));
            throw new Error(result.error);
          }
          return result;
        },
        done: (result) => { lastTransition = { base, view: result }; changed(); },
      }) }, `Move to ${to}`);
    return [check, go];
  });
}

function approveButton(model, version, stage, base) {
  if (!stage.next.includes("production")) return null;
  return actionButton({
    label: "Approve for production", action: "approve", model, key: "approve-release",
    detail: "Counts toward the approvals the production stage requires.",
    run: (reason) => api(`${base}/approvals`, { method: "POST", body: { reason } }),
    done: changed,
  });
}

// A stage move's checks, as `ferryctl stage --check` prints them.
function transition(t) {
  const verdict = t.error ? `stays in ${t.from}: ${t.error}`
    : t.moved ? `moved ${t.from} → ${t.to}` + (t.prod_moved ? "; prod now points here" : "") + (t.rollout ? `; rollout ${t.rollout} started` : "")
      : `may move from ${t.from} to ${t.to}: every check passes (nothing moved)`;
  return el("div", { class: "transition", "data-moved": String(t.moved), "data-to": t.to },
    t.checks.length ? table(["check", "result", "found"], t.checks.map((c) => el("tr", { class: c.passed ? "pass" : "fail", "data-check": c.name },
      el("td", {}, c.name), el("td", {}, c.passed ? "pass" : "FAIL"), el("td", {}, c.detail)))) : null,
    el("p", { class: t.error ? "fail" : "pass" }, verdict),
    t.rollout ? el("p", {}, link(`/rollouts/${encode(t.rollout)}`, "Open rollout " + t.rollout)) : null);
}
