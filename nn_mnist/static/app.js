// The draw-a-digit page: strokes on a canvas, sent as PNG to /api/predict (the server prepares
// them as MNIST digits with the same function as `nn-mnist predict`), each model's answer as
// bars, and the 28x28 image the models saw. Plain JavaScript, no libraries, nothing remote.
"use strict";

const pad = document.getElementById("pad");
const ink = pad.getContext("2d");
const preview = document.getElementById("preview");
const results = document.getElementById("results");
const statusLine = document.getElementById("status");
const footer = document.getElementById("models");
// The pen's width in px on the 280 px canvas (the "Pen" picker): 22 is about MNIST's stroke once
// the digit is scaled to 20 px; a thin or thick pen shows how the models take other writers' pens.
const PENS = { thin: 10, medium: 22, thick: 36 };
const penPicker = document.getElementById("pen");
let STROKE = PENS[penPicker.value] || PENS.medium;
penPicker.addEventListener("change", () => { STROKE = PENS[penPicker.value] || PENS.medium; });

let drawn = false; // anything on the pad?
let last = null; // the previous point of the stroke being drawn
let sent = 0; // requests sent; an answer older than the newest one shown is dropped
let shown = 0; // the request whose answer is on the page
let timer = null;
let rev = ""; // "" : the workspace's models; else an experiment or commit (GET api/revisions)
let lastSent = null; // {body, type}: sent again when another revision is picked
const revPick = document.getElementById("rev");

function clearPad() {
  ink.fillStyle = "#fff";
  ink.fillRect(0, 0, pad.width, pad.height);
  drawn = false;
  results.replaceChildren();
  preview.getContext("2d").clearRect(0, 0, 28, 28);
  statusLine.textContent = "";
  document.body.dataset.answers = "0";
  shown = ++sent; // answers to anything sent before are dropped
  delete document.body.dataset.busy;
  document.dispatchEvent(new CustomEvent("cleared"));
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return {
    x: ((event.clientX - box.left) * pad.width) / box.width,
    y: ((event.clientY - box.top) * pad.height) / box.height,
  };
}

function segment(a, b) {
  if (a.x === b.x && a.y === b.y) { // a dot (a tap): a zero-length line draws nothing
    ink.fillStyle = "#000";
    ink.beginPath();
    ink.arc(a.x, a.y, STROKE / 2, 0, 2 * Math.PI);
    ink.fill();
    drawn = true;
    return;
  }
  ink.strokeStyle = "#000";
  ink.lineWidth = STROKE;
  ink.lineCap = "round";
  ink.lineJoin = "round";
  ink.beginPath();
  ink.moveTo(a.x, a.y);
  ink.lineTo(b.x, b.y);
  ink.stroke();
  drawn = true;
}

pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  last = point(event);
  segment(last, last);
});

pad.addEventListener("pointermove", (event) => {
  if (last === null) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of events.length ? events : [event]) {
    const p = point(e);
    segment(last, p);
    last = p;
  }
  if (timer === null) timer = setTimeout(() => { timer = null; predictPad(); }, 250);
});

function endStroke() {
  if (last === null) return;
  last = null;
  clearTimeout(timer);
  timer = null;
  predictPad();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

document.getElementById("clear").addEventListener("click", clearPad);

document.getElementById("file").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  event.target.value = "";
  if (!file) return;
  clearPad();
  try { // show the upload on the pad (the server gets the file itself, at full size)
    const bitmap = await createImageBitmap(file);
    const scale = Math.min(pad.width / bitmap.width, pad.height / bitmap.height);
    const w = bitmap.width * scale, h = bitmap.height * scale;
    ink.drawImage(bitmap, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
  } catch (e) { /* the browser cannot show it; the server says what is wrong with it */ }
  send(file, file.type || "application/octet-stream", ++sent);
});

function predictPad() {
  if (!drawn) return;
  const id = ++sent;
  document.body.dataset.busy = "1"; // until the newest answer is on the page
  pad.toBlob((blob) => send(blob, "image/png", id), "image/png");
}

