// The lab: train a variant as a real DVC experiment, watch its curves as its epochs end, compare
// experiments (params, metrics, curves, confusion matrices), and apply or push one. Everything
// shown is what GET /api/experiments says (DVC's own record); starting, cancelling, applying and
// pushing need the token the server printed (a cookie once its URL is opened). Plain JavaScript.
"use strict";

(() => {
  const details = document.getElementById("lab");
  const form = document.getElementById("lab-form");
  const statusLine = document.getElementById("lab-status");
  const table = document.getElementById("experiments");
  const curvesBox = document.getElementById("lab-curves");
  const compareBox = document.getElementById("lab-compare");
  const SCHEDULES = ["constant", "step", "exponential", "cosine", "onecycle"];
  const COLOURS = ["#2f6fde", "#d0421b", "#1b7f3b", "#8e44ad", "#b8860b", "#0f8b8d"];

  let about = null; // GET api/lab: settings, caps, authorized
  let experiments = [];
  let picked = new Set(); // names ticked for comparison
  let sortKey = "name";
  let sortUp = true;
  let timer = null;
  let doneBefore = new Set();

  function field(label, input) {
    const box = el("label", "field");
    box.append(el("span", "", label), input);
    return box;
  }

  function input(key, value, type = "text") {
    const node = el("input");
    node.name = key;
    node.type = type;
    if (type === "checkbox") node.checked = Boolean(value);
    else node.value = value === null ? "" : Array.isArray(value) ? value.join(", ") : String(value);
    return node;
  }

  function select(key, options, value) {
    const node = el("select");
    node.name = key;
    node.replaceChildren(...options.map((o) => new Option(o, o)));
    node.value = value;
    return node;
  }

  // The form for one model, seeded from the workspace's params.yaml (GET api/lab).
  function buildForm(kind) {
    const s = about.settings;
    const t = (k) => s[`train_${kind}.${k}`];
    const rows = [
      field("Name (optional)", input("name", "")),
      field("Model", select("model", ["dense", "conv"], kind)),
      field("Dataset", select("fetch.dataset", ["mnist", "fashion_mnist"], s["fetch.dataset"])),
      field("Training images (empty: all)", input(`preprocess.${kind}.train_size`, s[`preprocess.${kind}.train_size`], "number")),
      field(`Epochs (at most ${about.caps.max_epochs})`, input(`train_${kind}.epochs`, t("epochs"), "number")),
      field("Batch size", input(`train_${kind}.batch_size`, t("batch_size"), "number")),
      field("Learning rate", input(`train_${kind}.lr`, t("lr"))),
      field("Schedule", select(`train_${kind}.schedule`, SCHEDULES, t("schedule"))),
      field("Optimizer", select(`train_${kind}.optimizer`, ["adam", "sgd"], t("optimizer"))),
      field("Hidden widths", input(`train_${kind}.hidden`, t("hidden"))),
    ];
    if (kind === "conv") {
      rows.push(field("Channels", input("train_conv.channels", t("channels"))));
      rows.push(field("Kernel size", input("train_conv.kernel_size", t("kernel_size"), "number")));
    }
    rows.push(
      field("Dropout", input(`train_${kind}.dropout`, t("dropout"))),
      field("BatchNorm", input(`train_${kind}.batch_norm`, t("batch_norm"), "checkbox")),
      field("Shift up to (px)", input(`train_${kind}.augment_shift`, t("augment_shift"), "number")),
      field("Mirror (flips)", input(`train_${kind}.augment_flip`, t("augment_flip"), "checkbox")),
    );
    const button = el("button", "train", "Train");
    button.type = "submit";
    button.id = "train";
    button.disabled = !about.authorized;
    form.replaceChildren(...rows, button);
    form.elements.model.addEventListener("change", (e) => buildForm(e.target.value));
  }

  // The form's values as the dotted keys and typed values params.yaml holds.
  function settings() {
    const out = {};
    for (const node of form.elements) {
      if (!node.name || node.name === "name" || node.name === "model") continue;
      const before = about.settings[node.name];
      let value;
      if (node.type === "checkbox") value = node.checked;
      else if (Array.isArray(before)) value = node.value.split(",").map((v) => v.trim()).filter(Boolean).map(Number);
      else if (node.value.trim() === "") value = null;
      else if (typeof before === "number" || before === null) value = Number(node.value);
      else value = node.value.trim();
      if (JSON.stringify(value) !== JSON.stringify(before)) out[node.name] = value;
    }
    return out;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const params = settings();
    const kind = form.elements.model.value;
    // Nothing changed: the workspace's settings again (a rerun gives the same bits).
    if (!Object.keys(params).length) params[`train_${kind}.epochs`] = about.settings[`train_${kind}.epochs`];
    const name = form.elements.name.value.trim() || undefined;
    statusLine.textContent = "starting…";
    const response = await fetch("api/experiments", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name, params }),
    });
    const answer = await response.json();
    statusLine.textContent = response.ok ? `queued ${answer.name}` : answer.error;
    if (response.ok) { picked.add(answer.name); poll(); }
  });

  async function act(exp, verb) {
    const questions = {
      cancel: `Cancel ${exp.name}?`,
      apply: `Apply ${exp.name}? The workspace's params.yaml, models and reports become this experiment's (dvc exp apply).`,
      push: `Push ${exp.name} to the git remote 'origin' (dvc exp push)?`,
    };
    if (!window.confirm(questions[verb])) return;
    const url = verb === "cancel" ? `api/experiments/${encodeURIComponent(exp.name)}` : `api/experiments/${encodeURIComponent(exp.name)}/${verb}`;
    const response = await fetch(url, { method: verb === "cancel" ? "DELETE" : "POST" });
    const answer = await response.json();
    statusLine.textContent = response.ok ? `${verb}: ${exp.name} done` : answer.error;
    poll();
  }

  function metric(exp, kind, name) {
    const m = (exp.metrics || {})[kind];
    return m && typeof m[name] === "number" ? m[name] : null;
  }

  const COLUMNS = [
    ["name", "experiment", (e) => e.name],
    ["state", "state", (e) => e.state],
    ["params", "params that differ", (e) => Object.entries(e.params).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join("\n")],
    ["dense", "dense acc.", (e) => metric(e, "dense", "accuracy")],
    ["conv", "conv acc.", (e) => metric(e, "conv", "accuracy")],
    // the traced digits by writers MNIST did not have (docs/pipeline.md): MNIST models only
    ["dense-robust", "dense robust.", (e) => metric(e, "dense", "robustness")],
    ["conv-robust", "conv robust.", (e) => metric(e, "conv", "robustness")],
  ];

  function showTable() {
    const rows = [...experiments].sort((a, b) => {
      const f = COLUMNS.find((c) => c[0] === sortKey)[2];
      const x = f(a), y = f(b);
      const order = x === y ? 0 : x === null ? 1 : y === null ? -1 : x < y ? -1 : 1;
      return sortUp ? order : -order;
    });
    const head = el("tr");
    head.append(el("th", "", "compare"));
    for (const [key, label] of COLUMNS) {
      const th = el("th", "sortable", label + (sortKey === key ? (sortUp ? " ▲" : " ▼") : ""));
      th.addEventListener("click", () => { sortUp = sortKey === key ? !sortUp : true; sortKey = key; showTable(); });
      head.append(th);
    }
    head.append(el("th", "", ""));
    const body = rows.map((e) => {
      const tr = el("tr", `exp ${e.state}`);
      tr.dataset.name = e.name;
      tr.dataset.state = e.state;
      const tick = el("input");
      tick.type = "checkbox";
      tick.checked = picked.has(e.name);
      tick.addEventListener("change", () => { tick.checked ? picked.add(e.name) : picked.delete(e.name); showCurves(); showCompare(); });
      const td = el("td");
      td.append(tick);
      tr.append(td);
      for (const [key, , f] of COLUMNS) {
        let text = f(e);
        if (key === "state" && e.state === "running" && e.elapsed !== null) text = `running ${Math.round(e.elapsed)} s`;
        if (key === "state" && e.state === "failed" && e.error) text = `failed: ${e.error}`;
        if (key !== "name" && key !== "state" && key !== "params" && text !== null) text = `${(100 * text).toFixed(2)}%`;
        tr.append(el("td", key, text === null ? "" : String(text)));
      }
      const actions = el("td", "actions");
      const button = (label, verb) => {
        const b = el("button", verb, label);
        b.type = "button";
        b.disabled = !about.authorized;
        b.addEventListener("click", () => act(e, verb));
        actions.append(b);
      };
      if (e.state === "queued" || e.state === "running") button("Cancel", "cancel");
      if (e.state === "done") { button("Apply", "apply"); button("Push", "push"); }
      tr.append(actions);
      return tr;
    });
    table.replaceChildren(head, ...body);
  }

  // Validation accuracy per epoch: each picked or running experiment, dense solid, conv dashed.
  function showCurves() {
    const shown = experiments.filter((e) => picked.has(e.name) || e.state === "running");
    const canvas = el("canvas", "curves");
    canvas.width = 560;
    canvas.height = 240;
    const ctx = canvas.getContext("2d");
    const pad = { l: 44, r: 10, t: 10, b: 28 };
    const series = [];
    const points = {};
    shown.forEach((e, i) => {
      points[e.name] = {};
      for (const kind of ["dense", "conv"]) {
        const rows = ((e.curves || {})[kind] || {}).val_accuracy || [];
        points[e.name][kind] = rows.length;
        if (rows.length) series.push({ e, kind, rows, colour: COLOURS[i % COLOURS.length] });
      }
    });
    curvesBox.dataset.points = JSON.stringify(points);
    const all = series.flatMap((s) => s.rows);
    const maxEpoch = Math.max(2, ...all.map((r) => r[0]));
    const lo = all.length ? Math.min(...all.map((r) => r[1])) : 0;
    const ymin = Math.max(0, Math.floor(lo * 20) / 20), ymax = 1;
    const x = (ep) => pad.l + ((ep - 1) / (maxEpoch - 1)) * (canvas.width - pad.l - pad.r);
    const y = (v) => canvas.height - pad.b - ((v - ymin) / (ymax - ymin || 1)) * (canvas.height - pad.t - pad.b);
    ctx.font = "11px system-ui, sans-serif";
    ctx.strokeStyle = "#c9d0d6";
    ctx.fillStyle = "#56606b";
    for (let k = 0; k <= 4; k++) {
      const v = ymin + ((ymax - ymin) * k) / 4;
      ctx.beginPath(); ctx.moveTo(pad.l, y(v)); ctx.lineTo(canvas.width - pad.r, y(v)); ctx.stroke();
      ctx.fillText(v.toFixed(2), 4, y(v) + 4);
    }
    ctx.fillText("epoch", canvas.width / 2, canvas.height - 6);
    for (let ep = 1; ep <= maxEpoch; ep++) ctx.fillText(String(ep), x(ep) - 3, canvas.height - pad.b + 14);
    for (const s of series) {
      ctx.strokeStyle = ctx.fillStyle = s.colour;
      ctx.setLineDash(s.kind === "conv" ? [6, 4] : []);
      ctx.beginPath();
      s.rows.forEach(([ep, v], i) => (i ? ctx.lineTo(x(ep), y(v)) : ctx.moveTo(x(ep), y(v))));
      ctx.stroke();
      for (const [ep, v] of s.rows) { ctx.beginPath(); ctx.arc(x(ep), y(v), 3, 0, 2 * Math.PI); ctx.fill(); }
    }
    ctx.setLineDash([]);
    const legend = el("div", "legend-lines");
    for (const s of series) {
      const item = el("span", "", `${s.e.name} ${s.kind} ${s.kind === "conv" ? "(dashed)" : ""}`);
      item.style.color = s.colour;
      legend.append(item);
    }
    curvesBox.replaceChildren(el("div", "caption", "validation accuracy per epoch"), canvas, legend);
  }

  // Two or more picked experiments: their metrics side by side, and their confusion matrices.
  async function showCompare() {
    const chosen = experiments.filter((e) => picked.has(e.name) && e.state === "done");
    if (chosen.length < 1) { compareBox.replaceChildren(); return; }
    const metrics = el("table", "metrics");
    const head = el("tr");
    head.append(el("th", "", "metric"), ...chosen.map((e) => el("th", "", e.name)));
    metrics.append(head);
    for (const kind of ["dense", "conv"]) {
      for (const m of ["accuracy", "robustness", "loss", "macro_f1"]) {
        const tr = el("tr");
        tr.append(el("td", "", `${kind} ${m}`), ...chosen.map((e) => el("td", "", ((e.metrics || {})[kind] || {})[m]?.toFixed(4) ?? "")));
        metrics.append(tr);
      }
    }
    const matrices = el("div", "matrices");
    for (const e of chosen.slice(0, 2)) {
      const response = await fetch(`api/experiments/${encodeURIComponent(e.name)}/confusion`);
      if (!response.ok) continue;
      const cm = await response.json();
      for (const [kind, { classes, matrix }] of Object.entries(cm)) {
        const t = el("table", "confusion");
        t.dataset.experiment = e.name;
        t.dataset.model = kind;
        const max = Math.max(...matrix.flat());
        t.append(el("caption", "", `${e.name}: ${kind} (rows actual, columns predicted)`));
        const hr = el("tr");
        hr.append(el("th"), ...classes.map((c) => el("th", "", c)));
        t.append(hr);
        matrix.forEach((row, i) => {
          const tr = el("tr");
          tr.append(el("th", "", classes[i]), ...row.map((v, j) => {
            const td = el("td", i === j ? "diag" : "", String(v));
            const a = v / (max || 1);
            td.style.background = i === j ? `rgba(27,127,59,${a})` : `rgba(208,66,27,${Math.min(1, 8 * a)})`;
            return td;
          }));
          t.append(tr);
        });
        matrices.append(t);
      }
    }
    compareBox.replaceChildren(metrics, matrices);
  }

  async function poll() {
    clearTimeout(timer);
    try {
      const response = await fetch("api/experiments");
      const body = await response.json();
      if (!response.ok) throw new Error(body.error);
      experiments = body.experiments;
      const done = new Set(experiments.filter((e) => e.state === "done").map((e) => e.name));
      const fresh = [...done].some((n) => !doneBefore.has(n));
      doneBefore = done;
      showTable();
      showCurves();
      if (fresh) { showCompare(); document.dispatchEvent(new CustomEvent("revisions-changed")); }
      document.body.dataset.labPolls = String(Number(document.body.dataset.labPolls || 0) + 1);
    } catch (e) {
      statusLine.textContent = e.message;
    }
    const busy = experiments.some((e) => e.state === "queued" || e.state === "running");
    if (details.open) timer = setTimeout(poll, busy ? 1500 : 10000);
  }

  details.addEventListener("toggle", async () => {
    if (!details.open) { clearTimeout(timer); return; }
    if (about === null) {
      const response = await fetch("api/lab");
      if (!response.ok) { statusLine.textContent = "no lab on this server (start it with --repo)"; return; }
      about = await response.json();
      document.getElementById("lab-token").hidden = about.authorized;
      buildForm("dense");
    }
    poll();
  });
})();
