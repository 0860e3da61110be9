// The embedding map's view (anywidget ES module, no build step): scatter + heatmap + query box.
// The model holds points [{x, y, text, image?}] (image: a data URI, drawn as the point's thumbnail and
// shown whole on hover), sim (n×n or []), method, the last query's point and neighbours; a query is
// sent to the kernel as {type: "query", text}.

const SVG = "http://www.w3.org/2000/svg";
const W = 460, H = 340, PAD = 22, R = 9, THUMB = 34;

function svg(tag, attrs, parent) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (parent) parent.appendChild(el);
  return el;
}

function div(cls, parent, text) {
  const el = document.createElement("div");
  el.className = cls;
  if (text !== undefined) el.textContent = text;
  if (parent) parent.appendChild(el);
  return el;
}

function short(text, n) {
  const t = text.replace(/\s+/g, " ").trim();
  return t.length <= n ? t : t.slice(0, n - 1) + "…";
}

const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

function viridis(t) {
  const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1), k = Math.min(Math.floor(x), VIRIDIS.length - 2);
  const f = x - k, [a, b] = [VIRIDIS[k], VIRIDIS[k + 1]];
  return `rgb(${a.map((c, n) => Math.round(c + (b[n] - c) * f)).join(",")})`;
}

function overlaps(a, b) {
  return a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1;
}

