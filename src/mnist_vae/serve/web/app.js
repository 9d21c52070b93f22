// mnist-vae explorer: plain JavaScript, no build step, no network beyond this server.
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
let INFO = null;

function showError(msg) {
  const el = $("status");
  el.textContent = msg;
  el.hidden = !msg;
}

async function api(path, body) {
  const opts = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const res = await fetch(path, opts);
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(`${path}: ${data.error || res.status}`);
  return data;
}

// Latest wins: while a request is in flight, only the newest pending argument is sent next,
// so dragging a slider never queues a backlog of stale decodes.
function coalesced(fn) {
  let busy = false, pending = null;
  async function pump() {
    busy = true;
    while (pending !== null) {
      const arg = pending; pending = null;
      try { await fn(arg); } catch (e) { showError(e.message); }
    }
    busy = false;
  }
  return (arg) => { pending = arg; if (!busy) pump(); };
}

function bytesOf(b64) {
  const s = atob(b64), out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function bump(canvas) { canvas.dataset.rendered = String(Number(canvas.dataset.rendered || 0) + 1); }

function putDigit(ctx, b64, x0, y0) {
  const px = bytesOf(b64), img = ctx.createImageData(28, 28);
  for (let i = 0; i < 784; i++) {
    img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = px[i];
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, x0, y0);
}

function drawDigit(canvas, b64) {
  putDigit(canvas.getContext("2d"), b64, 0, 0);
  bump(canvas);
}

function drawStrip(canvas, images, cols) {
  const rows = Math.ceil(images.length / cols);
  canvas.width = 28 * cols; canvas.height = 28 * rows;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#000"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  images.forEach((b64, i) => putDigit(ctx, b64, 28 * (i % cols), 28 * Math.floor(i / cols)));
  bump(canvas);
}

const fmt = (v, d = 2) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));
const zText = (z) => "z = [" + z.slice(0, 16).map((v) => fmt(v)).join(", ") + (z.length > 16 ? `, … (${z.length} dims)` : "") + "]";
const clampIndex = (v) => Math.max(0, Math.min(INFO.n_test - 1, Math.floor(Number(v) || 0)));
const clampZ = (v) => Math.max(-INFO.z_limit, Math.min(INFO.z_limit, v));

function randomIndex(label) {
  if (label === "" || label === undefined) return Math.floor(Math.random() * INFO.n_test);
  const hits = [];
  for (let i = 0; i < INFO.labels.length; i++) if (INFO.labels[i] === label) hits.push(i);
  return hits.length ? hits[Math.floor(Math.random() * hits.length)] : 0;
}

// --- samples ------------------------------------------------------------------------------------

async function loadSamples() {
  const seed = Math.floor(Number($("seed").value));
  const n = Number($("count").value);
  const data = await api("/api/samples", { seed, n });
  drawStrip($("samples-grid"), data.images, 8);
}

function initSamples() {
  const run = () => loadSamples().catch((e) => showError(e.message));
  $("new-samples").addEventListener("click", run);
  $("random-seed").addEventListener("click", () => { $("seed").value = Math.floor(Math.random() * 1e6); run(); });
  $("seed").addEventListener("keydown", (e) => { if (e.key === "Enter") run(); });
  $("count").addEventListener("change", run);
  return loadSamples();
}

// --- latent sliders / 2-D plane -----------------------------------------------------------------

let zCur = [], zStart = [];
const decodeLatent = coalesced(async (z) => {
  const data = await api("/api/decode", { z });
  drawDigit($("latent-image"), data.image);
  $("latent-z").textContent = zText(z);
});

