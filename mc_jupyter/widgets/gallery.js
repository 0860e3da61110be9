// The image gallery's view (anywidget ES module): thumbnails with their seeds, a click enlarges one,
// "again with the next seed" asks the kernel for the next image ({type: "again"}).

function make(tag, cls, parent, text) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (text !== undefined) el.textContent = text;
  if (parent) parent.appendChild(el);
  return el;
}

function seedText(seed) { return seed === null || seed === undefined ? "seed: none (random)" : `seed ${seed}`; }

function render({ model, el }) {
  const root = make("div", "mc-gallery", el);
  const strip = make("div", "mc-gallery-strip", root);
  const bar = make("div", "mc-gallery-bar", root);
  const again = make("button", "mc-gallery-again", bar, "Again with the next seed");
  again.type = "button";
  const note = make("span", "mc-gallery-note", bar);
  const big = make("figure", "mc-gallery-big", root);
  big.hidden = true;
  big.tabIndex = 0;

  function draw() {
    const items = model.get("items");
    strip.replaceChildren();
    items.forEach((item, i) => {
      const fig = make("figure", "mc-gallery-item" + (i === model.get("selected") ? " mc-selected" : ""), strip);
      fig.dataset.index = i;
      const img = make("img", "", fig);
      img.src = item.thumb;
      img.alt = `image ${i + 1}, ${seedText(item.seed)}`;
      img.title = "click to enlarge";
      make("figcaption", "mc-gallery-seed", fig, `#${i + 1} · ${seedText(item.seed)} · ${item.width}×${item.height}`);
      fig.addEventListener("click", () => {
        model.set("selected", model.get("selected") === i ? -1 : i);
        model.save_changes();
      });
    });
    const selected = model.get("selected");
    big.replaceChildren();
    big.hidden = !(selected >= 0 && selected < items.length);
    if (!big.hidden) {
      const item = items[selected];
      const img = make("img", "", big);
      img.src = item.src;
      img.alt = `image ${selected + 1} enlarged`;
      make("figcaption", "mc-gallery-seed", big,
           `#${selected + 1} · ${seedText(item.seed)} · ${item.width}×${item.height} · click to close`);
    }
    const busy = model.get("busy"), can = model.get("can_again");
    again.disabled = busy || !can;
    note.textContent = !can ? model.get("again_hint") : busy ? "drawing…" : model.get("error");
    note.classList.toggle("mc-error", !!model.get("error") && can && !busy);
  }

  const close = () => { model.set("selected", -1); model.save_changes(); };
  big.addEventListener("click", close);
  big.addEventListener("keydown", e => { if (e.key === "Escape") close(); });
  again.addEventListener("click", () => model.send({ type: "again" }));
  for (const name of ["items", "selected", "busy", "error", "can_again"]) model.on(`change:${name}`, draw);
  draw();
}

export default { render };
