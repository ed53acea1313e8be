// "Look inside": what a model does with the image on the pad, drawn from POST /api/explain
// exactly as the server computed it (nothing recomputed here, so the browser test can compare).
// One row per layer; a class bar's click picks the class explained; a unit's click shows its
// arithmetic; "Compare with" puts the same image through a second model. Plain JavaScript.
"use strict";

(() => {
  const details = document.getElementById("inside");
  const modelPick = document.getElementById("inside-model");
  const comparePick = document.getElementById("inside-compare");
  const methodPick = document.getElementById("inside-method");
  const attributions = document.getElementById("attributions");
  const layersBox = document.getElementById("layers");
  const unitBox = document.getElementById("unit");
  const note = document.getElementById("inside-status");

  let last = null; // {body, type}: what was last sent for a prediction
  let target = null; // the class picked by a bar's click (null: each model's prediction)
  let answers = {}; // model name -> the last explanation shown
  let asked = 0; // requests sent; older answers are dropped

  const METHODS = {
    saliency: "saliency (d logit / d pixel)",
    integrated_gradients: "integrated gradients",
    gradient_x_input: "gradient × input",
    grad_cam: "Grad-CAM (last conv block)",
  };

  // Colour scales, written once: grey for activations (lo -> black, hi -> white), and a
  // diverging blue-white-red for signed quantities, symmetric around 0.
  function grey(v, lo, hi) {
    const g = hi > lo ? Math.round((255 * (v - lo)) / (hi - lo)) : 0;
    return [g, g, g];
  }
  function diverging(v, m) {
    const t = m > 0 ? Math.max(-1, Math.min(1, v / m)) : 0;
    const fade = Math.round(255 * (1 - Math.abs(t)));
    return t >= 0 ? [255, fade, fade] : [fade, fade, 255];
  }
  function extent(values) {
    let lo = Infinity, hi = -Infinity;
    for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
    return [lo, hi];
  }
  function maxAbs(values) {
    return values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  }

  // A canvas of rows x cols cells, each coloured by colour(value).
  function image(rows, cols, values, colour, cls) {
    const canvas = el("canvas", cls);
    canvas.width = cols;
    canvas.height = rows;
    const ctx = canvas.getContext("2d");
    const img = ctx.createImageData(cols, rows);
    values.forEach((v, i) => img.data.set([...colour(v), 255], 4 * i));
    ctx.putImageData(img, 0, 0);
    return canvas;
  }

  function legend(m) {
    const box = el("div", "legend");
    const bar = image(1, 64, Array.from({ length: 64 }, (_, i) => -m + (2 * m * i) / 63), (v) => diverging(v, m), "scale");
    box.append(el("span", "", (-m).toPrecision(2)), bar, el("span", "", `+${m.toPrecision(2)}`));
    return box;
  }

  function heatmap(title, values, cls) {
    const flat = values.flat();
    const m = maxAbs(flat);
    const fig = el("figure", `heat ${cls || ""}`);
    const canvas = image(28, 28, flat, (v) => diverging(v, m), "heatmap");
    canvas.dataset.max = String(m);
    fig.append(canvas, legend(m), el("figcaption", "", title));
    return fig;
  }

  function send(query) {
    return fetch(`api/explain?${new URLSearchParams(query)}`, {
      method: "POST",
      headers: { "Content-Type": last.type },
      body: last.body,
    }).then(async (response) => {
      const answer = await response.json();
      if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
      return answer;
    });
  }

  async function refresh() {
    if (!details.open || last === null || !modelPick.value) return;
    const id = ++asked;
    const names = [modelPick.value, comparePick.value].filter((n, i) => n && (i === 0 || n !== modelPick.value));
    document.body.dataset.insideBusy = "1";
    let got;
    try {
      got = await Promise.all(names.map((name) => send(target === null ? { model: name } : { model: name, target })));
    } catch (e) {
      if (id === asked) { note.textContent = e.message; delete document.body.dataset.insideBusy; }
      return;
    }
    if (id !== asked) return;
    note.textContent = "";
    answers = Object.fromEntries(got.map((a) => [a.model, a]));
    showAttributions(got);
    showLayers(got[0]);
    unitBox.hidden = true;
    document.body.dataset.inside = String(Number(document.body.dataset.inside || 0) + 1);
    delete document.body.dataset.insideBusy;
  }

  function showAttributions(got) {
    const method = methodPick.value;
    const figs = got.map((a) => {
      const values = a[method];
      const name = a.class_names[a.target];
      if (!values) return el("p", "hint", `${a.model}: no ${METHODS[method]} (no conv layer)`);
      const fig = heatmap(`${a.model}: ${METHODS[method]} for “${name}”`, values);
      fig.dataset.model = a.model;
      fig.dataset.target = String(a.target);
      fig.dataset.method = method;
      return fig;
    });
    if (got.length === 2 && got[0][method] && got[1][method]) {
      // Each map scaled to its own largest magnitude first: the two models' gradients differ in
      // scale, and the question is where they look, not how steeply.
      const [a, b] = got.map((g) => { const f = g[method].flat(); const m = maxAbs(f) || 1; return f.map((v) => v / m); });
      const diff = a.map((v, i) => v - b[i]);
      const rows = Array.from({ length: 28 }, (_, r) => diff.slice(28 * r, 28 * r + 28));
      const fig = heatmap(`difference (${got[0].model} − ${got[1].model}, each scaled to its largest)`, rows, "difference");
      fig.dataset.method = method;
      figs.push(fig);
    }
    const c = got[0].completeness;
    const line = el("p", "completeness",
      `Integrated gradients (${c.steps} steps) sum to ${c.sum.toFixed(4)}; logit(image) − logit(black) = ` +
      `${c.expected.toFixed(4)}: gap ${(100 * c.relative_gap).toFixed(2)}%.`);
    attributions.replaceChildren(...figs, line);
  }

  const DESCRIBE = {
    Conv2D: (l) => `${l.config.in_channels}→${l.config.out_channels} channels, ${l.config.kernel_size.join("×")} kernels, stride ${l.config.stride}, padding ${l.config.padding}: each map is one filter slid over the input`,
    BatchNorm: () => "at inference a fixed affine per channel: y = x · scale + shift (running statistics)",
    MaxPool2D: (l) => `the largest value of each ${l.config.kernel_size}×${l.config.kernel_size} window`,
    ReLU: () => "max(x, 0)",
    Sigmoid: () => "1 / (1 + e^−x)",
    Tanh: () => "tanh(x)",
    Softmax: () => "e^x / Σ e^x",
    Flatten: () => "the maps laid out as one vector",
    Dropout: (l) => `off at inference (y = x); in training it zeroes ${Math.round(100 * l.config.p)}% of units`,
    Dense: (l) => `${l.config.in_features}→${l.config.out_features}: each unit is Σ weight × input + bias`,
  };

  function showLayers(a) {
    const rows = a.layers.map((layer) => {
      const row = el("div", "layer");
      row.dataset.index = String(layer.index);
      row.dataset.type = layer.type;
      const clickable = layer.type === "Dense" || layer.type === "Conv2D";
      const head = el("div", "layer-head");
      head.append(el("strong", "", `${layer.index} ${layer.type}`), el("span", "shape", ` (${layer.shape.join("×")})`),
        el("span", "what", ` ${(DESCRIBE[layer.type] || (() => ""))(layer)}`));
      if (layer.affine) {
        const s = layer.affine.scale, t = layer.affine.shift;
        head.append(el("span", "what", ` — e.g. channel 0: y = x · ${s[0].toPrecision(4)} + ${t[0].toPrecision(4)}`));
      }
      row.append(head);
      const flat = layer.values.flat(Infinity);
      const [lo, hi] = extent(flat);
      if (layer.shape.length === 3) {
        const [c, h, w] = layer.shape;
        const maps = el("div", "maps");
        for (let k = 0; k < c; k++) {
          const cell = el("div", "map");
          const canvas = image(h, w, flat.slice(k * h * w, (k + 1) * h * w), (v) => grey(v, lo, hi), "fmap");
          canvas.dataset.channel = String(k);
          canvas.dataset.lo = String(lo);
          canvas.dataset.hi = String(hi);
          if (clickable) {
            canvas.classList.add("clickable");
            canvas.addEventListener("click", (event) => {
              const box = canvas.getBoundingClientRect();
              const j = Math.min(w - 1, Math.floor(((event.clientX - box.left) * w) / box.width));
              const i = Math.min(h - 1, Math.floor(((event.clientY - box.top) * h) / box.height));
              showUnit(a.model, layer.index, k * h * w + i * w + j);
            });
          }
          if (layer.index === firstConv(a) && a.filters) {
            const f = a.filters[k].flat(Infinity);
            const m = maxAbs(a.filters.flat(Infinity));
            const kh = a.filters[k][0].length, kw = a.filters[k][0][0].length;
            const filter = image(kh * a.filters[k].length, kw, f, (v) => diverging(v, m), "filter");
            filter.title = `filter ${k}`;
            cell.append(filter);
          }
          cell.append(canvas);
          maps.append(cell);
        }
        row.append(maps);
      } else {
        const n = flat.length;
        const cols = Math.min(n, 64);
        const m = maxAbs(flat);
        const strip = image(Math.ceil(n / cols), cols, flat.concat(Array(Math.ceil(n / cols) * cols - n).fill(0)), (v) => diverging(v, m), "strip");
        strip.dataset.max = String(m);
        strip.dataset.cols = String(cols);
        strip.style.width = `${Math.min(640, cols * 10)}px`; // cells of 10 px at most
        strip.style.aspectRatio = `${cols} / ${Math.ceil(n / cols)}`;
        if (clickable) {
          strip.classList.add("clickable");
          strip.addEventListener("click", (event) => {
            const box = strip.getBoundingClientRect();
            const j = Math.min(cols - 1, Math.floor(((event.clientX - box.left) * cols) / box.width));
            const i = Math.floor(((event.clientY - box.top) * strip.height) / box.height);
            const index = i * cols + j;
            if (index < n) showUnit(a.model, layer.index, index);
          });
        }
        row.append(strip);
        if (n <= 10 && layer.index === a.layers.length - 1) {
          row.append(el("div", "what", flat.map((v, i) => `${a.class_names[i]}: ${v.toFixed(3)}`).join(" · ")));
        }
      }
      return row;
    });
    layersBox.replaceChildren(...rows);
  }

  function firstConv(a) {
    const first = a.layers.find((l) => l.type === "Conv2D");
    return first ? first.index : -1;
  }

  function num(v) {
    return Number(v).toPrecision(6);
  }

  async function showUnit(model, layer, index) {
    const query = { model, unit: `${layer}:${index}` };
    if (target !== null) query.target = target;
    let a;
    try {
      a = await send(query);
    } catch (e) {
      note.textContent = e.message;
      return;
    }
    const u = a.unit;
    const table = el("table");
    const head = el("tr");
    for (const h of ["input", "weight", "× input value", "= product"]) head.append(el("th", "", h));
    table.append(head);
    for (const t of u.terms) {
      const tr = el("tr", "term");
      tr.append(el("td", "", `[${t.input.join(", ")}]`), el("td", "w", num(t.weight)), el("td", "x", num(t.input_value)), el("td", "p", num(t.product)));
      table.append(tr);
    }
    const add = (label, value, cls) => {
      const tr = el("tr", cls);
      const th = el("td", "", label);
      th.colSpan = 3;
      tr.append(th, el("td", "v", num(value)));
      table.append(tr);
    };
    add(`+ the other ${u.count - u.terms.length} terms`, u.rest, "rest");
    add("+ bias", u.bias, "bias");
    add("= pre-activation", u.pre_activation, "pre");
    if (u.batch_norm) add(`BatchNorm: × ${num(u.batch_norm.scale)} + ${num(u.batch_norm.shift)}`, u.batch_norm.value, "bn");
    if (u.pool) add(`max-pool window [${u.pool.position}]: ${u.pool.is_max ? "this unit is its maximum" : "another unit is its maximum"}`, Math.max(...u.pool.window.flat()), "pool");
    if (u.activation) add(`${u.activation.type}`, u.activation.value, "act");
    const where = u.position.length ? `channel ${u.channel} at (${u.position.join(", ")})` : `unit ${u.index}`;
    unitBox.replaceChildren(el("h3", "", `${model}: layer ${u.layer} ${u.type}, ${where}`), table);
    unitBox.dataset.layer = String(u.layer);
    unitBox.dataset.index = String(u.index);
    unitBox.dataset.model = model;
    unitBox.hidden = false;
  }

  // The models to pick from: those answering now (the workspace's, or an experiment's, named
  // conv@NAME) first, then the workspace's, so two experiments can be compared.
  let answering = [];
  let workspace = [];
  function setModels() {
    const names = [...new Set([...answering, ...workspace])];
    const current = [...modelPick.options].map((o) => o.value);
    if (names.join() === current.join()) return;
    const keep = modelPick.value;
    const keepCompare = comparePick.value;
    modelPick.replaceChildren(...names.map((n) => new Option(n, n)));
    const conv = answering.find((n) => n.split("@")[0] === "conv");
    modelPick.value = answering.includes(keep) ? keep : conv || names[0];
    comparePick.replaceChildren(new Option("—", ""), ...names.map((n) => new Option(n, n)));
    comparePick.value = names.includes(keepCompare) ? keepCompare : "";
  }

  document.addEventListener("answer", (event) => {
    last = { body: event.detail.body, type: event.detail.type };
    answering = event.detail.models.map((m) => m.name);
    setModels();
    refresh();
  });
  document.addEventListener("models", (event) => {
    workspace = event.detail.map((m) => m.name);
    setModels();
  });
  document.addEventListener("cleared", () => {
    last = null;
    target = null;
    attributions.replaceChildren();
    layersBox.replaceChildren();
    unitBox.hidden = true;
  });
  document.addEventListener("pick-class", (event) => {
    target = event.detail.index;
    if (!details.open) details.open = true; // toggle -> refresh
    else refresh();
  });
  details.addEventListener("toggle", refresh);
  for (const pick of [modelPick, comparePick]) pick.addEventListener("change", refresh);
  methodPick.addEventListener("change", () => {
    const got = [modelPick.value, comparePick.value].filter((n) => n && answers[n]).map((n) => answers[n]);
    if (got.length) showAttributions([...new Set(got)]);
  });
})();