// One slider per shown dimension, in INFO.slider_dims order: the active dimensions first, then the
// inactive ones (Var over the test digits of μ_d below the threshold: the decoder ignores them),
// greyed under a heading that says so. Each slider's id names its dimension: #z-<d>.
function sliderRow(d) {
  const active = INFO.active[d];
  const name = document.createElement("span"); name.textContent = `z${d + 1}`;
  const input = document.createElement("input");
  Object.assign(input, { type: "range", min: INFO.slider_min[d], max: INFO.slider_max[d], step: 0.01, id: `z-${d}` });
  input.dataset.dim = String(d);
  input.dataset.active = active ? "1" : "0";
  input.setAttribute("aria-label", `latent dimension ${d + 1}` + (active ? "" : " (inactive: moves nothing)"));
  const val = document.createElement("span"); val.className = "val"; val.id = `z-${d}-val`;
  const sig = (v) => Number(v).toPrecision(2);
  const title = `z${d + 1}: Var of μ over the test digits ${sig(INFO.latent_variance[d])}, KL ${sig(INFO.latent_kl[d])} nats`;
  for (const el of [name, input, val]) {
    el.title = title;
    if (!active) el.classList.add("inactive");
  }
  input.addEventListener("input", () => {
    zCur[d] = Number(input.value);
    val.textContent = fmt(zCur[d]);
    decodeLatent(zCur.slice());
  });
  return [name, input, val];
}

function sliderGroup(id, text) {
  const head = document.createElement("div");
  head.className = "slider-group"; head.id = id; head.textContent = text;
  return head;
}

function buildSliders() {
  const box = $("sliders");
  box.innerHTML = "";
  const shown = INFO.slider_dims, nActive = shown.filter((d) => INFO.active[d]).length;
  if (nActive) box.append(sliderGroup("active-head", `active (${INFO.n_active} of ${INFO.latent_dim}): these carry the digit`));
  shown.forEach((d, k) => {
    if (k === nActive) {
      box.append(sliderGroup("inactive-head", `inactive: moves nothing (Var of μ over the test digits < ${INFO.active_threshold}; the decoder ignores it)`));
    }
    box.append(...sliderRow(d));
  });
}

function syncSliders() {
  for (const d of INFO.slider_dims) {
    $(`z-${d}`).value = zCur[d];
    $(`z-${d}-val`).textContent = fmt(zCur[d]);
  }
}

// The plane spans [-R, R]^2, row 0 at the top = largest z2, like the server's manifold image.
function planeToZ(px, py, w, h) {
  const R = INFO.manifold.range;
  return [clampZ(-R + (2 * R * px) / w), clampZ(R - (2 * R * py) / h)];
}

function drawPlaneMarker() {
  const c = $("plane"), ctx = c.getContext("2d"), R = INFO.manifold.range;
  ctx.clearRect(0, 0, c.width, c.height);
  const x = ((zCur[0] + R) / (2 * R)) * c.width, y = ((R - zCur[1]) / (2 * R)) * c.height;
  ctx.strokeStyle = "rgba(255,80,60,0.95)"; ctx.lineWidth = 2;
  ctx.beginPath(); ctx.arc(x, y, 9, 0, 2 * Math.PI); ctx.stroke();
  ctx.beginPath(); ctx.moveTo(x - 15, y); ctx.lineTo(x + 15, y); ctx.moveTo(x, y - 15); ctx.lineTo(x, y + 15); ctx.stroke();
  bump(c);
}

function initPlane() {
  $("plane-wrap").hidden = false;
  $("sliders").hidden = true;
  $("plane-bg").src = "/api/manifold.png";
  const R = INFO.manifold.range;
  $("plane-note").textContent = `background: decodings of a ${INFO.manifold.side}×${INFO.manifold.side} grid over [−${R}, ${R}]²; horizontal z1, vertical z2`;
  const c = $("plane");
  let dragging = false;
  const move = (e) => {
    const r = c.getBoundingClientRect();
    zCur = planeToZ(e.clientX - r.left, e.clientY - r.top, r.width, r.height);
    drawPlaneMarker();
    decodeLatent(zCur.slice());
  };
  c.addEventListener("pointerdown", (e) => { dragging = true; c.setPointerCapture(e.pointerId); move(e); });
  c.addEventListener("pointermove", (e) => { if (dragging) move(e); });
  c.addEventListener("pointerup", () => { dragging = false; });
}

async function setStart(index) {
  const i = clampIndex(index);
  $("start-index").value = i;
  const d = await api(`/api/test/${i}`);
  drawDigit($("start-image"), d.image);
  $("start-caption").textContent = `test digit #${i} (label ${d.label})`;
  zStart = d.mu.slice(); zCur = d.mu.slice();
  if (INFO.manifold) drawPlaneMarker(); else syncSliders();
  decodeLatent(zCur.slice());
}