function render({ model, el }) {
  const root = div("mc-map", el);
  const row = div("mc-map-row", root);
  const plot = div("mc-map-scatter", row);
  const scatter = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" }, plot);
  const heat = div("mc-map-heat", row);
  const tip = div("mc-map-tip", root);
  tip.hidden = true;
  const form = document.createElement("form");
  form.className = "mc-map-query";
  root.appendChild(form);
  const input = document.createElement("input");
  input.type = "text";
  input.placeholder = "Embed a text and show its nearest neighbours";
  const button = document.createElement("button");
  button.type = "submit";
  button.textContent = "Find neighbours";
  form.append(input, button);
  const note = div("mc-map-note", root);
  const list = document.createElement("ol");
  list.className = "mc-map-neighbours";
  root.appendChild(list);

  function showTip(event, text, image) {
    tip.replaceChildren();
    if (image) {
      const img = document.createElement("img");
      img.src = image;
      img.alt = text;
      img.className = "mc-map-tip-image";
      tip.append(img, document.createElement("br"));
    }
    tip.append(text);
    tip.hidden = false;
    const box = root.getBoundingClientRect();
    const x = event.clientX - box.left + 12, y = event.clientY - box.top + 12;
    tip.style.left = Math.min(x, Math.max(0, box.width - tip.offsetWidth - 4)) + "px";
    tip.style.top = y + "px";
  }
  function hideTip() { tip.hidden = true; }

  function scale(points, extra) {
    const xs = points.map(p => p.x).concat(extra ? [extra[0]] : []);
    const ys = points.map(p => p.y).concat(extra ? [extra[1]] : []);
    const [x0, x1] = [Math.min(...xs), Math.max(...xs)], [y0, y1] = [Math.min(...ys), Math.max(...ys)];
    const pad = points.some(p => p.image) ? PAD + THUMB / 2 : PAD;   // a thumbnail stays inside the frame
    const sx = (W - 2 * pad) / ((x1 - x0) || 1), sy = (H - 2 * pad) / ((y1 - y0) || 1);
    return [x => pad + (x - x0) * sx, y => H - pad - (y - y0) * sy];
  }

  function thumbnail(g, p, i, cx, cy) {   // an image point: its picture in a frame, its number in a corner
    const half = THUMB / 2;
    svg("rect", { x: cx - half - 1, y: cy - half - 1, width: THUMB + 2, height: THUMB + 2, class: "mc-map-frame" }, g);
    svg("image", { href: p.image, x: cx - half, y: cy - half, width: THUMB, height: THUMB,
                   preserveAspectRatio: "xMidYMid meet" }, g);
    svg("text", { x: cx + half - 2, y: cy + half - 3, "text-anchor": "end", class: "mc-map-thumb-number" }, g)
      .textContent = i + 1;
    return { x0: cx - half, x1: cx + half, y0: cy - half, y1: cy + half };
  }

  function drawScatter() {
    scatter.replaceChildren();
    const points = model.get("points"), q = model.get("query_point");
    const near = new Map(model.get("neighbours").map((n, rank) => [n.index, rank]));
    const [fx, fy] = scale(points, q && q.length === 2 ? q : null);
    const pictures = points.some(p => p.image);
    svg("text", { x: 6, y: 14, class: "mc-map-title" }, scatter).textContent =
      `2-D projection (${model.get("method")}) · hover a point for its ${pictures ? "image" : "text"}`;
    const taken = [];
    const layer = svg("g", {}, scatter), labels = svg("g", {}, scatter);
    points.forEach((p, i) => {
      const cx = fx(p.x), cy = fy(p.y);
      const g = svg("g", { class: "mc-map-point" + (near.has(i) ? " mc-near" : ""), "data-index": i }, layer);
      if (p.image) {
        taken.push(thumbnail(g, p, i, cx, cy));
      } else {
        svg("circle", { cx, cy, r: R }, g);
        const box = { x0: cx - R, x1: cx + R, y0: cy - R, y1: cy + R };
        if (!taken.some(b => overlaps(b, box))) {
          svg("text", { x: cx, y: cy + 3.5, "text-anchor": "middle", class: "mc-map-number" }, g).textContent = i + 1;
        }
        taken.push(box);
      }
      g.addEventListener("mousemove", e => showTip(e, `${i + 1}. ${p.text}`, p.image));
      g.addEventListener("mouseleave", hideTip);
    });
    if (pictures) return drawQueryPoint(fx, fy, q);   // thumbnails are their own labels
    points.forEach((p, i) => {   // a text beside its point (right, else left) only where it overlaps nothing
      const label = short(p.text, 26), width = label.length * 6.1, cy = fy(p.y);
      for (const [x0, anchor] of [[fx(p.x) + R + 3, "start"], [fx(p.x) - R - 3 - width, "end"]]) {
        const box = { x0, x1: x0 + width, y0: cy - 7, y1: cy + 6 };
        if (box.x0 < 2 || box.x1 > W - 2 || box.y0 < 18 || taken.some(b => overlaps(b, box))) continue;
        taken.push(box);
        svg("text", { x: anchor === "start" ? x0 : x0 + width, y: cy + 4, "text-anchor": anchor,
                      class: "mc-map-label" }, labels).textContent = label;
        break;
      }
    });
    drawQueryPoint(fx, fy, q);
  }

  function drawQueryPoint(fx, fy, q) {
    if (q && q.length === 2) {
      const cx = fx(q[0]), cy = fy(q[1]);
      const star = svg("path", {
        d: `M${cx},${cy - 10} L${cx + 3},${cy - 3} L${cx + 10},${cy - 3} L${cx + 4},${cy + 2} L${cx + 6},${cy + 9}` +
           ` L${cx},${cy + 5} L${cx - 6},${cy + 9} L${cx - 4},${cy + 2} L${cx - 10},${cy - 3} L${cx - 3},${cy - 3} Z`,
        class: "mc-map-query-point" }, scatter);
      star.addEventListener("mousemove", e => showTip(e, `query: ${model.get("query_text")}`));
      star.addEventListener("mouseleave", hideTip);
    }
  }

  function drawHeat() {
    heat.replaceChildren();
    const sim = model.get("sim"), points = model.get("points");
    if (!sim.length) { heat.hidden = true; return; }
    heat.hidden = false;
    div("mc-map-heat-title", heat, "cosine similarity");
    const n = sim.length, cell = Math.max(4, Math.floor(300 / n)), side = cell * n;
    const canvas = document.createElement("canvas");
    canvas.width = side; canvas.height = side;
    canvas.style.width = side + "px"; canvas.style.height = side + "px";
    heat.appendChild(canvas);
    const ctx = canvas.getContext("2d");
    const lo = Math.min(0, ...sim.flat());
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
      const t = (sim[i][j] - lo) / ((1 - lo) || 1);   // viridis, as the static PNG
      ctx.fillStyle = viridis(t);
      ctx.fillRect(j * cell, i * cell, cell, cell);
      if (cell >= 26) {
        ctx.fillStyle = t > 0.6 ? "#000" : "#fff";
        ctx.font = "10px sans-serif"; ctx.textAlign = "center"; ctx.textBaseline = "middle";
        ctx.fillText(sim[i][j].toFixed(2), j * cell + cell / 2, i * cell + cell / 2);
      }
    }
    canvas.addEventListener("mousemove", e => {
      const r = canvas.getBoundingClientRect();
      const j = Math.floor((e.clientX - r.left) / cell), i = Math.floor((e.clientY - r.top) / cell);
      if (i < 0 || j < 0 || i >= n || j >= n) return hideTip();
      showTip(e, `${i + 1} × ${j + 1}: ${sim[i][j].toFixed(3)}\n${i + 1}. ${points[i].text}\n${j + 1}. ${points[j].text}`);
    });
    canvas.addEventListener("mouseleave", hideTip);
  }

  function drawQuery() {
    const can = model.get("can_query"), busy = model.get("busy");
    input.disabled = button.disabled = !can || busy;
    const error = model.get("query_error");
    note.textContent = !can ? `Queries are off: ${model.get("query_hint")}` : busy ? "embedding…" : error;
    note.className = "mc-map-note" + (error && can && !busy ? " mc-error" : "");
    list.replaceChildren();
    const points = model.get("points");
    for (const n of model.get("neighbours")) {
      const li = document.createElement("li");
      li.dataset.index = n.index;
      const score = document.createElement("span");
      score.className = "mc-map-score";
      score.textContent = n.score.toFixed(3);
      li.append(score);
      if (points[n.index].image) {   // an image map lists each neighbour's picture
        const img = document.createElement("img");
        img.src = points[n.index].image;
        img.alt = points[n.index].text;
        img.className = "mc-map-neighbour-image";
        li.append(" ", img);
      }
      li.append(` ${n.index + 1}. ${points[n.index].text}`);
      list.appendChild(li);
    }
    if (model.get("neighbours").length) {
      list.setAttribute("aria-label", `nearest to: ${model.get("query_text")}`);
    }
  }

  if (model.get("points").some(p => p.image)) input.placeholder = "Embed a text and find the nearest images";
  form.addEventListener("submit", e => {
    e.preventDefault();
    const text = input.value.trim();
    if (text) model.send({ type: "query", text });
  });
  const redraw = () => { drawScatter(); drawQuery(); };
  model.on("change:points", () => { drawScatter(); drawHeat(); });
  model.on("change:sim", drawHeat);
  for (const name of ["query_point", "neighbours", "query_text"]) model.on(`change:${name}`, redraw);
  for (const name of ["busy", "query_error", "can_query"]) model.on(`change:${name}`, drawQuery);
  drawScatter(); drawHeat(); drawQuery();
}

export default { render };
