// The console's charts, drawn as SVG from API data: versions per model, the fragmentation
// index over days, a rollout's gate values over time, a release's lineage graph.
"use strict";
import { svg, colorOf } from "./core.js";

// One bar split by version.
export function versionsChart(versions) {
  const total = versions.reduce((s, v) => s + v.devices, 0) || 1;
  const w = 560, h = 26;
  let x = 0;
  const rects = versions.map((v) => {
    const width = (v.devices / total) * w;
    const r = svg("rect", { x, y: 0, width: Math.max(width, 0), height: h, fill: colorOf(v.version) },
      svg("title", {}, (v.version || "none") + ": " + v.devices));
    x += width;
    return r;
  });
  return svg("svg", { viewBox: `0 0 ${w} ${h}`, width: "100%", height: h, role: "img",
    preserveAspectRatio: "none", "aria-label": "devices per version" }, rects);
}

// A time axis from t0 to t1 (Unix seconds) with about `ticks` labelled ticks.
function timeAxis(t0, t1, xs, y, h, ticks) {
  const span = Math.max(1, t1 - t0);
  const steps = [1, 5, 10, 30, 60, 300, 600, 1800, 3600, 6 * 3600, 86400];
  const step = steps.find((s) => span / s <= ticks) || 86400 * Math.ceil(span / 86400 / ticks);
  const out = [];
  const label = (t) => step >= 86400
    ? new Date(t * 1000).toLocaleDateString(undefined, { month: "short", day: "numeric" })
    : new Date(t * 1000).toLocaleTimeString(undefined, step >= 60 ? { hour: "2-digit", minute: "2-digit" } : {});
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
    out.push(svg("line", { x1: xs(t), y1: y, x2: xs(t), y2: y + 4, stroke: "var(--muted)" }),
      svg("text", { x: xs(t), y: h - 6, "text-anchor": "middle", "font-size": 10 }, label(t)));
  }
  return out;
}

// The fragmentation index over the last `days` days, 0 to 1 upwards, on a time axis: ten
// minutes of samples take ten minutes' width.
export function historyChart(history, days) {
  const w = 560, h = 130, left = 30, right = 14, top = 8, bottom = 22;
  const now = Date.now() / 1000, t0 = now - days * 86400;
  const xs = (t) => left + ((t - t0) / (now - t0)) * (w - left - right);
  const ys = (v) => h - bottom - v * (h - top - bottom);
  const axes = [];
  for (const v of [0, 0.5, 1]) {
    axes.push(svg("line", { x1: left, y1: ys(v), x2: w - right, y2: ys(v), stroke: "var(--line)" }),
      svg("text", { x: left - 4, y: ys(v) + 3, "text-anchor": "end", "font-size": 10 }, v.toFixed(1)));
  }
  axes.push(...timeAxis(t0, now, xs, ys(0), h, days));
  const shown = history.filter((p) => p.at >= t0);
  const points = shown.map((p) => `${xs(p.at).toFixed(1)},${ys(p.index).toFixed(1)}`).join(" ");
  return svg("svg", { viewBox: `0 0 ${w} ${h}`, width: "100%", role: "img", class: "chart",
      "aria-label": `fragmentation index, last ${days} days`, "data-samples": shown.length },
    axes,
    shown.length > 1 ? svg("polyline", { points, fill: "none", stroke: "var(--accent)", "stroke-width": 2 }) : [],
    shown.map((p) => svg("circle", { cx: xs(p.at), cy: ys(p.index), r: shown.length > 1 ? 1.5 : 3, fill: "var(--accent)" },
      svg("title", {}, new Date(p.at * 1000).toLocaleString() + ": " + p.index.toFixed(2)))),
    shown.length === 0 ? svg("text", { x: (w + left) / 2, y: h / 2, "text-anchor": "middle", "font-size": 12 }, "no sample yet") : []);
}

const GATE_COLORS = ["#2b6cb0", "#c05621", "#2f8f5b", "#805ad5", "#b83280", "#2c7a7b"];

