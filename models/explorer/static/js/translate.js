// Translate: a sentence in, the translation out, and every attention map of that decoding pass.
// Maps are (layers, heads, queries, keys); the page shows one head, or the average over heads and/or layers.

import { postJSON } from "./api.js";
import { fillSelect, guarded, state, tokenChips } from "./page.js";
import { blues, heatmap } from "./svg.js";

const $ = (id) => document.getElementById(id);
let cells = [];
let keyChips = [];
let matrix = [];

export function init() {
  $("translate-form").addEventListener("submit", (e) => { e.preventDefault(); run(); });
  for (const id of ["map-layer", "map-head"]) $(id).addEventListener("change", draw);
  $("map-kind").addEventListener("change", () => { fillLayers(); draw(); });
}

export function modelChanged() {
  const info = state.info;
  if (!info || info.kind !== "translator") return;
  fillLayers();
  fillSelect($("map-head"), [["avg", "average of heads"],
    ...Array.from({ length: info.n_heads }, (_, h) => [h, `head ${h + 1}`])]);
  $("map-head").value = "avg";
  $("heatmap").replaceChildren();
  $("translation").textContent = "";
}

function fillLayers() {
  const info = state.info;
  const n = $("map-kind").value === "encoder" ? info.encoder_layers : info.decoder_layers;
  fillSelect($("map-layer"), [["avg", "average of layers"],
    ...Array.from({ length: n }, (_, l) => [l, `layer ${l + 1}`])]);
  if ($("map-layer").value === "avg" || Number($("map-layer").value) >= n) $("map-layer").value = n - 1;
}

export async function run() {
  const sentence = $("sentence").value;
  const result = await guarded(() => postJSON("/api/translate",
    { model: state.model, sentence, beam_size: Number($("search").value) }));
  if (!result) return;
  state.translation = { sentence, result };
  $("translation").textContent = result.translation || "(empty)";
  $("translate-time").textContent = `${result.elapsed_ms} ms on the server`;
  draw();
}

// The mean of the chosen layers and heads: (queries, keys).
function pick(maps, layer, head) {
  const layers = layer === "avg" ? maps.map((_, l) => l) : [Number(layer)];
  const heads = head === "avg" ? maps[0].map((_, h) => h) : [Number(head)];
  const Q = maps[0][0].length, K = maps[0][0][0].length;
  const out = Array.from({ length: Q }, () => new Array(K).fill(0));
  for (const l of layers) for (const h of heads) for (let i = 0; i < Q; i++) for (let j = 0; j < K; j++) {
    out[i][j] += maps[l][h][i][j] / (layers.length * heads.length);
  }
  return out;
}

function draw() {
  const t = state.translation;
  if (!t) return;
  const r = t.result, kind = $("map-kind").value;
  const decoderInputs = ["<s>", ...r.target_tokens.slice(0, -1)];
  const rows = { cross: r.target_tokens, encoder: r.source_tokens, decoder: decoderInputs }[kind];
  const cols = { cross: r.source_tokens, encoder: r.source_tokens, decoder: decoderInputs }[kind];
  if (!r[kind].length || !rows.length) { $("heatmap").replaceChildren(); return; }
  matrix = pick(r[kind], $("map-layer").value, $("map-head").value);
  ({ cells } = heatmap($("heatmap"), matrix, rows, cols, { title: `${kind} attention`, color: shade }));
  const peak = Math.max(...matrix.flat());
  $("heatmap-scale").textContent = `Colour: white 0 to dark blue 1, by √weight so that small weights show; ` +
    `each row sums to 1; the largest weight here is ${peak.toFixed(3)}.`;
  tokenChips($("query-tokens"), rows, highlight);
  keyChips = tokenChips($("key-tokens"), cols);
  cells.forEach((row, i) => row.forEach((cell) => {
    cell.addEventListener("mouseenter", () => highlight(i));
    cell.addEventListener("mouseleave", () => highlight(null));
  }));
}

// Dark for 1, white for 0, by the square root: a weight of 0.05 among 20 tokens is still visible.
const shade = (v) => blues(Math.sqrt(Math.max(0, v)));

// Hovering query token i: its row of the map is outlined and the key tokens are shaded by its weights.
function highlight(i) {
  cells.forEach((row, r) => row.forEach((cell) => cell.classList.toggle("highlight", r === i)));
  document.querySelectorAll("#heatmap .row-label").forEach((el) => el.classList.toggle("highlight",
    Number(el.dataset.row) === i));
  document.querySelectorAll("#query-tokens .token").forEach((el) => el.classList.toggle("active",
    Number(el.dataset.index) === i));
  keyChips.forEach((chip, j) => {
    const w = i === null ? 0 : matrix[i][j];
    chip.style.background = i === null ? "" : shade(w);
    chip.style.color = w > 0.3 ? "#fff" : "";
  });
}
