// The console's shared parts: the API client (the token, refusals as the API words them),
// who the signed-in token is and what it may do, DOM builders, formatting, and the action
// dialog every change goes through (with its reason for the audit trail).
"use strict";

export const session = {
  token: sessionStorage.getItem("ferry-token") || "",
  // `GET /whoami`: name, role, models (empty: all), may (actions).
  me: null,
};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// One API call; the reply's JSON, or an ApiError carrying the API's own message.
export async function api(path, options = {}) {
  const init = { method: options.method || "GET", headers: { Authorization: "Bearer " + session.token } };
  if (options.body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  let reply;
  try {
    reply = await fetch("/api/v1" + path, init);
  } catch (e) {
    throw new ApiError(0, "the coordinator cannot be reached (" + e.message + ")");
  }
  const text = await reply.text();
  if (options.text && reply.ok) return text;
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
  // A refused stage move answers 409 with its checks: the caller shows them.
  if (!reply.ok && !(options.accept || []).includes(reply.status)) {
    const message = body && body.error ? body.error : `HTTP ${reply.status}: ${text.slice(0, 200)}`;
    throw new ApiError(reply.status, message);
  }
  return options.withReply ? { body, reply } : body;
}

// Whether the signed-in token may do `action` (on `model`, when one is named). The API
// checks again: this only keeps the page from offering what would be refused.
export function may(action, model) {
  const me = session.me;
  if (!me || !me.may.includes(action)) return false;
  return !model || me.models.length === 0 || me.models.includes(model);
}

export function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  // A link keeps keyboard focus across refreshes by its target.
  if (tag === "a" && attrs && attrs.href && !e.dataset.key) e.dataset.key = "link:" + attrs.href;
  append(e, children);
  return e;
}

// Appends children to `e`, arrays flattened, nothing for null, undefined or false.
export function add(e, ...children) {
  append(e, children);
}

function append(e, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function svg(tag, attrs, ...children) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  append(e, children);
  return e;
}

export function section(title, ...children) {
  return el("section", {}, el("h2", {}, title), children);
}

// A table: its header row, then `rows` (a list of rows, or a tbody of its own).
export function table(headers, rows, attrs) {
  return el("table", attrs || {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
    rows instanceof HTMLTableSectionElement ? rows : el("tbody", {}, rows));
}

// A version keeps its colour across refreshes and models: picked by its name, not its rank.
const COLORS = ["#2b6cb0", "#2f8f5b", "#b7791f", "#805ad5", "#c05621", "#2c7a7b", "#b83280", "#718096"];
export function colorOf(version) {
  if (!version) return "#a0a7b4";
  let h = 0;
  for (const c of version) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return COLORS[h % COLORS.length];
}

export function ago(secs) {
  if (!secs) return "never";
  const d = Math.max(0, Math.floor(Date.now() / 1000) - secs);
  if (d < 60) return d + "s ago";
  if (d < 3600) return Math.floor(d / 60) + "m ago";
  if (d < 86400) return Math.floor(d / 3600) + "h ago";
  return Math.floor(d / 86400) + "d ago";
}

export function when(secs) {
  return secs ? new Date(secs * 1000).toLocaleString() : "–";
}

export function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

// An enum as serde writes it: "Name" or {"Name": {...}}.
export function variant(v) {
  return typeof v === "string" ? v : v ? Object.keys(v)[0] : "–";
}

export function gateName(gate) {
  const kind = gate.kind;
  if (typeof kind === "string") return kind;
  if (kind.Drift) return `drift of ${kind.Drift.metric} (${kind.Drift.statistic})`;
  return "custom " + Object.values(kind)[0];
}

export function link(route, text, attrs) {
  return el("a", Object.assign({ href: "#" + route }, attrs || {}), text);
}

export const encode = encodeURIComponent;

// A button that asks for a reason, then runs `run(reason)`; the API's refusal shows in the
// dialog. Null when the token may not do `action` (on `model`): the page offers nothing the
// API would refuse for its role.
export function actionButton({ label, action, model, title, detail, fields, run, done, danger, key }) {
  if (!may(action, model)) return null;
  return el("button", {
    type: "button", class: danger ? "danger" : null, "data-action": key || label.toLowerCase(),
    "data-key": "action:" + (key || label),
    onclick: () => confirmAction({ title: title || label, detail, fields: fields && fields(), label, run, done, danger }),
  }, label);
}

// The dialog: the action's own fields (a version to pin to), a reason (required: it lands in
// the audit trail), Confirm and Cancel; Escape closes it; focus returns to where it was.
export function confirmAction({ title, detail, fields, label, run, done, danger }) {
  const before = document.activeElement;
  const error = el("p", { class: "error", role: "alert", id: "dialog-error" });
  const reason = el("textarea", { id: "dialog-reason", rows: 2, "aria-required": "true", maxlength: 500 });
  const confirm = el("button", { type: "submit", class: danger ? "danger" : "primary", id: "dialog-confirm" }, label);
  const dialog = el("dialog", { "aria-labelledby": "dialog-title" },
    el("form", { method: "dialog" },
      el("h2", { id: "dialog-title" }, title),
      detail ? el("p", { class: "muted" }, detail) : null,
      fields || null,
      el("label", { for: "dialog-reason" }, "Reason (recorded in the audit trail)"), reason,
      error,
      el("div", { class: "buttons" }, confirm,
        el("button", { type: "button", id: "dialog-cancel", onclick: () => dialog.close() }, "Cancel"))));
  dialog.querySelector("form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!reason.value.trim()) {
      error.textContent = "Give a reason: it is recorded with the change.";
      reason.focus();
      return;
    }
    confirm.disabled = true;
    error.textContent = "";
    try {
      const result = await run(reason.value.trim());
      dialog.close();
      if (done) await done(result);
    } catch (e) {
      error.textContent = e.message;
      confirm.disabled = false;
    }
  });
  dialog.addEventListener("close", () => {
    dialog.remove();
    if (before && before.isConnected) before.focus();
  });
  document.body.append(dialog);
  dialog.showModal();
  reason.focus();
}

// Tells the page a change happened (the router re-renders the current page).
export function changed() {
  window.dispatchEvent(new Event("ferry-changed"));
}