function initLatent() {
  $("latent-hint").textContent = INFO.manifold
    ? "click or drag on the plane of the 2-D latent space"
    : INFO.latent_dim > INFO.sliders
      ? `${INFO.sliders} of ${INFO.latent_dim} dimensions, active ones first; the rest stay at the digit's code`
      : `one slider per latent dimension (${INFO.latent_dim}), active ones first`;
  const sel = $("start-class");
  for (let c = 0; c < 10; c++) sel.add(new Option(String(c), String(c)));
  if (INFO.manifold) initPlane(); else buildSliders();
  const go = (i) => setStart(i).catch((e) => showError(e.message));
  $("start-index").max = INFO.n_test - 1;
  $("start-index").addEventListener("change", () => go($("start-index").value));
  $("start-random").addEventListener("click", () => go(randomIndex(sel.value)));
  sel.addEventListener("change", () => go(randomIndex(sel.value)));
  $("start-reset").addEventListener("click", () => {
    zCur = zStart.slice();
    if (INFO.manifold) drawPlaneMarker(); else syncSliders();
    decodeLatent(zCur.slice());
  });
  return setStart(0);
}

// --- interpolation ------------------------------------------------------------------------------

const interp = { a: null, b: null };
const decodeInterp = coalesced(async (t) => {
  if (!interp.a || !interp.b) return;
  const z = interp.a.mu.map((v, k) => clampZ((1 - t) * v + t * interp.b.mu[k]));
  const data = await api("/api/decode", { z });
  drawDigit($("interp-image"), data.image);
});

async function loadPair() {
  const a = clampIndex($("interp-a").value), b = clampIndex($("interp-b").value);
  $("interp-a").value = a; $("interp-b").value = b;
  const [da, db, strip] = await Promise.all([api(`/api/test/${a}`), api(`/api/test/${b}`), api("/api/interpolate", { a, b, steps: 10 })]);
  interp.a = da; interp.b = db;
  drawDigit($("interp-a-img"), da.image); $("interp-a-cap").textContent = `#${a} (label ${da.label})`;
  drawDigit($("interp-b-img"), db.image); $("interp-b-cap").textContent = `#${b} (label ${db.label})`;
  drawStrip($("interp-strip"), strip.images, 10);
  decodeInterp(Number($("interp-t").value));
}

function initInterp() {
  const other = INFO.labels.split("").findIndex((l) => l !== INFO.labels[0]);
  $("interp-b").value = other < 0 ? Math.min(1, INFO.n_test - 1) : other;
  for (const id of ["interp-a", "interp-b"]) {
    $(id).max = INFO.n_test - 1;
    $(id).addEventListener("change", () => loadPair().catch((e) => showError(e.message)));
  }
  $("interp-random").addEventListener("click", () => {
    $("interp-a").value = randomIndex(); $("interp-b").value = randomIndex();
    loadPair().catch((e) => showError(e.message));
  });
  $("interp-t").addEventListener("input", () => {
    const t = Number($("interp-t").value);
    $("interp-t-val").textContent = fmt(t);
    decodeInterp(t);
  });
  return loadPair();
}

// --- drawing --------------------------------------------------------------------------------------

let scatter = null;