async function send(body, type, id) {
  document.body.dataset.busy = "1";
  lastSent = { body, type };
  let answer;
  try {
    const url = rev ? `api/predict?rev=${encodeURIComponent(rev)}` : "api/predict";
    const response = await fetch(url, { method: "POST", headers: { "Content-Type": type }, body });
    answer = await response.json();
    if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  } catch (e) {
    if (id === sent) {
      statusLine.textContent = e.message;
      delete document.body.dataset.busy;
    }
    return;
  }
  if (id <= shown) return; // a newer answer is already on the page, or the pad was cleared
  shown = id;
  statusLine.textContent = "";
  showImage(answer.image);
  showModels(answer.models);
  showAnswers(answer.models);
  // "Look inside" (inside.js) explains the same body.
  document.dispatchEvent(new CustomEvent("answer", { detail: { body, type, models: answer.models } }));
  document.body.dataset.answers = String(Number(document.body.dataset.answers || 0) + 1);
  if (id === sent) delete document.body.dataset.busy;
}

function showImage(rows) {
  const ctx = preview.getContext("2d");
  const img = ctx.createImageData(28, 28);
  rows.flat().forEach((v, i) => {
    const g = Math.round(v * 255);
    img.data.set([g, g, g, 255], 4 * i);
  });
  ctx.putImageData(img, 0, 0);
}

function showAnswers(models) {
  results.replaceChildren(...models.map((m) => {
    const box = el("div", "model");
    box.dataset.model = m.name;
    box.dataset.prediction = m.prediction;
    const best = m.probabilities.indexOf(Math.max(...m.probabilities));
    box.append(
      el("h2", "", `${m.name} model`),
      el("div", "answer", m.prediction),
      ...m.probabilities.map((p, i) => {
        const bar = el("button", i === best ? "bar top" : "bar");
        bar.type = "button";
        bar.title = `look inside: what makes ${m.name} say “${m.class_names[i]}”`;
        bar.dataset.index = String(i);
        bar.addEventListener("click", () => document.dispatchEvent(new CustomEvent("pick-class", { detail: { model: m.name, index: i } })));
        const track = el("div", "track");
        const fill = el("div", "fill");
        fill.style.width = `${(100 * p).toFixed(1)}%`;
        track.append(fill);
        bar.append(el("span", "name", m.class_names[i]), track, el("span", "pct", `${(100 * p).toFixed(1)}%`));
        return bar;
      }),
    );
    return box;
  }));
}

function showModels(models) {
  const fashion = models.length && models[0].dataset === "fashion_mnist";
  document.querySelector("h1").textContent = fashion ? "Draw or upload a clothing item" : "Draw a digit";
  footer.replaceChildren(el("span", "", "Serving: "), ...models.flatMap((m, i) => {
    const acc = m.accuracy === null ? "accuracy unknown" : `test accuracy ${(100 * m.accuracy).toFixed(2)}%`;
    const r = m.revision;
    const from = r ? `${r.kind} ${r.name}, rev ${r.rev.slice(0, 7)}, ` : "";
    const parts = [el("span", "", `${i ? "; " : ""}${m.name}: ${m.file} (${from}${m.dataset}, ${m.runtime}, ${acc}, md5 `),
      el("code", "", (m.md5 || "").slice(0, 12)), el("span", "", ", sha256 "),
      el("code", "", m.sha256.slice(0, 12)), el("span", "", ")")];
    return parts;
  }));
}

async function refreshRevisions() {
  try {
    const response = await fetch("api/revisions");
    const body = await response.json();
    if (!response.ok) return; // no repository served: the picker stays hidden
    const options = [new Option("workspace", "")].concat(body.revisions.map((r) =>
      new Option(r.kind === "experiment" ? `${r.name} (experiment of ${r.baseline})` : `${r.name} (commit)`, r.name)));
    const keep = revPick.value;
    revPick.replaceChildren(...options);
    revPick.value = [...revPick.options].some((o) => o.value === keep) ? keep : "";
    document.getElementById("revisions").hidden = false;
  } catch (e) { /* the server is unreachable: refreshModels says so */ }
}

revPick.addEventListener("change", () => {
  rev = revPick.value;
  if (lastSent !== null && (drawn || results.childElementCount)) send(lastSent.body, lastSent.type, ++sent);
});

async function refreshModels() {
  try {
    const response = await fetch("api/models");
    const body = await response.json();
    if (response.ok) {
      if (!rev) showModels(body.models);
      document.dispatchEvent(new CustomEvent("models", { detail: body.models }));
    }
    else footer.textContent = body.error;
  } catch (e) {
    footer.textContent = "server unreachable";
  }
}

clearPad();
refreshModels();
refreshRevisions();
setInterval(refreshModels, 5000); // a model reloaded on the server shows here without a reload
setInterval(refreshRevisions, 15000); // a finished experiment appears in the picker
document.addEventListener("revisions-changed", refreshRevisions); // the lab saw one finish
