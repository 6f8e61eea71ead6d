// The console's entry: sign-in with a token (kept in this tab only), the header with who is
// signed in, the routes (`#/path?query`) to each page, and the refresh of live pages every
// five seconds, keeping keyboard focus where it was.
"use strict";
import { api, el, session, ApiError } from "./core.js";
import * as fleet from "./pages/fleet.js";
import * as devices from "./pages/devices.js";
import * as device from "./pages/device.js";
import * as rollouts from "./pages/rollouts.js";
import * as rollout from "./pages/rollout.js";
import * as releases from "./pages/releases.js";
import * as release from "./pages/release.js";
import * as audit from "./pages/audit.js";

const REFRESH_MS = 5000;

const ROUTES = [
  [/^\/?$/, fleet, "fleet"],
  [/^\/devices$/, devices, "devices"],
  [/^\/devices\/([^/]+)$/, device, "devices"],
  [/^\/rollouts$/, rollouts, "rollouts"],
  [/^\/rollouts\/new$/, rollouts.form, "rollouts"],
  [/^\/rollouts\/([^/]+)$/, rollout, "rollouts"],
  [/^\/releases$/, releases, "releases"],
  [/^\/releases\/([^/]+)\/([^/]+)$/, release, "releases"],
  [/^\/audit$/, audit, "audit"],
];

const view = document.getElementById("view");
let rendering = null;

function current() {
  const hash = location.hash.slice(1) || "/";
  const [path, search] = hash.split("?", 2);
  for (const [pattern, page, tab] of ROUTES) {
    const m = path.match(pattern);
    if (m) return { page, tab, params: m.slice(1).map(decodeURIComponent), query: new URLSearchParams(search || "") };
  }
  return null;
}

function go(route) {
  if (location.hash === "#" + route) render();
  else location.hash = route;
}

// Renders the current page into a fresh node, then swaps it in; focus stays on the element
// with the same key, so a refresh does not throw a keyboard user back to the top.
async function render(refreshing) {
  if (!session.me) return;
  const route = current();
  if (!route) {
    view.replaceChildren(el("section", {}, el("h1", {}, "Not found"), el("p", {}, el("a", { href: "#/" }, "Back to the fleet"))));
    return;
  }
  for (const a of document.querySelectorAll("nav.tabs a")) {
    if (a.dataset.tab === route.tab) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  const token = {};
  rendering = token;
  const next = el("div", {});
  try {
    await route.page.render(next, { params: route.params, query: route.query, go });
  } catch (e) {
    if (rendering !== token) return;
    if (e instanceof ApiError && e.status === 401) return signOut(e.message);
    if (refreshing) {
      document.getElementById("problem").textContent = e.message;
      return;
    }
    next.replaceChildren(el("section", { class: "error", role: "alert", id: "page-error" }, e.message));
  }
  if (rendering !== token) return;
  // A refresh swapping the page between a button's press and its release would swallow the
  // click (press and release land on different elements): it waits for the release.
  if (refreshing && pressed) {
    // Unless the click opened a dialog, or the page moved on: the next refresh comes anyway.
    afterRelease = () => {
      if (rendering === token && !document.querySelector("dialog[open]")) swapIn(next, route, refreshing);
    };
    return;
  }
  swapIn(next, route, refreshing);
}

// Whether a pointer is pressed on the page, and the refresh waiting for its release.
let pressed = false;
let afterRelease = null;
view.addEventListener("pointerdown", () => { pressed = true; });
for (const end of ["pointerup", "pointercancel"]) {
  document.addEventListener(end, () => {
    pressed = false;
    const swap = afterRelease;
    afterRelease = null;
    // After the click this release makes has been dispatched.
    if (swap) setTimeout(swap, 0);
  });
}

// Puts a rendered page in place, keeping the focus on the element with the same key.
function swapIn(next, route, refreshing) {
  const focused = document.activeElement;
  const key = focused && view.contains(focused) ? focused.dataset.key || (focused.id ? "#" + focused.id : null) : null;
  view.replaceChildren(...next.childNodes);
  if (key) {
    const again = key.startsWith("#") ? document.getElementById(key.slice(1)) : view.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (again) again.focus();
  }
  if (!refreshing) {
    const h1 = view.querySelector("h1");
    document.title = (h1 ? h1.textContent + " — " : "") + "Ferry";
  }
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  document.getElementById("problem").textContent = "";
  document.body.dataset.loaded = "true";
  document.body.dataset.page = route.tab;
  // For the page-load bench (`ferry-fleet-sim --console`): when each render finished.
  performance.mark("ferry-rendered");
}

function refresh() {
  const route = current();
  if (!session.me || !route || !route.page.live) return;
  if (document.querySelector("dialog[open]") || document.hidden) return;
  // Not while someone types in the page (a search field): a refresh would take their text.
  const active = document.activeElement;
  if (active && view.contains(active) && ["INPUT", "TEXTAREA", "SELECT"].includes(active.tagName)) return;
  render(true);
}

async function signIn(token) {
  session.token = token;
  try {
    session.me = await api("/whoami");
  } catch (e) {
    return signOut(e instanceof ApiError && e.status === 401 ? "The token was refused: " + e.message : e.message);
  }
  sessionStorage.setItem("ferry-token", token);
  const me = session.me;
  document.getElementById("who").replaceChildren(
    el("span", { id: "who-name", "data-role": me.role }, `${me.name} (${me.role}${me.models.length ? ", " + me.models.join(", ") : ""})`),
    el("button", { type: "button", id: "sign-out", class: "link", onclick: () => signOut() }, "Sign out"));
  document.getElementById("login").hidden = true;
  document.getElementById("app").hidden = false;
  document.body.dataset.role = me.role;
  await render();
}

function signOut(message) {
  session.token = "";
  session.me = null;
  sessionStorage.removeItem("ferry-token");
  document.getElementById("who").replaceChildren();
  document.getElementById("updated").textContent = "";
  document.getElementById("app").hidden = true;
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = message || "";
  delete document.body.dataset.role;
  document.getElementById("token").focus();
}

document.getElementById("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const token = document.getElementById("token").value.trim();
  document.getElementById("token").value = "";
  if (token) signIn(token);
});
window.addEventListener("hashchange", () => render());
window.addEventListener("ferry-changed", () => render());
setInterval(refresh, REFRESH_MS);

// A token handed over in the address (`#token=…`, what `ferryctl` prints) is taken and
// removed from the address at once, then the page it names opens.
const start = new URLSearchParams(location.hash.startsWith("#token=") ? location.hash.slice(1) : "");
if (start.get("token")) {
  const then = start.get("then") || (start.get("q") ? "/devices?q=" + encodeURIComponent(start.get("q")) : "/");
  history.replaceState(null, "", location.pathname + "#" + then);
  signIn(start.get("token"));
} else if (session.token) {
  signIn(session.token);
} else {
  signOut();
}
