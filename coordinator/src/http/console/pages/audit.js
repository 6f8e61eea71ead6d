// The audit trail, newest first, filtered on the coordinator (action prefix, actor, subject,
// the last hours), with the hash chain's verification and the head to keep.
"use strict";
import { add, api, el, section, table, when } from "../core.js";

export const live = false;
const PAGE = 100;

export async function render(view, { query, go }) {
  const filters = ["action", "actor", "subject", "hours"];
  const params = new URLSearchParams({ newest: "true", limit: PAGE });
  for (const f of ["action", "actor", "subject"]) if (query.get(f)) params.set(f, query.get(f));
  const hours = Number(query.get("hours"));
  if (hours > 0) params.set("since", Math.floor(Date.now() / 1000 - hours * 3600));
  if (query.get("before")) { params.delete("newest"); params.set("before", query.get("before")); }
  const { body: entries, reply } = await api("/audit?" + params, { withReply: true });
  // A scan stopped at the coordinator's bound says where to go on.
  const cursor = reply.headers.get("ferry-audit-cursor");
  const inputs = Object.fromEntries(filters.map((f) => [f, el("input", {
    id: "filter-" + f, name: f, value: query.get(f) || "", type: f === "hours" ? "number" : "text", min: f === "hours" ? 0 : null,
    placeholder: { action: "rollout, alias.set", actor: "alice, rollout-engine", subject: "a model, a device, a rollout", hours: "all" }[f] })]));
  const form = el("form", { id: "audit-filters", class: "fields", onsubmit: (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const f of filters) if (inputs[f].value.trim()) q.set(f, inputs[f].value.trim());
    go("/audit" + (q.toString() ? "?" + q : ""));
  } }, filters.map((f) => el("label", { for: "filter-" + f }, el("span", {}, f === "hours" ? "last hours" : f), inputs[f])),
  el("button", { type: "submit" }, "Filter"));
  const chain = el("div", { id: "chain", "aria-live": "polite" }, el("p", { class: "muted" }, "Walking the chain…"));
  const older = entries.length === PAGE ? entries[entries.length - 1].seq : cursor;
  const next = new URLSearchParams(query);
  if (older) next.set("before", older);
  add(view, el("h1", {}, "Audit trail"),
    section("Chain", chain),
    section("Entries", form,
      table(["#", "when", "actor", "action", "subject", "detail"], entries.map((e) => el("tr", { "data-seq": e.seq, "data-action": e.action },
        el("td", {}, e.seq), el("td", {}, when(e.at)), el("td", {}, e.actor), el("td", {}, el("code", {}, e.action)),
        el("td", {}, e.subject), el("td", {}, e.detail))), { id: "audit-entries" }),
      entries.length === 0 && !cursor ? el("p", { class: "muted" }, "No entry matches.") : null,
      cursor ? el("p", { class: "muted", id: "scan-bound" }, `The coordinator searched back to entry ${cursor} without filling the page; older entries remain.`) : null,
      older ? el("nav", { class: "pager" }, el("a", { href: "#/audit?" + next, id: "older" }, "Older entries")) : null));
  // The walk reads the whole trail: it fills in when done, the entries already shown.
  api("/audit/verify").then((v) => chain.replaceChildren(verification(v)),
    (e) => chain.replaceChildren(el("p", { class: "error" }, e.message)));
}

function verification(v) {
  if (v.broken) {
    return el("div", { id: "chain-status", "data-intact": "false" },
      el("p", { class: "fail" }, `BROKEN at entry ${v.broken.seq}: ${v.broken.reason}`),
      el("p", {}, `${v.entries} entries before it link up.`));
  }
  if (!v.head) return el("p", { id: "chain-status", "data-intact": "true" }, "Intact: the trail is empty.");
  const head = `${v.head.seq}:${v.head.hash}`;
  return el("div", { id: "chain-status", "data-intact": "true", "data-entries": v.entries },
    el("p", { class: "pass" }, `Intact: ${v.entries} entries link up.`),
    el("p", {}, "Head to keep: ", el("code", { id: "chain-head" }, head)),
    el("p", { class: "muted" }, "Keep it elsewhere: `ferryctl audit --verify --anchor HEAD` later shows a cut or a rewrite."));
}
