// The registry: every model's releases, newest first, with stage, aliases, signer, size and
// expiry; filtered to one model with `?model=`.
"use strict";
import { add, api, el, section, table, link, ago, when, bytes, encode } from "../core.js";

export const live = false;

export async function render(view, { query }) {
  const only = query.get("model");
  const releases = await api("/releases" + (only ? "?name=" + encode(only) : ""));
  const byModel = new Map();
  for (const r of releases) {
    const name = r.release.name;
    if (!byModel.has(name)) byModel.set(name, []);
    byModel.get(name).push(r);
  }
  const now = Date.now() / 1000;
  add(view, el("h1", {}, only ? "Releases of " + only : "Releases"),
    only ? el("p", {}, link("/releases", "All models")) : null,
    byModel.size === 0 ? el("p", { class: "muted" }, "Nothing published yet.") : null,
    [...byModel.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([model, list]) =>
      section("Model " + model, table(["version", "stage", "aliases", "signer", "size", "published", "expires"],
        list.slice().reverse().map((r) => {
          const size = r.release.variants.reduce((s, v) => s + v.size, 0);
          const expires = r.release.expires;
          return el("tr", { "data-release": r.release.version, "data-stage": r.stage },
            el("td", {}, link(`/releases/${encode(model)}/${encode(r.release.version)}`, r.release.version)),
            el("td", {}, el("span", { class: "stage stage-" + r.stage }, r.stage)),
            el("td", {}, r.aliases.map((a) => el("span", { class: "alias" }, a))),
            el("td", {}, el("code", { title: r.signer }, r.signer.slice(0, 16))),
            el("td", {}, r.purged_at ? "bytes freed " + ago(r.purged_at) : bytes(size) + (r.release.variants.length > 1 ? ` (${r.release.variants.length} variants)` : "")),
            el("td", {}, `${ago(r.published_at)} by ${r.published_by}`),
            el("td", { class: expires && expires - now < 7 * 86400 ? "waiting" : null }, expires ? when(expires) : "never"));
        }), { class: "releases", "data-model": model }))));
}
