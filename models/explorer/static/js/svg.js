// Drawing helpers: SVG elements and colour scales (no library: everything the page draws is here).

const NS = "http://www.w3.org/2000/svg";

export function svgElement(tag, attrs = {}, parent = null) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (parent) parent.appendChild(el);
  return el;
}

export function text(parent, x, y, content, attrs = {}) {
  const el = svgElement("text", { x, y, ...attrs }, parent);
  el.textContent = content;
  return el;
}

// 0 -> white, 1 -> dark blue: attention weights and probabilities.
export function blues(v) {
  const t = Math.max(0, Math.min(1, v));
  const c = (a, b) => Math.round(a + (b - a) * t);
  return `rgb(${c(255, 8)},${c(255, 48)},${c(255, 107)})`;
}

// -1 -> blue, 0 -> white, +1 -> red: signed values (scaled by `scale`).
export function diverging(v, scale = 1) {
  const t = Math.max(-1, Math.min(1, v / (scale || 1)));
  const c = (a) => Math.round(255 - (255 - a) * Math.abs(t));
  return t >= 0 ? `rgb(255,${c(60)},${c(60)})` : `rgb(${c(40)},${c(90)},255)`;
}

// A heatmap of `matrix` (rows x cols) with row and column labels; returns the svg and its cells by row.
export function heatmap(container, matrix, rowLabels, colLabels, { cell = 22, color = blues, title = "" } = {}) {
  const left = 8 + 7 * Math.max(4, ...rowLabels.map((s) => s.length));
  const top = 8 + 7 * Math.max(4, ...colLabels.map((s) => s.length));
  const svg = svgElement("svg", { width: left + cell * colLabels.length + 10, height: top + cell * rowLabels.length + 10,
    class: "heatmap", "data-rows": rowLabels.length, "data-cols": colLabels.length, role: "img",
    "aria-label": title });
  colLabels.forEach((label, j) => text(svg, 0, 0, label, {
    transform: `translate(${left + j * cell + cell / 2 + 4},${top - 4}) rotate(-90)`, class: "col-label",
    "data-col": j }));
  const cells = rowLabels.map((label, i) => {
    text(svg, left - 4, top + i * cell + cell / 2 + 4, label, { "text-anchor": "end", class: "row-label",
      "data-row": i });
    return colLabels.map((_, j) => {
      const v = matrix[i][j];
      const rect = svgElement("rect", { x: left + j * cell, y: top + i * cell, width: cell - 1, height: cell - 1,
        fill: color(v), class: "cell", "data-row": i, "data-col": j }, svg);
      svgElement("title", {}, rect).textContent = `${label} → ${colLabels[j]}: ${Number(v).toFixed(3)}`;
      return rect;
    });
  });
  container.replaceChildren(svg);
  return { svg, cells };
}
