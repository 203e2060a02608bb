// Inside one head: q, the keys, q·k, ÷ √d_k, the mask, the softmax and the weighted sum of the values,
// for one query of the last translation; and the positional-encoding table as a picture.

import { postJSON } from "./api.js";
import { fillSelect, guarded, state } from "./page.js";
import { run as translate } from "./translate.js";
import { blues, diverging, svgElement } from "./svg.js";

const $ = (id) => document.getElementById(id);

export function init() {
  // the same three attentions as the Translate view's menu
  $("head-kind").replaceChildren(...[...$("map-kind").options].map((o) => new Option(o.text, o.value)));
  for (const id of ["head-kind", "head-layer", "head-head", "head-query"]) {
    $(id).addEventListener("change", () => { if (id === "head-kind") fillControls(); load(); });
  }
}

export function modelChanged() {
  $("head-steps").replaceChildren();
  $("positional").replaceChildren();
}

export async function shown() {
  if (!state.info || state.info.kind !== "translator") return;
  if (!state.translation) await translate();
  if (!state.translation) return;
  fillControls();
  await load();
  if (!$("positional").children.length) await drawPositional();
}

function fillControls() {
  const info = state.info, r = state.translation.result, kind = $("head-kind").value;
  const layers = kind === "encoder" ? info.encoder_layers : info.decoder_layers;
  fillSelect($("head-layer"), Array.from({ length: layers }, (_, l) => [l, `layer ${l + 1}`]));
  fillSelect($("head-head"), Array.from({ length: info.n_heads }, (_, h) => [h, `head ${h + 1}`]));
  const queries = kind === "encoder" ? r.source_tokens : ["<s>", ...r.target_ids.map((_, i) => r.target_tokens[i])];
  fillSelect($("head-query"), queries.map((piece, i) => [i, `${i}: ${piece}`]));
}

async function load() {
  const t = state.translation;
  const result = await guarded(() => postJSON("/api/head", {
    model: state.model, sentence: t.sentence, target_ids: t.result.target_ids, attention: $("head-kind").value,
    layer: Number($("head-layer").value), head: Number($("head-head").value), query: Number($("head-query").value),
  }));
  if (result) drawSteps(result);
}

// A vector as a strip of coloured cells (red positive, blue negative), each with its value on hover.
function strip(values, scale, cell = 8) {
  const svg = svgElement("svg", { width: values.length * cell, height: 14, class: "strip" });
  values.forEach((v, i) => {
    const rect = svgElement("rect", { x: i * cell, y: 0, width: cell - 1, height: 14, fill: diverging(v, scale) }, svg);
    svgElement("title", {}, rect).textContent = `[${i}] ${v.toFixed(4)}`;
  });
  return svg;
}

function cell(row, content, cls = "") {
  const td = document.createElement(row.parentElement?.tagName === "THEAD" ? "th" : "td");
  if (content instanceof Node) td.appendChild(content); else td.textContent = content;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function drawSteps(r) {
  const maxAbs = (m) => Math.max(1e-9, ...m.flat().map(Math.abs));
  const kScale = maxAbs(r.keys), vScale = maxAbs(r.values);
  const out = document.createElement("div");
  const intro = document.createElement("p");
  intro.innerHTML = `Query <b></b> (position ${r.query}); d<sub>k</sub> = ${r.d_k}, √d<sub>k</sub> = ` +
    `${Math.sqrt(r.d_k).toFixed(3)}. q = x W<sub>q</sub>ᵀ + b<sub>q</sub>, this head's ${r.d_k} features:`;
  intro.querySelector("b").textContent = r.query_tokens[r.query];
  out.append(intro, strip(r.q, maxAbs([r.q])));
  const table = document.createElement("table");
  table.className = "steps";
  const head = table.createTHead().insertRow();
  for (const h of ["key token", "k (keys)", "q·k", "÷ √d_k", "mask", "softmax", "v (values)"]) cell(head, h);
  const body = table.createTBody();
  r.key_tokens.forEach((token, j) => {
    const row = body.insertRow();
    cell(row, token);
    cell(row, strip(r.keys[j], kScale));
    cell(row, r.dots[j].toFixed(3));
    cell(row, r.scaled[j].toFixed(3));
    cell(row, r.mask[j] ? "−∞" : "0", r.mask[j] ? "masked" : "");
    const bar = svgElement("svg", { width: 80, height: 12 });
    svgElement("rect", { width: 80 * r.weights[j], height: 12, fill: blues(0.3 + 0.7 * r.weights[j]) }, bar);
    const w = cell(row, bar);
    w.append(` ${r.weights[j].toFixed(3)}`);
    w.className = "weight";
    cell(row, strip(r.values[j], vScale));
  });
  const sum = document.createElement("p");
  sum.textContent = `Output = Σ softmax × v (sum of the weights: ${r.weights.reduce((a, b) => a + b, 0).toFixed(4)}):`;
  out.append(table, sum, strip(r.output, vScale));
  $("head-steps").replaceChildren(out);
}

async function drawPositional() {
  const result = await guarded(() => postJSON("/api/positional", { model: state.model, positions: 50 }));
  if (!result) return;
  const table = result.table, n = table.length, d = table[0].length;
  const canvas = document.createElement("canvas");
  const px = Math.max(1, Math.floor(640 / d));
  canvas.width = d * px;
  canvas.height = n * 4;
  const ctx = canvas.getContext("2d");
  table.forEach((row, pos) => row.forEach((v, i) => {
    ctx.fillStyle = diverging(v, 1);
    ctx.fillRect(i * px, pos * 4, px, 4);
  }));
  canvas.title = `${n} positions × ${d} dimensions`;
  $("positional").replaceChildren(canvas);
}
