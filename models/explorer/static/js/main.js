// The page's frame: the model list, the tabs, the error box; each view lives in its own module.

import { getJSON } from "./api.js";
import { guarded, state } from "./page.js";
import * as translate from "./translate.js";
import * as head from "./head.js";
import * as beam from "./beam.js";
import * as next from "./next.js";
import * as autograd from "./autograd.js";

const views = { translate, head, beam, next, autograd };
function openView(name) {
  for (const button of document.querySelectorAll("#tabs button")) {
    button.classList.toggle("active", button.dataset.view === name);
  }
  for (const key of Object.keys(views)) document.getElementById(`view-${key}`).hidden = key !== name;
  views[name].shown?.();
}

async function start() {
  const { models } = await guarded(() => getJSON("/api/models")) || { models: [] };
  const select = document.getElementById("model");
  for (const m of models) select.add(new Option(`${m.name} (${m.kind})`, m.name));
  const choose = () => {
    state.info = models.find((m) => m.name === select.value);
    state.model = select.value;
    document.body.dataset.kind = state.info?.kind || "";
    state.translation = null;
    const i = state.info;
    document.getElementById("model-info").textContent = i && i.kind === "translator" ?
      `d_model ${i.d_model}, ${i.n_heads} heads (d_k ${i.d_k}), ${i.encoder_layers}+${i.decoder_layers} layers, ` +
      `vocabulary ${i.vocab_size}` : "";
    for (const v of Object.values(views)) v.modelChanged?.();
  };
  select.addEventListener("change", choose);
  for (const button of document.querySelectorAll("#tabs button")) {
    button.addEventListener("click", () => openView(button.dataset.view));
  }
  for (const v of Object.values(views)) v.init();
  choose();
  openView(new URLSearchParams(location.search).get("view") || "translate");
}

start();
