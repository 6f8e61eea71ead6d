// The device list, a page at a time in id order (the API pages too), searched on the
// coordinator: `key=value` matches a label, other text a part of the id or a label's value.
"use strict";
import { add, api, el, section, table, link, ago, variant, encode } from "../core.js";

export const PAGE = 50;
export const live = true;

export async function render(view, { query, go }) {
  const q = query.get("q") || "";
  const after = query.get("after") || "";
  const params = new URLSearchParams({ limit: PAGE + 1 });
  if (q) params.set("q", q);
  if (after) params.set("after", after);
  const found = await api("/devices?" + params);
  const page = found.slice(0, PAGE);
  const search = el("input", { type: "search", id: "search", value: q, "aria-label": "search devices",
    placeholder: "device id, or label=value (e.g. region=eu)" });
  const form = el("form", { class: "search", role: "search", onsubmit: (ev) => {
    ev.preventDefault();
    go("/devices" + (search.value.trim() ? "?q=" + encode(search.value.trim()) : ""));
  } }, search, el("button", { type: "submit" }, "Search"));
  const rows = page.map((d) => {
    const m = d.models[0] || {};
    return el("tr", { "data-device": d.id },
      el("td", {}, link(`/devices/${encode(d.id)}`, el("code", {}, d.id))),
      el("td", {}, Object.entries(d.labels).map(([k, v]) => k + "=" + v).join(", ")),
      el("td", {}, d.models.map((r) => `${r.model} ${r.active || "–"}`).join(", ") || "–"),
      el("td", {}, d.revoked_at ? "revoked" : (d.connected ? "connected, " : "offline, ") + variant(m.phase).toLowerCase()),
      el("td", {}, ago(d.last_seen)));
  });
  const next = found.length > PAGE ? page[page.length - 1].id : null;
  const base = "/devices?" + (q ? "q=" + encode(q) + "&" : "");
  add(view, section("Devices", form,
    el("p", { class: "muted", id: "search-count", "data-shown": page.length },
      `${page.length} device(s)${q ? " matching " + q : ""}${after ? " after " + after.slice(0, 12) + "…" : ""}`),
    table(["device", "labels", "runs", "state", "last seen"], rows, { id: "devices" }),
    el("nav", { class: "pager", "aria-label": "pages" },
      after ? link(base.slice(0, -1), "First page") : null,
      next ? link(base + "after=" + encode(next), "Next page", { id: "next-page" }) : null)));
}