// Each gate's value over the rollout's samples, divided by its threshold so that every gate
// trips at 1 (the dashed line); a value at or above it fails.
export function gateChart(gates, samples) {
  const w = 560, h = 160, left = 34, right = 14, top = 8, bottom = 22;
  if (samples.length === 0) {
    return svg("svg", { viewBox: `0 0 ${w} 40`, width: "100%", role: "img", class: "chart", "aria-label": "gate values over time", "data-samples": 0 },
      svg("text", { x: w / 2, y: 24, "text-anchor": "middle", "font-size": 12 }, "no gate sample yet (the engine samples as it steps)"));
  }
  const t0 = samples[0].at, t1 = Math.max(samples[samples.length - 1].at, t0 + 1);
  const ratio = (g, v) => (v === null || v === undefined ? null
    : g.gate.threshold > 0 ? v / g.gate.threshold : v > 0 ? 2 : 0);
  let top_value = 1.5;
  for (const s of samples) gates.forEach((g, i) => { const r = ratio(g, s.values[i]); if (r !== null) top_value = Math.max(top_value, Math.min(r, 10)); });
  const xs = (t) => left + ((t - t0) / (t1 - t0)) * (w - left - right);
  const ys = (v) => h - bottom - (Math.min(v, top_value) / top_value) * (h - top - bottom);
  const parts = [];
  for (const v of [0, 1, top_value]) {
    parts.push(svg("line", { x1: left, y1: ys(v), x2: w - right, y2: ys(v), stroke: v === 1 ? "var(--bad)" : "var(--line)",
      "stroke-dasharray": v === 1 ? "4 3" : "" }),
      svg("text", { x: left - 4, y: ys(v) + 3, "text-anchor": "end", "font-size": 10 }, v === 1 ? "limit" : v.toFixed(1) + "×"));
  }
  parts.push(...timeAxis(t0, t1, xs, ys(0), h, 6));
  gates.forEach((g, i) => {
    const pts = samples.filter((s) => ratio(g, s.values[i]) !== null)
      .map((s) => `${xs(s.at).toFixed(1)},${ys(ratio(g, s.values[i])).toFixed(1)}`);
    const color = GATE_COLORS[i % GATE_COLORS.length];
    if (pts.length > 1) parts.push(svg("polyline", { points: pts.join(" "), fill: "none", stroke: color, "stroke-width": 2 }));
    if (pts.length === 1) { const [x, y] = pts[0].split(","); parts.push(svg("circle", { cx: x, cy: y, r: 3, fill: color })); }
  });
  return svg("svg", { viewBox: `0 0 ${w} ${h}`, width: "100%", role: "img", class: "chart", "aria-label": "gate values over time, as a share of each limit",
    "data-samples": samples.length }, parts);
}

export function gateColor(i) { return GATE_COLORS[i % GATE_COLORS.length]; }

// The ancestry drawn as a graph: one column per generation (the release on the right, its
// parents to its left), an arrow from each parent to the release it led to.
export function lineageGraph(ancestors, onOpen) {
  const byDepth = new Map();
  for (const a of ancestors) {
    if (!byDepth.has(a.depth)) byDepth.set(a.depth, []);
    byDepth.get(a.depth).push(a);
  }
  const depths = [...byDepth.keys()].sort((a, b) => a - b);
  const maxRows = Math.max(...[...byDepth.values()].map((l) => l.length), 1);
  const boxW = 150, boxH = 44, gapX = 60, gapY = 16, pad = 10;
  const w = pad * 2 + depths.length * boxW + (depths.length - 1) * gapX;
  const h = pad * 2 + maxRows * boxH + (maxRows - 1) * gapY;
  const pos = new Map();
  depths.forEach((d, col) => {
    const list = byDepth.get(d);
    const offset = (h - (list.length * boxH + (list.length - 1) * gapY)) / 2;
    list.forEach((a, row) => pos.set(a.version, {
      x: w - pad - boxW - col * (boxW + gapX), y: offset + row * (boxH + gapY), a }));
  });
  const parts = [svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" },
    svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "var(--muted)" })))];
  for (const { x, y, a } of pos.values()) {
    const child = a.child && pos.get(a.child);
    if (child) {
      parts.push(svg("line", { x1: x + boxW, y1: y + boxH / 2, x2: child.x, y2: child.y + boxH / 2,
        stroke: "var(--muted)", "stroke-width": 1.5, "marker-end": "url(#arrow)" }));
    }
  }
  for (const { x, y, a } of pos.values()) {
    const label = [svg("text", { x: x + 8, y: y + 17, "font-size": 12, "font-weight": 600, class: "node-title" }, a.version),
      svg("text", { x: x + 8, y: y + 33, "font-size": 10 },
        (a.dataset || a.code_commit || (a.published ? "" : "not published here")).slice(0, 24))];
    const box = svg("rect", { x, y, width: boxW, height: boxH, rx: 5, fill: "var(--card)",
      stroke: a.depth === 0 ? "var(--accent)" : "var(--line)", "stroke-width": a.depth === 0 ? 2 : 1 });
    const node = svg("g", { class: "lineage-node", "data-version": a.version }, box, label,
      svg("title", {}, `${a.version}${a.dataset ? "\ndataset " + a.dataset : ""}${a.code_commit ? "\ncommit " + a.code_commit : ""}`));
    if (a.published && a.depth > 0 && onOpen) {
      const anchor = svg("a", { href: onOpen(a.version), "aria-label": "release " + a.version }, node);
      parts.push(anchor);
    } else {
      parts.push(node);
    }
  }
  return svg("svg", { viewBox: `0 0 ${w} ${h}`, width: Math.min(w, 900), role: "img", "aria-label": "lineage graph",
    "data-nodes": ancestors.length, class: "lineage" }, parts);
}
