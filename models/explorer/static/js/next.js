// Next token: the model's probabilities for the token after the prefix, under temperature, top-k and top-p
// (as a sampler would see them); the bars, with "all others", add up to 1.

import { postJSON } from "./api.js";
import { guarded, state } from "./page.js";

const $ = (id) => document.getElementById(id);
let pending = null;
let latest = 0;  // requests are numbered: an answer that arrives after a newer request was sent is dropped

export function init() {
  for (const id of ["next-source", "next-prefix", "temperature", "top-k", "top-p"]) {
    $(id).addEventListener("input", schedule);
  }
  $("next-form").addEventListener("submit", (e) => { e.preventDefault(); run(); });
}

export function modelChanged() {
  $("next-bars").replaceChildren();
  $("next-source").parentElement.hidden = state.info?.kind !== "translator";
}

export function shown() {
  if (!$("next-bars").children.length) run();
}

function schedule() {  // a burst of slider moves sends one request
  $("temperature-value").textContent = Number($("temperature").value).toFixed(1);
  $("top-p-value").textContent = Number($("top-p").value).toFixed(2);
  clearTimeout(pending);
  pending = setTimeout(run, 120);
}

async function run() {
  const body = { model: state.model, prefix: $("next-prefix").value, temperature: Number($("temperature").value),
    top_k: Number($("top-k").value), top_p: Number($("top-p").value) };
  if (state.info?.kind === "translator") body.source = $("next-source").value;
  const ticket = ++latest;
  const result = await guarded(() => postJSON("/api/next_token", body));
  if (!result || ticket !== latest) return;
  $("next-context").textContent = `The model sees: ${result.context.join(" ")} — ${result.kept} of ` +
    `${result.vocab_size} tokens kept by the filters.`;
  const rows = result.candidates.map((c) => [c.piece, c.prob, `was ${(100 * c.raw).toFixed(1)}% at T = 1`]);
  if (result.other > 0) rows.push(["(all others)", result.other, ""]);
  $("next-bars").replaceChildren(...rows.map(([label, p, note], i) => {
    const row = document.createElement("div");
    row.className = "bar-row";
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = label;
    const bar = document.createElement("span");
    bar.className = `bar${i === result.candidates.length ? " other" : ""}`;
    bar.style.width = `${Math.max(1, 400 * p)}px`;
    const value = document.createElement("span");
    value.className = "prob";
    value.dataset.p = p;
    value.textContent = `${(100 * p).toFixed(1)}%`;
    const muted = document.createElement("span");
    muted.className = "muted";
    muted.textContent = note;
    row.append(name, bar, value, muted);
    return row;
  }));
}
