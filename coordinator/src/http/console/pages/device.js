// One device: labels and detected hardware, versions on disk per model (current, previous,
// candidate), its recent installs, failures and health-check rollbacks, disk space, and the
// actions an operator may take on it.
"use strict";
import { add, api, el, section, table, link, ago, when, bytes, variant, encode, actionButton, changed, may } from "../core.js";

export const live = true;

const HARDWARE = ["arch", "target", "accelerator", "gpu", "cuda", "os", "cpu", "memory"];

export async function render(view, { params }) {
  const id = params[0];
  const [d, pins] = await Promise.all([api(`/devices/${encode(id)}`), api("/pins")]);
  const pinOf = (model) => pins.find((p) => p.device === d.id && p.model === model);
  // The versions each followed model has, for the pin dialog (only for a token that may pin).
  const versions = {};
  await Promise.all(d.follows.filter((f) => may("devices", f.model)).map(async (f) => {
    versions[f.model] = (await api("/releases?name=" + encode(f.model))).filter((r) => !r.purged_at)
      .map((r) => r.release.version).reverse();
  }));
  const labels = Object.entries(d.labels);
  const isHardware = ([k]) => HARDWARE.some((h) => k === h || k.startsWith(h + "."));
  const hardware = labels.filter(isHardware);
  const others = labels.filter((l) => !isHardware(l));
  const revoke = d.revoked_at ? null : actionButton({
    label: "Revoke", action: "devices", danger: true, key: "revoke",
    title: "Revoke device " + d.id.slice(0, 16) + "…",
    detail: "The coordinator refuses it from now on; it keeps running what it has.",
    run: (reason) => api(`/devices/${encode(d.id)}/revoke`, { method: "POST", body: { reason } }),
    done: changed,
  });
  add(view, 
    el("div", { class: "page-head" }, el("h1", {}, "Device ", el("code", {}, d.id)),
      el("div", { class: "buttons" }, revoke)),
    el("div", { class: "grid2" },
      section("State", el("dl", { class: "facts", id: "device-facts" },
        fact("connection", d.revoked_at ? `revoked ${ago(d.revoked_at)}` : d.connected ? "connected" : "offline"),
        fact("last seen", `${ago(d.last_seen)} (${when(d.last_seen)})`),
        fact("enrolled", when(d.enrolled_at)),
        fact("agent", d.agent_version),
        fact("follows", d.follows.map((f) => `${f.model} ${f.alias || ""}`.trim()).join(", ") || "–"),
        disk(d.conditions))),
      section("Detected hardware",
        hardware.length ? table(["what", "value"], hardware.map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, v))), { id: "device-hardware" })
          : el("p", { class: "muted" }, "Not reported."))),
    section("Labels",
      others.length ? table(["label", "value"], others.map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, v))), { id: "device-labels" })
        : el("p", { class: "muted" }, "No labels.")),
    section("Versions on disk",
      table(["model", "current", "previous", "candidate", "updater", "last error", "pinned"],
        d.models.map((m) => el("tr", { "data-model": m.model },
          el("td", {}, m.model),
          el("td", { "data-slot": "current" }, release(m.model, m.active)),
          el("td", { "data-slot": "previous" }, release(m.model, m.previous)),
          el("td", { "data-slot": "candidate" }, release(m.model, m.candidate)),
          el("td", {}, phase(m.phase)),
          el("td", { class: m.last_error ? "fail" : null }, m.last_error ? errorText(m.last_error) : "–"),
          el("td", { "data-pin": pinOf(m.model) ? pinOf(m.model).version : "" }, pinCell(d, m.model, pinOf(m.model), versions[m.model])))),
        { id: "device-models" })),
    section("Updates sent to it",
      (d.transfers || []).length === 0 ? el("p", { class: "muted" }, "Nothing sent by this coordinator since it started (chunks from a mirror or an object store's address are not counted).")
        : table(["release", "file", "on the wire", "chunks by encoding", "when"], d.transfers.map((t) => el("tr", { "data-transfer": t.release ? t.release[1] : t.file },
          el("td", {}, t.release ? release(t.release[0], t.release[1]) : el("code", {}, t.file.slice(0, 16))),
          el("td", {}, t.file_name || "–"),
          el("td", { "data-wire": t.wire_bytes }, bytes(t.wire_bytes) + (t.size ? ` of ${bytes(t.size)} (${Math.round(100 * (1 - t.wire_bytes / t.size))} % saved)` : "")),
          el("td", {}, `${t.chunks}: ` + Object.entries(t.encodings).map(([k, n]) => `${k} ${n}`).join(", ")),
          el("td", {}, when(t.last_at)))), { id: "device-transfers" })),
    section("Serving, per version",
      (d.served || []).length === 0 ? el("p", { class: "muted" }, "No request reported (since the coordinator started).")
        : table(["model", "version", "requests", "errors", "p95 latency", "its own metrics (mean)"], d.served.map((f) =>
          el("tr", { "data-served": f.version },
            el("td", {}, f.model), el("td", {}, release(f.model, f.version)), el("td", { "data-requests": f.requests }, f.requests),
            el("td", { class: f.errors ? "waiting" : null }, f.requests ? `${f.errors} (${(100 * f.errors / f.requests).toFixed(1)} %)` : f.errors),
            el("td", {}, f.p95_ms === null || f.p95_ms === undefined ? "–" : f.p95_ms.toFixed(1) + " ms"),
            el("td", {}, Object.entries(f.custom).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(", ") || "–"))),
        { id: "device-served" })),
    section("Recent updates and health checks",
      d.recent_events.length === 0 ? el("p", { class: "muted" }, "Nothing reported yet.")
        : table(["when", "model", "what"], d.recent_events.slice().reverse().map((e) =>
          el("tr", { "data-event": variant(e.kind) }, el("td", {}, when(e.at)), el("td", {}, e.model), el("td", {}, eventText(e.kind)))),
        { id: "device-events" })));
}