// MNIST digits are scaled into a 20x20 box and centred by their centre of mass in 28x28;
// doing the same to a drawing makes it look like what the encoder was trained on.
function padToInput(pad) {
  const W = pad.width, cell = W / 28;
  const src = pad.getContext("2d").getImageData(0, 0, W, W).data;
  let x0 = W, y0 = W, x1 = -1, y1 = -1;
  for (let y = 0; y < W; y++) for (let x = 0; x < W; x++) {
    if (src[4 * (y * W + x)] > 20) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
  }
  if (x1 < 0) return null;
  const w = x1 - x0 + 1, h = y1 - y0 + 1, s = (20 * cell) / Math.max(w, h);
  const a = document.createElement("canvas"); a.width = a.height = W;
  const actx = a.getContext("2d");
  actx.fillStyle = "#000"; actx.fillRect(0, 0, W, W);
  actx.imageSmoothingQuality = "high";
  actx.drawImage(pad, x0, y0, w, h, (W - w * s) / 2, (W - h * s) / 2, w * s, h * s);
  const d = actx.getImageData(0, 0, W, W).data;
  let m = 0, mx = 0, my = 0;
  for (let y = 0; y < W; y++) for (let x = 0; x < W; x++) { const v = d[4 * (y * W + x)]; m += v; mx += v * x; my += v * y; }
  const b = document.createElement("canvas"); b.width = b.height = W;
  const bctx = b.getContext("2d");
  bctx.fillStyle = "#000"; bctx.fillRect(0, 0, W, W);
  bctx.drawImage(a, Math.round(W / 2 - mx / m), Math.round(W / 2 - my / m));
  const e = bctx.getImageData(0, 0, W, W).data, out = new Array(784);
  for (let r = 0; r < 28; r++) for (let c = 0; c < 28; c++) {
    let sum = 0;
    for (let y = r * cell; y < (r + 1) * cell; y++) for (let x = c * cell; x < (c + 1) * cell; x++) sum += e[4 * (y * W + x)];
    out[r * 28 + c] = Math.round((sum / (cell * cell * 255)) * 1000) / 1000;
  }
  return out;
}

function drawMuBars(mu) {
  const c = $("mu-bars"), ctx = c.getContext("2d"), W = c.width, H = c.height;
  ctx.clearRect(0, 0, W, H);
  const lim = Math.max(3, ...mu.map(Math.abs)), bw = W / mu.length, mid = H / 2;
  ctx.strokeStyle = "#c9ced6"; ctx.beginPath(); ctx.moveTo(0, mid); ctx.lineTo(W, mid); ctx.stroke();
  mu.forEach((v, i) => {
    ctx.fillStyle = !INFO.active[i] ? "#c9ced6" : v >= 0 ? "#2f6fdf" : "#e4572e";  // grey: an inactive dimension
    const h = (v / lim) * (mid - 4);
    ctx.fillRect(i * bw + 1, v >= 0 ? mid - h : mid, Math.max(1, bw - 2), Math.abs(h));
  });
}

function drawScatter(mark) {
  const c = $("scatter"), ctx = c.getContext("2d"), W = c.width, H = c.height, P = scatter;
  ctx.clearRect(0, 0, W, H);
  const xs = P.x.concat(mark ? [mark[0]] : []), ys = P.y.concat(mark ? [mark[1]] : []);
  const xmin = Math.min(...xs), xmax = Math.max(...xs), ymin = Math.min(...ys), ymax = Math.max(...ys);
  const pad = 14, sx = (W - 2 * pad) / (xmax - xmin || 1), sy = (H - 2 * pad) / (ymax - ymin || 1);
  const X = (v) => pad + (v - xmin) * sx, Y = (v) => H - pad - (v - ymin) * sy;
  ctx.globalAlpha = 0.55;
  for (let i = 0; i < P.x.length; i++) {
    ctx.fillStyle = COLORS[P.label[i]];
    ctx.beginPath(); ctx.arc(X(P.x[i]), Y(P.y[i]), 2, 0, 2 * Math.PI); ctx.fill();
  }
  ctx.globalAlpha = 1;
  if (mark) {
    const x = X(mark[0]), y = Y(mark[1]);
    ctx.fillStyle = "#000"; ctx.strokeStyle = "#fff"; ctx.lineWidth = 2;
    ctx.beginPath(); ctx.arc(x, y, 8, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
    ctx.fillStyle = "#fff"; ctx.beginPath(); ctx.arc(x, y, 3, 0, 2 * Math.PI); ctx.fill();
  }
  bump(c);
}

const encodeDrawing = coalesced(async (image) => {
  const d = await api("/api/encode", { image });
  drawDigit($("pad-recon"), d.image);
  drawMuBars(d.mu);
  $("mu-text").textContent = "μ" + zText(d.mu).slice(1);
  drawScatter(d.xy);
  $("neighbours").textContent = "nearest test digits in code space: " + d.neighbours.map((n) => `#${n.index} (${n.label})`).join(", ");
});

function initDraw() {
  const pad = $("pad"), ctx = pad.getContext("2d");
  const clear = () => { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, pad.width, pad.height); };
  clear();
  let last = null;
  const at = (e) => { const r = pad.getBoundingClientRect(); return [(e.clientX - r.left) * (pad.width / r.width), (e.clientY - r.top) * (pad.height / r.height)]; };
  const line = (p, q) => {
    ctx.strokeStyle = "#fff"; ctx.lineWidth = 20; ctx.lineCap = ctx.lineJoin = "round";
    ctx.beginPath(); ctx.moveTo(p[0], p[1]); ctx.lineTo(q[0], q[1]); ctx.stroke();
  };
  pad.addEventListener("pointerdown", (e) => { pad.setPointerCapture(e.pointerId); last = at(e); line(last, last); });
  pad.addEventListener("pointermove", (e) => { if (!last) return; const p = at(e); line(last, p); last = p; });
  const release = () => {
    if (!last) return;
    last = null;
    const image = padToInput(pad);
    if (!image) return;
    const show = $("pad-input").getContext("2d").createImageData(28, 28);
    image.forEach((v, i) => { show.data[4 * i] = show.data[4 * i + 1] = show.data[4 * i + 2] = Math.round(v * 255); show.data[4 * i + 3] = 255; });
    $("pad-input").getContext("2d").putImageData(show, 0, 0); bump($("pad-input"));
    encodeDrawing(image);
  };
  pad.addEventListener("pointerup", release);
  pad.addEventListener("pointercancel", release);
  $("pad-clear").addEventListener("click", clear);
  $("legend").innerHTML = COLORS.map((c, i) => `<span style="--c:${c}">${i}</span>`).join("");
  return api("/api/projection").then((p) => { scatter = p; drawScatter(null); });
}

