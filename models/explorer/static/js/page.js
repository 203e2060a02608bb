// What the views share: the chosen model, the last translation, and the error box.

export const state = { model: null, info: null, translation: null };

export function showError(error) {
  const box = document.getElementById("error");
  box.textContent = error ? `Error: ${error.message || error}` : "";
  box.hidden = !error;
}

// Run an action, showing its error instead of losing it; clears the previous error first.
export async function guarded(action) {
  showError(null);
  try {
    return await action();
  } catch (e) {
    showError(e);
    return null;
  }
}

// Fill a <select> with options (value, label), keeping the chosen value when it is still there.
export function fillSelect(select, options) {
  const kept = select.value;
  select.replaceChildren(...options.map(([value, label]) => new Option(label, value)));
  if (options.some(([value]) => String(value) === kept)) select.value = kept;
}

// Token chips; `onHover(i)` is called with the chip's index (or null when the pointer leaves).
export function tokenChips(container, pieces, onHover = null) {
  const chips = pieces.map((piece, i) => {
    const chip = document.createElement("span");
    chip.className = "token";
    chip.textContent = piece;
    chip.dataset.index = i;
    if (onHover) {
      chip.addEventListener("mouseenter", () => onHover(i));
      chip.addEventListener("mouseleave", () => onHover(null));
    }
    return chip;
  });
  container.replaceChildren(...chips);
  return chips;
}
