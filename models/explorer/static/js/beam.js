// Beam search as a tree: every hypothesis the beam kept (its summed log-probability) and every one that
// finished with </s> (score / length penalty); the translation's path in green.

import { postJSON } from "./api.js";
import { guarded, state } from "./page.js";
import { svgElement, text } from "./svg.js";

const $ = (id) => document.getElementById(id);

export function init() {
  $("beam-form").addEventListener("submit", (e) => { e.preventDefault(); run(); });
}

export function modelChanged() {
  $("beam-tree").replaceChildren();
  $("beam-translation").textContent = "";
}

export function shown() {
  if (!$("beam-tree").children.length && state.info?.kind === "translator") run();
}

async function run() {
  const result = await guarded(() => postJSON("/api/translate", {
    model: state.model, sentence: $("beam-sentence").value, beam_size: Number($("beam-size").value) }));
  if (!result) return;
  $("beam-translation").textContent = result.translation || "(empty)";
  $("beam-time").textContent = `${result.elapsed_ms} ms on the server (α = ${result.alpha})`;
  drawTree(result.beam);
}

// Leaves get one row each in depth-first order; a parent sits at the middle of its children.
function layout(nodes) {
  const children = new Map(nodes.map((n) => [n.id, []]));
  for (const n of nodes) if (n.parent !== null && children.has(n.parent)) children.get(n.parent).push(n);
  const y = new Map();
  let next = 0;
  const place = (n) => {
    const kids = children.get(n.id);
    if (!kids.length) { y.set(n.id, next++); return; }
    kids.forEach(place);
    y.set(n.id, kids.reduce((s, k) => s + y.get(k.id), 0) / kids.length);
  };
  nodes.filter((n) => n.parent === null).forEach(place);
  return { y, rows: next };
}

function drawTree(nodes) {
  const { y, rows } = layout(nodes);
  const colW = 128, rowH = 34, boxW = 116, boxH = 28;
  const steps = Math.max(...nodes.map((n) => n.step)) + 1;
  const svg = svgElement("svg", { width: steps * colW + 20, height: rows * rowH + 20, class: "beam-tree" });
  const pos = (n) => [10 + n.step * colW, 10 + y.get(n.id) * rowH];
  const byId = new Map(nodes.map((n) => [n.id, n]));
  for (const n of nodes) {
    const parent = byId.get(n.parent);
    if (!parent) continue;
    const [x0, y0] = pos(parent), [x1, y1] = pos(n);
    svgElement("path", { d: `M${x0 + boxW},${y0 + boxH / 2} C${x0 + boxW + 10},${y0 + boxH / 2} ${x1 - 10},` +
      `${y1 + boxH / 2} ${x1},${y1 + boxH / 2}`, fill: "none", stroke: n.best ? "#2e7d32" : "#999",
      "stroke-width": n.best ? 2 : 1 }, svg);
  }
  for (const n of nodes) {
    const [x, yy] = pos(n);
    const g = svgElement("g", { class: `beam-node${n.finished ? " finished" : ""}${n.best ? " best" : ""}` }, svg);
    svgElement("rect", { x, y: yy, width: boxW, height: boxH, rx: 4, fill: n.best ? "#e8f5e9" : "#fff",
      stroke: n.best ? "#2e7d32" : n.finished ? "#6a1b9a" : "#90a4ae", "stroke-dasharray": n.finished ? "" : "" }, g);
    text(g, x + 4, yy + 12, n.piece.length > 14 ? n.piece.slice(0, 13) + "…" : n.piece);
    const score = n.finished ? `${n.score.toFixed(2)} ÷lp ${n.normalised.toFixed(2)}` : n.score.toFixed(2);
    text(g, x + 4, yy + 24, score, { fill: "#555" });
    svgElement("title", {}, g).textContent = `step ${n.step}: log p(token) ${n.logp.toFixed(3)}, ` +
      `summed ${n.score.toFixed(3)}` + (n.finished ? `, finished: ${n.score.toFixed(3)} / lp = ${n.normalised.toFixed(3)}` : "");
  }
  $("beam-tree").replaceChildren(svg);
}