// A model's pin: what it is and Unpin, or Pin with a version to choose (operators).
function pinCell(d, model, pin, versions) {
  const path = `/devices/${encode(d.id)}/pins/${encode(model)}`;
  if (pin) {
    return [`${pin.version} by ${pin.by} (${pin.reason}) `, actionButton({
      label: "Unpin", action: "devices", model, key: "unpin",
      title: `Unpin ${model} on this device`, detail: "It follows its alias again.",
      run: (reason) => api(path, { method: "DELETE", body: { reason } }), done: changed,
    })];
  }
  let select = null;
  return ["–", " ", actionButton({
    label: "Pin", action: "devices", model, key: "pin",
    title: `Pin ${model} on this device`,
    detail: "It runs this version whatever its alias or a rollout says (a rollout leaves it out) until unpinned.",
    fields: () => {
      select = el("select", { id: "pin-version" }, (versions || []).map((v) => el("option", { value: v }, v)));
      return el("label", { for: "pin-version" }, "Version ", select);
    },
    run: (reason) => api(path, { method: "PUT", body: { version: select.value, reason } }), done: changed,
  })];
}

function fact(term, value) {
  return [el("dt", {}, term), el("dd", {}, value)];
}

function disk(conditions) {
  if (!conditions) return fact("disk", "not reported (agent before protocol 7)");
  const [c, at] = conditions;
  const space = c.disk
    ? `${bytes(c.disk.free)} free of ${bytes(c.disk.total)}, ${bytes(c.disk.held)} held by kept versions (${ago(at)})`
    : "not measured";
  const deferred = (c.deferred || []).map((d) => `${d.model} ${d.version} since ${ago(d.since)}: ${variant(d.reason)}`);
  return [fact("disk", space), deferred.length ? fact("deferred switches", deferred.join("; ")) : null];
}

function release(model, version) {
  return version ? link(`/releases/${encode(model)}/${encode(version)}`, version) : "–";
}

function phase(p) {
  const name = variant(p);
  if (typeof p === "string") return name.toLowerCase();
  const body = p[name] || {};
  return `${name.toLowerCase()} ${body.version || ""} ${body.reason || ""}${body.attempts ? " (attempt " + body.attempts + ")" : ""}`.trim();
}

export function errorText(e) {
  if (!e) return "–";
  if (typeof e === "string") return e;
  return `${e.version}: ${variant(e.kind)}: ${e.message}`;
}

function eventText(kind) {
  const name = variant(kind);
  const body = kind[name];
  switch (name) {
    case "Installed": return `installed ${body.to} (from ${body.from || "nothing"}), health check passed`;
    case "InstallFailed": return "install failed: " + errorText(body);
    case "HealthRollback": return `health check of ${body.from} failed, rolled back to ${body.to || "nothing"}: ${errorText(body.error)}`;
    case "LocalRollback": return `rolled back by hand from ${body.from} to ${body.to}`;
    default: return name + " " + JSON.stringify(body);
  }
}