// --- run facts ------------------------------------------------------------------------------------

function initFacts() {
  const f = INFO.final, ds = INFO.dataset, m = INFO.config.model, t = INFO.config.train;
  const rows = [
    ["configuration", `${INFO.name} — ${INFO.description}`],
    ["run folder", INFO.run],
    ["model", `${m.encoder.toUpperCase()} encoder, latent ${INFO.latent_dim}` + (INFO.parameters ? `, ${INFO.parameters.toLocaleString("en")} parameters` : "")],
    ["dataset", `${ds.name}: ${ds.n_train.toLocaleString("en")} train / ${ds.n_test.toLocaleString("en")} test (sha256 ${ds.sha256}…)`],
    ["training", `lr ${t.lr}, batch ${t.batch_size}, β ${t.beta}, binarize ${t.binarize}, seed ${t.seed}`],
    ["epochs", `${INFO.epochs} of ${INFO.epochs_planned}` + (INFO.train_seconds ? ` (${INFO.train_seconds} s of training)` : "")],
    ["final test loss", f ? `${fmt(f.test_loss)} (reconstruction ${fmt(f.test_recon)} + KL ${fmt(f.test_kl)}) nats per image` : "no finished epoch"],
  ];
  if (INFO.created) rows.push(["created", INFO.created]);
  const dl = $("facts-list");
  for (const [k, v] of rows) { const dt = document.createElement("dt"), dd = document.createElement("dd"); dt.textContent = k; dd.textContent = v; dl.append(dt, dd); }
  $("config-toml").textContent = INFO.config_toml;
  if (INFO.has_loss_curves) { $("loss-curves").src = "/api/loss_curves.png"; $("loss-curves").hidden = false; } else $("loss-missing").hidden = false;
}

async function main() {
  try {
    INFO = await api("/api/info");
  } catch (e) { showError(e.message); return; }
  $("subtitle").textContent = `run ${INFO.run} · ${INFO.name} · latent ${INFO.latent_dim} · ${INFO.epochs} epochs · test loss ${INFO.final ? fmt(INFO.final.test_loss) : "–"}`;
  initFacts();
  const jobs = [initSamples(), initLatent(), initInterp(), initDraw()];
  const results = await Promise.allSettled(jobs);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) showError(failed.reason.message);
  document.body.dataset.ready = "1";
}

main();
