// Autograd: an expression over the view's small tensors becomes a graph (op, shape, bytes saved for
// backward, as ta.viz draws it); "Step backward" replays backward() one node at a time, in the engine's order.

import { getJSON, postJSON } from "./api.js";
import { guarded } from "./page.js";
import { svgElement, text } from "./svg.js";

const $ = (id) => document.getElementById(id);
let graph = null;  // the server's answer
let done = 0;  // steps shown so far
let boxes = [];

export function init() {
  $("autograd-form").addEventListener("submit", (e) => { e.preventDefault(); build(); });
  $("step").addEventListener("click", () => show(done + 1));
  $("run-all").addEventListener("click", () => graph && show(graph.steps.length));
}

export async function shown() {
  if (graph) return;
  const info = await guarded(() => getJSON("/api/autograd"));
  if (info) {
    $("grammar").textContent = "Tensors: " + Object.entries(info.tensors).map(([n, t]) =>
      `${n} ${JSON.stringify(t.shape)} (${t.about})`).join(", ") + `. Functions: ${info.functions.join(", ")}. ` +
      "Operators: + - * / @ ** (a number exponent), parentheses.";
  }
  await build();
}

async function build() {
  const result = await guarded(() => postJSON("/api/autograd", { expression: $("expression").value }));
  if (!result) return;
  graph = result;
  drawGraph();
  show(0);
}

// Depth = the longest path to the output; leaves end up at the top, the output at the bottom.
function layers(nodes, edges) {
  const depth = nodes.map(() => 0);
  for (let changed = true; changed;) {
    changed = false;
    for (const [s, t] of edges) if (depth[s] < depth[t] + 1) { depth[s] = depth[t] + 1; changed = true; }
  }
  return depth;
}

function drawGraph() {
  const { nodes, edges } = graph;
  const depth = layers(nodes, edges), maxDepth = Math.max(...depth);
  const boxW = 150, boxH = 46, gapX = 20, rowH = 80;
  const perLayer = new Map();
  const place = nodes.map((_, i) => {
    const level = maxDepth - depth[i];
    const k = perLayer.get(level) || 0;
    perLayer.set(level, k + 1);
    return [k, level];
  });
  const width = Math.max(...perLayer.values()) * (boxW + gapX) + 20;
  const xy = place.map(([k, level]) => {
    const count = perLayer.get(level);
    return [10 + (width - 20) * (k + 0.5) / count - boxW / 2, 10 + level * rowH];
  });
  const svg = svgElement("svg", { width, height: (maxDepth + 1) * rowH + 10, class: "autograd-graph" });
  svgElement("defs", {}, svg).innerHTML =
    '<marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto">' +
    '<path d="M0,0 L10,5 L0,10 z" fill="#666"/></marker>';
  for (const [s, t] of edges) {
    svgElement("line", { x1: xy[s][0] + boxW / 2, y1: xy[s][1] + boxH, x2: xy[t][0] + boxW / 2, y2: xy[t][1],
      stroke: "#666", "marker-end": "url(#arrow)" }, svg);
  }
  boxes = nodes.map((n, i) => {
    const g = svgElement("g", { class: "graph-node", "data-node": i }, svg);
    const rect = svgElement("rect", { x: xy[i][0], y: xy[i][1], width: boxW, height: boxH, rx: n.kind === "leaf" ? 10 : 2,
      fill: n.kind === "leaf" ? "#cfe2ff" : "#e8e8e8", stroke: i === 0 ? "#2f7d32" : "#888",
      "stroke-width": i === 0 ? 2 : 1 }, g);
    text(g, xy[i][0] + 6, xy[i][1] + 14, n.label, { "font-weight": "bold" });
    text(g, xy[i][0] + 6, xy[i][1] + 27, `${JSON.stringify(n.shape)} ${n.dtype}`);
    text(g, xy[i][0] + 6, xy[i][1] + 40, n.kind === "leaf" ? "requires_grad" : `saved ${n.saved} B`);
    return rect;
  });
  $("graph").replaceChildren(svg);
}

// Show the first n steps of backward(): those nodes turn green and their gradients are listed.
function show(n) {
  if (!graph) return;
  done = Math.min(n, graph.steps.length);
  const reached = new Set(graph.steps.slice(0, done).map((s) => s.node));
  boxes.forEach((rect, i) => {
    rect.setAttribute("fill", reached.has(i) ? "#c8e6c9" : graph.nodes[i].kind === "leaf" ? "#cfe2ff" : "#e8e8e8");
    rect.parentElement.classList.toggle("has-grad", reached.has(i));
  });
  $("step-count").textContent = `backward step ${done} of ${graph.steps.length}` +
    (done === graph.steps.length ? ` — saved for backward before: ${graph.saved_total} B, after: 0 B (freed)` : "");
  const items = graph.steps.slice(0, done).map((s, k) => {
    const div = document.createElement("div");
    div.className = `step${k === done - 1 ? " latest" : ""}`;
    const node = graph.nodes[s.node];
    div.textContent = `${k + 1}. ${node.label} ${JSON.stringify(node.shape)}: grad = ${JSON.stringify(s.grad)}`;
    return div;
  });
  const values = [...Object.entries(graph.tensors), ["value", graph.output]].map(([name, v]) => {
    const div = document.createElement("div");
    div.className = "muted";
    div.textContent = `${name} = ${JSON.stringify(v)}`;
    return div;
  });
  $("grad-panel").replaceChildren(...values, ...items);
}
