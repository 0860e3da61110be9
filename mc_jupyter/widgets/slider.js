// The before/after slider's view (anywidget ES module): the upscaled output with the input (enlarged,
// pixelated) over it, clipped at the split; drag, the range input or the arrow keys move it.

function make(tag, cls, parent, text) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (text !== undefined) el.textContent = text;
  if (parent) parent.appendChild(el);
  return el;
}

function render({ model, el }) {
  const root = make("div", "mc-slider", el);
  const views = [];
  for (const pair of model.get("pairs")) {
    const box = make("div", "mc-slider-box", root);
    const width = Math.min(Math.max(pair.after_size[0], 384), 640);   // small outputs enlarged, pixels kept
    box.style.width = width + "px";
    box.style.aspectRatio = `${pair.after_size[0]} / ${pair.after_size[1]}`;
    const after = make("img", "mc-slider-after", box);
    after.src = pair.after; after.alt = "after"; after.draggable = false;
    after.style.imageRendering = pair.after_size[0] < width ? "pixelated" : "auto";
    const before = make("img", "mc-slider-before", box);
    before.src = pair.before; before.alt = "before"; before.draggable = false;
    const handle = make("div", "mc-slider-handle", box);
    make("span", "mc-slider-tag mc-left", box, `before ${pair.before_size[0]}×${pair.before_size[1]}`);
    make("span", "mc-slider-tag mc-right", box, `after ${pair.after_size[0]}×${pair.after_size[1]}`);
    const range = make("input", "mc-slider-range", root);
    range.type = "range"; range.min = 0; range.max = 1000; range.style.width = width + "px";
    range.setAttribute("aria-label", "split between the input and the upscaled output");
    views.push({ box, before, handle, range });

    const fromPointer = e => {
      const r = box.getBoundingClientRect();
      model.set("position", Math.min(1, Math.max(0, (e.clientX - r.left) / r.width)));
      model.save_changes();
    };
    box.addEventListener("pointerdown", e => { box.setPointerCapture(e.pointerId); fromPointer(e); });
    box.addEventListener("pointermove", e => { if (box.hasPointerCapture(e.pointerId)) fromPointer(e); });
    range.addEventListener("input", () => { model.set("position", range.value / 1000); model.save_changes(); });
  }
  function place() {
    const p = model.get("position");
    for (const v of views) {
      v.before.style.clipPath = `inset(0 ${(100 - p * 100).toFixed(2)}% 0 0)`;
      v.handle.style.left = (p * 100).toFixed(2) + "%";
      v.range.value = Math.round(p * 1000);
    }
  }
  model.on("change:position", place);
  place();
}

export default { render };
