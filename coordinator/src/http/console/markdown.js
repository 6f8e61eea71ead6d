// The little Markdown the coordinator's model cards use, drawn as DOM (text nodes only, so
// nothing in a card can inject markup): `#` and `##` headings, `|` tables, `-` lists and
// paragraphs.
"use strict";
import { el } from "./core.js";

export function markdown(text) {
  const out = [];
  const lines = text.split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (line.startsWith("## ")) { out.push(el("h3", {}, line.slice(3))); i++; continue; }
    if (line.startsWith("# ")) { out.push(el("h3", { class: "card-title" }, line.slice(2))); i++; continue; }
    if (line.startsWith("|")) {
      const rows = [];
      while (i < lines.length && lines[i].startsWith("|")) {
        const cells = lines[i].split("|").slice(1, -1).map((c) => c.trim());
        if (!cells.every((c) => /^-*$/.test(c))) rows.push(cells);
        i++;
      }
      // A header row of empty cells (the card's key/value tables) is left out.
      const body = rows.filter((r) => r.some((c) => c !== ""));
      out.push(el("table", { class: "card-table" }, el("tbody", {}, body.map((r) =>
        el("tr", {}, r.map((c, j) => el(j === 0 ? "th" : "td", j === 0 ? { scope: "row" } : {}, c)))))));
      continue;
    }
    if (line.startsWith("- ")) {
      const items = [];
      while (i < lines.length && lines[i].startsWith("- ")) items.push(el("li", {}, lines[i++].slice(2)));
      out.push(el("ul", {}, items));
      continue;
    }
    if (line.trim() === "") { i++; continue; }
    const para = [];
    while (i < lines.length && lines[i].trim() !== "" && !/^(#|\||- )/.test(lines[i])) para.push(lines[i++]);
    out.push(el("p", {}, para.join(" ")));
  }
  return out;
}
