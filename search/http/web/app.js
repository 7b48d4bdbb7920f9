// soundsift web page: plain JS over the JSON API (same routes other systems call). No build step, no CDN.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { apiKey: localStorage.getItem("soundsift-api-key") || "", lastQuery: null, classify: null, sort: { key: "score", dir: -1 } };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

const fmtTime = (s) => `${Math.floor(s / 60)}:${(s % 60).toFixed(2).padStart(5, "0")}`;
const fmtScore = (s) => (s === null || s === undefined ? "–" : Number(s).toFixed(4));
const rowScore = (r) => (r.label ? r.scores[r.label] : Math.max(...Object.values(r.scores)));

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
}

async function api(path, { method = "GET", body, raw = false } = {}) {
  const headers = { Accept: "application/json" };
  if (state.apiKey) headers["X-API-Key"] = state.apiKey;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 401) {
    $("#key-panel").hidden = false;
    throw new Error("this server needs its API key: enter it above");
  }
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const doc = await response.json();
      detail = typeof doc.detail === "string" ? doc.detail : doc.detail.map((d) => `${d.loc.slice(1).join(".")}: ${d.msg}`).join("; ");
    } catch (_) { /* not JSON */ }
    throw new Error(`${response.status}: ${detail}`);
  }
  return raw ? response : response.json();
}

async function guarded(fn) {
  showError("");
  try { await fn(); } catch (err) { showError(err.message); }
}

// -- header and tabs ----------------------------------------------------------------------
function showTab(name) {
  document.querySelectorAll(".tab").forEach((t) => { t.hidden = t.id !== `tab-${name}`; });
  document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  if (name === "jobs") guarded(loadJobs);
}

async function loadStats() {
  const s = await api("/stats");
  $("#stats").textContent = `${s.files.indexed} files · ${s.windows} windows · ${s.hours.toFixed(2)} h · ${s.model.id || "no model"}`;
  for (const id of ["#policy", "#upload-policy"]) {
    const select = $(id);
    const current = select.value;
    // the archive policy needs an index: one uploaded file has no archive statistics
    const names = id === "#upload-policy" ? s.policies.filter((p) => p !== "archive") : s.policies;
    select.replaceChildren(...names.map((p) => el("option", { value: p }, p)));
    select.value = names.includes(current) ? current : "softmax";
  }
}

// -- playback -----------------------------------------------------------------------------
async function play(windowId, label) {
  await guarded(async () => {
    const response = await api(`/windows/${windowId}/audio?format=wav`, { raw: true });
    const blob = await response.blob();
    const player = $("#player");
    if (player.dataset.url) URL.revokeObjectURL(player.dataset.url);
    player.dataset.url = URL.createObjectURL(blob);
    player.dataset.window = String(windowId);
    player.src = player.dataset.url;
    $("#now-playing").textContent = `▶ ${label}`;
    try { await player.play(); } catch (_) { /* autoplay refused: the controls still work */ }
  });
}

const playButton = (windowId, label) => el("button", { type: "button", class: "play", title: "play this window", "data-window": windowId,
  onclick: () => play(windowId, label) }, "▶");

// -- search -------------------------------------------------------------------------------
async function runSearch(event) {
  event.preventDefault();
  await guarded(async () => {
    const queries = $("#queries").value.split("\n").map((q) => q.trim()).filter(Boolean);
    if (!queries.length) throw new Error("type at least one description");
    const glob = $("#search-glob").value.trim();
    const body = { queries, k: Number($("#k").value) || 10 };
    if (glob) body.filters = { path_glob: glob };
    const doc = await api("/search", { method: "POST", body });
    state.lastQuery = queries[0];
    renderSearch(doc);
  });
}

function renderSearch(doc) {
  const out = $("#search-results");
  out.replaceChildren(...doc.results.map((r) => {
    // bars are relative to this query's hits (cosine scores of a weak match can all be near zero or negative)
    const hi = Math.max(...r.hits.map((h) => h.score)), lo = Math.min(...r.hits.map((h) => h.score));
    const width = (s) => (hi > lo ? 15 + 85 * (s - lo) / (hi - lo) : 100);
    return el("div", { class: "query-block" },
      el("h3", {}, r.query),
      el("div", { class: "texts" }, `embedded: ${r.texts.join(" | ")}`),
      r.untranslated.length ? el("div", { class: "texts" }, `no English found for: ${r.untranslated.join(", ")}`) : "",
      r.hits.length ? el("ol", { class: "hits" }, r.hits.map((h, i) => el("li", { class: "hit", "data-window": h.window_id },
        el("span", { class: "score" }, `${i + 1}.`),
        el("button", { type: "button", class: "link path", title: h.path, onclick: () => openFile(h.file_id, { query: r.query }) }, h.path),
        el("span", {}, `${fmtTime(h.start)}–${fmtTime(h.end)}`),
        el("span", { title: fmtScore(h.score) }, el("div", { class: "bar" }, el("span", { style: `width:${width(h.score).toFixed(1)}%` })),
          el("span", { class: "score" }, fmtScore(h.score))),
        el("span", { class: "hit-actions" }, playButton(h.window_id, `${h.path} ${fmtTime(h.start)}–${fmtTime(h.end)}`),
          el("button", { type: "button", class: "localize", title: "where in this window is the sound?",
            onclick: (e) => {
              const where = e.currentTarget.closest("li").querySelector(".where");
              where.textContent = "…";
              return guarded(async () => {
                const doc = await api(`/windows/${h.window_id}/localize?${new URLSearchParams({ query: r.query })}`);
                where.textContent = `sound at ${fmtTime(doc.start)}–${fmtTime(doc.end)}`;
              });
            } }, "where?")),
        el("span", { class: "where hint" }, ""))))
        : el("p", { class: "hint" }, "no hits"));
  }));
}

// -- classification: a heat map of files x labels, expandable to windows ---------------------
function jsonField(id, name) {
  const raw = $(id).value.trim();
  if (!raw) return undefined;
  try {
    const value = JSON.parse(raw);
    if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error("not an object");
    return value;
  } catch (_) { throw new Error(`${name} must be a JSON object, e.g. {"min_margin": 0.2}`); }
}

async function runClassify(event, more = false) {
  if (event) event.preventDefault();
  await guarded(async () => {
    if (!more) {
      const labels = $("#labels").value.trim();
      const labelSet = $("#classify-label-set") ? $("#classify-label-set").value : "";
      if (!labels && !labelSet) throw new Error("type some labels, e.g. glass breaking, dog barking");
      // a stored label set brings its labels, policy, options, template and thresholds
      const body = labelSet ? { label_set: labelSet, by: "window", limit: 1000 } : { labels, policy: $("#policy").value, by: "window", limit: 1000 };
      const threshold = $("#threshold").value.trim();
      if (threshold) body.threshold = Number(threshold);
      const glob = $("#classify-glob").value.trim();
      if (glob) body.filters = { path_glob: glob };
      const options = jsonField("#classify-options", "policy options");
      if (options) body.policy_options = options;
      const template = $("#classify-template").value.trim();
      if (template) body.prompt_template = template;
      state.classify = { body, rows: [], header: null, cursor: null, open: new Set() };
    }
    const c = state.classify;
    const doc = await api("/classify", { method: "POST", body: { ...c.body, cursor: c.cursor || undefined } });
    c.header = doc;
    c.rows.push(...doc.rows);
    c.cursor = doc.next_cursor;
    if (!more) state.sort = { key: `label:${doc.labels[0]}`, dir: -1 };
    renderClassify();
  });
}

function groupsOf(rows, labels) {
  const groups = new Map();
  for (const r of rows) {
    if (!groups.has(r.path)) groups.set(r.path, { path: r.path, file_id: r.file_id, rows: [] });
    groups.get(r.path).rows.push(r);
  }
  return [...groups.values()].map((g) => {
    g.rows.sort((a, b) => a.start - b.start);
    g.max = {};
    g.peak = {};
    for (const l of labels) {
      const best = g.rows.reduce((p, r) => (r.scores[l] > p.scores[l] ? r : p), g.rows[0]);
      g.max[l] = best.scores[l];
      g.peak[l] = best;
    }
    const top = g.rows.reduce((p, r) => (rowScore(r) > rowScore(p) ? r : p), g.rows[0]);
    g.score = rowScore(top);
    g.label = top.label || "";
    g.windows = g.rows.length;
    return g;
  });
}

function heat(t) {
  const v = Math.max(0, Math.min(1, t));
  return `hsl(${Math.round(210 - 210 * v)}, 80%, ${Math.round(94 - 44 * v)}%)`;
}

function sortKey(g, key) {
  if (key.startsWith("label:")) return g.max[key.slice(6)];
  return g[key];
}

function renderClassify() {
  const c = state.classify;
  const h = c.header;
  const labels = h.labels;
  $("#classify-head").replaceChildren(
    el("div", { class: "texts" }, `policy ${h.policy}; embedded: ${h.texts.map((t) => t.join(" | ")).join(" ; ")}`),
    el("div", { class: "hint" }, `${c.rows.length} windows${c.cursor ? " (more available)" : ""} · click a label to sort by it, a file's ▸ to see its windows`));
  const { key, dir } = state.sort;
  const groups = groupsOf(c.rows, labels).sort((a, b) => {
    const x = sortKey(a, key), y = sortKey(b, key);
    return (x < y ? -1 : x > y ? 1 : 0) * dir;
  });
  const all = c.rows.flatMap((r) => labels.map((l) => r.scores[l]));
  const lo = Math.min(...all), hi = Math.max(...all);
  const norm = (s) => (hi > lo ? (s - lo) / (hi - lo) : 0.5);
  const peakLabel = key.startsWith("label:") ? key.slice(6) : null;
  const head = $("#classify-table thead tr");
  head.replaceChildren(
    el("th", { "data-sort": "path", class: "sortable" }, "file"),
    el("th", { "data-sort": "label", class: "sortable" }, "best label"),
    el("th", { "data-sort": "score", class: "sortable" }, "score"),
    el("th", { "data-sort": "windows", class: "sortable" }, "windows"),
    el("th", {}, "peak window"),
    ...labels.map((l) => el("th", { "data-sort": `label:${l}`, class: "sortable label-col", title: `sort by ${l}` }, l)),
    el("th", {}));
  head.querySelectorAll("th.sortable").forEach((th) => {
    th.addEventListener("click", () => sortBy(th.dataset.sort));
    th.classList.toggle("sorted-asc", th.dataset.sort === key && dir === 1);
    th.classList.toggle("sorted-desc", th.dataset.sort === key && dir === -1);
  });
  const cell = (score, cls = "score heat") => el("td", { class: cls, style: `background:${heat(norm(score))}`, title: fmtScore(score) }, fmtScore(score));
  const body = $("#classify-table tbody");
  body.replaceChildren(...groups.flatMap((g) => {
    const open = c.open.has(g.path);
    const peak = g.peak[peakLabel || g.label || labels[0]] || g.rows[0];
    return [
      el("tr", { class: "file-row", "data-path": g.path },
        el("td", {}, el("button", { type: "button", class: "expand link", title: "show windows", "aria-expanded": String(open),
          onclick: () => { if (c.open.has(g.path)) c.open.delete(g.path); else c.open.add(g.path); renderClassify(); } }, open ? "▾" : "▸"),
          el("button", { type: "button", class: "link path open-file", title: g.path,
            onclick: () => openFile(g.file_id, { labels: c.body.labels, policy: c.body.policy, label: peakLabel }) }, g.path)),
        el("td", {}, g.label || "–"), el("td", { class: "score" }, fmtScore(g.score)), el("td", {}, g.windows),
        el("td", { class: "peak", "data-window": peak.window_id }, `${fmtTime(peak.start)}–${fmtTime(peak.end)}`),
        ...labels.map((l) => cell(g.max[l])),
        el("td", {}, playButton(peak.window_id, `${g.path} ${fmtTime(peak.start)}–${fmtTime(peak.end)}`))),
      ...g.rows.map((r) => {
        const tr = el("tr", { class: "window-row", "data-window": r.window_id },
          el("td", {}, `${fmtTime(r.start)}–${fmtTime(r.end)}`), el("td", {}, r.label || "–"),
          el("td", { class: "score" }, fmtScore(rowScore(r))), el("td", { class: "hint" }, (r.fired || []).join(", ")),
          el("td", { class: "hint" }, r.extras && r.extras.confidence !== undefined ? `conf ${fmtScore(r.extras.confidence)}` : ""),
          ...labels.map((l) => cell(r.scores[l])),
          el("td", {}, playButton(r.window_id, `${r.path} ${fmtTime(r.start)}–${fmtTime(r.end)}`)));
        tr.hidden = !open;
        return tr;
      }),
    ];
  }));
  $("#classify-table").hidden = false;
  $("#classify-more").hidden = !c.cursor;
}

function sortBy(key) {
  state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : (key === "path" || key === "label" ? 1 : -1) };
  if (state.classify && state.classify.header) renderClassify();
}

// -- seeing the sound: waveform, log-mel image, scores along it, best region, click to play ---
function drawViewer(box, v) {
  // v: { envelope, windows: [{start, end, scores, id?}], labels, label, region?, onPlay(t), title }
  const env = v.envelope;
  const select = el("select", { class: "viewer-label", "aria-label": "label drawn along the sound" },
    v.labels.map((l) => el("option", { value: l }, l)));
  select.value = v.label || v.labels[0] || "";
  const canvas = el("canvas", { class: "wave", height: "140" });
  const mel = env && env.mel_png ? el("img", { class: "mel", alt: "log-mel spectrogram", src: `data:image/png;base64,${env.mel_png}` }) : "";
  const legend = el("div", { class: "hint viewer-legend" });
  const t0 = env ? env.start : 0, span = env && env.duration > 0 ? env.duration : 1;
  const timeAt = (event) => {
    const r = event.currentTarget.getBoundingClientRect();
    return t0 + Math.max(0, Math.min(1, (event.clientX - r.left) / r.width)) * span;
  };
  const paint = () => {
    const label = select.value;
    const width = Math.max(200, Math.round(box.clientWidth || 800));
    canvas.width = width;
    const ctx = canvas.getContext("2d");
    const H = canvas.height, mid = H / 2;
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, width, H);
    const x = (t) => ((t - t0) / span) * width;
    const scored = v.windows.filter((w) => w.scores && w.scores[label] !== undefined);
    const best = scored.reduce((p, w) => (!p || w.scores[label] > p.scores[label] ? w : p), null);
    if (best) {  // the best window, highlighted
      ctx.fillStyle = "rgba(255, 196, 0, .28)";
      ctx.fillRect(x(best.start), 0, Math.max(2, x(best.end) - x(best.start)), H);
    }
    if (v.region) {  // where inside the window the sound is (localize)
      ctx.fillStyle = "rgba(214, 40, 40, .30)";
      ctx.fillRect(x(v.region.start), 0, Math.max(2, x(v.region.end) - x(v.region.start)), H);
    }
    if (env && env.points) {
      ctx.strokeStyle = "#2463c9"; ctx.beginPath();
      for (let i = 0; i < env.points; i++) {
        const px = (i + 0.5) * width / env.points;
        ctx.moveTo(px, mid - env.max[i] * mid * 0.95); ctx.lineTo(px, mid - env.min[i] * mid * 0.95 + 0.5);
      }
      ctx.stroke();
    }
    if (scored.length) {  // the windows' scores for the label, as a line across the top half
      const vals = scored.map((w) => w.scores[label]);
      const lo = Math.min(...vals), hi = Math.max(...vals);
      const y = (s) => 6 + (1 - (hi > lo ? (s - lo) / (hi - lo) : 0.5)) * (H * 0.45);
      ctx.strokeStyle = "#d62828"; ctx.lineWidth = 2; ctx.beginPath();
      scored.forEach((w, i) => { const px = x((w.start + w.end) / 2); if (i) ctx.lineTo(px, y(w.scores[label])); else ctx.moveTo(px, y(w.scores[label])); });
      ctx.stroke(); ctx.lineWidth = 1;
      ctx.fillStyle = "#d62828";
      scored.forEach((w) => { ctx.beginPath(); ctx.arc(x((w.start + w.end) / 2), y(w.scores[label]), 3, 0, 7); ctx.fill(); });
    }
    canvas.dataset.best = best ? `${best.start}-${best.end}` : "";
    legend.textContent = (best ? `best for “${label}”: ${fmtTime(best.start)}–${fmtTime(best.end)} (score ${fmtScore(best.scores[label])})` : "")
      + (v.region ? ` · sound at ${fmtTime(v.region.start)}–${fmtTime(v.region.end)}` : "") + " · click the picture to play from there";
    box.dataset.label = label;
  };
  select.addEventListener("change", () => { v.label = select.value; paint(); if (v.onLabel) v.onLabel(select.value); });
  canvas.addEventListener("click", (e) => v.onPlay(timeAt(e)));
  if (mel) mel.addEventListener("click", (e) => v.onPlay(timeAt(e)));
  box.replaceChildren(el("div", { class: "viewer-head" }, el("label", {}, "label ", select), legend), canvas, mel);
  requestAnimationFrame(paint);
  box.repaint = paint;
}

async function playFrom(source, t, label) {
  // source: { windowId } (a window of the index, started at t inside it) or { url } (a local file)
  const player = $("#player");
  if (source.url) {
    if (player.dataset.url && player.dataset.url !== source.url) URL.revokeObjectURL(player.dataset.url);
    if (player.src !== source.url) { player.dataset.url = source.url; player.src = source.url; }
    player.dataset.window = "";
  } else {
    await play(source.windowId, label);
  }
  const seek = () => { player.currentTime = Math.max(0, t); player.dataset.from = String(t); };
  if (player.readyState >= 1) seek(); else player.addEventListener("loadedmetadata", seek, { once: true });
  $("#now-playing").textContent = `▶ ${label} from ${fmtTime(t + (source.offset || 0))}`;
  try { await player.play(); } catch (_) { /* autoplay refused or a format the browser cannot play */ }
}

// -- file view ----------------------------------------------------------------------------
function scoreColour(t) {
  // low scores cool blue, high scores warm red
  return `hsl(${Math.round(220 - 220 * t)}, 75%, ${Math.round(88 - 38 * t)}%)`;
}

async function localizeIn(w, query, file) {
  const params = new URLSearchParams({ query });
  const doc = await api(`/windows/${w.id}/localize?${params}`);
  state.region = doc;
  $("#localize-result").textContent = `“${query}” sounds at ${fmtTime(doc.start)}–${fmtTime(doc.end)} (score ${fmtScore(doc.score)}) inside ${fmtTime(doc.window_start)}–${fmtTime(doc.window_end)}`;
  $("#localize-result").dataset.start = String(doc.start);
  $("#localize-result").dataset.end = String(doc.end);
  if (file) file.viewer.region = doc;
  if ($("#file-viewer").repaint) $("#file-viewer").repaint();
  return doc;
}

async function openFile(fileId, scoring = {}) {
  showTab("file");
  await guarded(async () => {
    const params = new URLSearchParams();
    if (scoring.query) params.set("query", scoring.query);
    else if (scoring.labels) { params.set("labels", scoring.labels); params.set("policy", scoring.policy || "softmax"); }
    const [f, env] = await Promise.all([api(`/files/${fileId}?${params}`),
      api(`/files/${fileId}/envelope?points=1200&mel_width=800`).catch((err) => { showError(err.message); return null; })]);
    const scored = f.windows.filter((w) => w.score !== null && w.score !== undefined);
    const lo = Math.min(...scored.map((w) => w.score)), hi = Math.max(...scored.map((w) => w.score));
    const norm = (s) => (hi > lo ? (s - lo) / (hi - lo) : 0.5);
    $("#file-head").replaceChildren(
      el("h2", {}, f.path),
      el("div", { class: "hint" }, `${f.window_count} windows · ${f.duration ? f.duration.toFixed(1) : "?"} s · ${f.sample_rate || "?"} Hz · ${f.channels || "?"} ch · ${f.codec || ""} · ${f.status}`
        + (scoring.query ? ` · scored against “${scoring.query}”` : scoring.labels ? ` · scored against labels ${scoring.labels}` : "")),
      f.query_texts ? el("div", { class: "texts" }, `embedded: ${f.query_texts.join(" | ")}`) : "");
    $("#localize-result").textContent = "";
    const label = (w) => `${f.path} ${fmtTime(w.start)}–${fmtTime(w.end)}`;
    const labels = scoring.query ? [scoring.query] : scored.length && scored[0].scores ? Object.keys(scored[0].scores) : [];
    const windows = f.windows.map((w) => ({ ...w, scores: w.scores || (w.score !== null && w.score !== undefined ? { [scoring.query]: w.score } : {}) }));
    const file = { viewer: { envelope: env, windows, labels, label: scoring.label || labels[0], region: null,
      onPlay: (t) => { const w = windows.find((x) => t >= x.start && t < x.end) || windows[windows.length - 1]; if (w) playFrom({ windowId: w.id, offset: w.start }, t - w.start, label(w)); } } };
    state.file = file;
    drawViewer($("#file-viewer"), file.viewer);
    $("#file-strip").replaceChildren(...f.windows.map((w) => el("div", {
      class: "cell", "data-window": w.id, title: `${fmtTime(w.start)}–${fmtTime(w.end)} score ${fmtScore(w.score)}`,
      style: `background:${w.score === null || w.score === undefined ? "#dfe3e8" : scoreColour(norm(w.score))}`,
      onclick: () => play(w.id, label(w)) })));
    const where = (w) => (labels.length ? el("button", { type: "button", class: "localize", title: "where in this window is the sound?",
      onclick: () => guarded(() => localizeIn(w, scoring.query || file.viewer.label || labels[0], file)) }, "where?") : "");
    $("#file-windows tbody").replaceChildren(...f.windows.map((w) => el("tr", { "data-window": w.id },
      el("td", {}, w.id), el("td", {}, `${fmtTime(w.start)}–${fmtTime(w.end)}`), el("td", { class: "score" }, fmtScore(w.score)),
      el("td", {}, w.label || ""), el("td", { class: "hint" }, Object.entries(w.tags).map(([k, v]) => `${k}=${v}`).join(" ")),
      el("td", { class: "model-tags" }, Object.entries(w.model_tags || {}).map(([model, pairs]) =>
        `${model}: ${pairs.map((p) => `${p.label} ${fmtScore(p.score)}`).join(", ")}`).join(" · ")),
      el("td", {}, playButton(w.id, label(w))), el("td", {}, where(w)))));
    $("#file-windows").hidden = false;
    document.dispatchEvent(new CustomEvent("soundsift:file", { detail: { file: f } }));  // transcript.js and others
  });
}

// -- upload: one file classified with every option, progress while it uploads and runs -----
const PCM_EXTENSIONS = ["pcm", "raw"];
const extOf = (name) => (name.includes(".") ? name.split(".").pop().toLowerCase() : "");

function chooseFile(file) {
  state.upload = { file, url: URL.createObjectURL(file), result: null };
  $("#drop-text").textContent = `${file.name} · ${(file.size / 1024).toFixed(1)} kB`;
  $("#pcm-fields").hidden = !PCM_EXTENSIONS.includes(extOf(file.name));
}

function uploadForm() {
  const u = state.upload;
  if (!u || !u.file) throw new Error("choose or drop an audio file first");
  const labels = $("#upload-labels").value.trim();
  if (!labels) throw new Error("type some labels, e.g. glass breaking, dog barking");
  const form = new FormData();
  form.append("file", u.file, u.file.name);
  form.append("labels", labels);
  form.append("policy", $("#upload-policy").value);
  const options = jsonField("#upload-options", "policy options");
  if (options) form.append("policy_options", JSON.stringify(options));
  const fields = { threshold: "#upload-threshold", prompt_template: "#upload-template", start: "#upload-start", duration: "#upload-duration" };
  for (const [name, id] of Object.entries(fields)) { const v = $(id).value.trim(); if (v) form.append(name, v); }
  if (!$("#pcm-fields").hidden) {
    form.append("pcm_sample_rate", $("#pcm-rate").value);
    form.append("pcm_channels", $("#pcm-channels").value);
    form.append("pcm_format", $("#pcm-format").value);
  }
  form.append("envelope_points", "1200");
  form.append("mel_width", "800");
  return form;
}

function sendUpload(form) {
  // XHR, not fetch: only XHR reports upload progress.
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/classify-file");
    xhr.setRequestHeader("Accept", "application/json");
    if (state.apiKey) xhr.setRequestHeader("X-API-Key", state.apiKey);
    const bar = $("#upload-bar"), status = $("#upload-status");
    $("#upload-progress").hidden = false;
    bar.classList.remove("busy");
    bar.style.width = "0%";
    xhr.upload.onprogress = (e) => {
      if (!e.lengthComputable) return;
      bar.style.width = `${Math.round((100 * e.loaded) / e.total)}%`;
      status.textContent = `uploading ${(e.loaded / 1024).toFixed(0)} of ${(e.total / 1024).toFixed(0)} kB`;
    };
    xhr.upload.onload = () => { bar.style.width = "100%"; bar.classList.add("busy"); status.textContent = "uploaded; decoding and classifying…"; };
    xhr.onerror = () => reject(new Error("the upload failed (connection lost?)"));
    xhr.onload = () => {
      bar.classList.remove("busy");
      let doc = null;
      try { doc = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
      if (xhr.status === 401) { $("#key-panel").hidden = false; reject(new Error("this server needs its API key: enter it above")); return; }
      if (xhr.status >= 400) {
        const d = doc && doc.detail;
        const detail = typeof d === "string" ? d : Array.isArray(d) ? d.map((x) => `${x.loc.slice(1).join(".")}: ${x.msg}`).join("; ") : xhr.statusText;
        status.textContent = "failed";
        reject(new Error(`${xhr.status}: ${detail}`));
        return;
      }
      status.textContent = "done";
      resolve(doc);
    };
    xhr.send(form);
  });
}

async function runUpload(event) {
  event.preventDefault();
  await guarded(async () => {
    const form = uploadForm();
    const doc = await sendUpload(form);
    state.upload.result = doc;
    renderUpload(doc);
  });
}

function confidenceOf(r) { return r.extras && r.extras.confidence !== undefined ? r.extras.confidence : null; }

function renderUpload(doc) {
  const u = state.upload;
  const info = doc.info || {};
  $("#upload-info").replaceChildren(
    el("h2", {}, doc.path || "upload"),
    el("div", { class: "hint file-info" }, `duration ${info.duration ? info.duration.toFixed(2) : "?"} s · sample rate ${info.sample_rate || "?"} Hz · `
      + `${info.channels || "?"} channel${info.channels === 1 ? "" : "s"} · codec ${info.codec || "?"} · decoder ${info.decoder || "?"}`
      + (doc.start || doc.duration ? ` · classified ${fmtTime(doc.start)}–${fmtTime(doc.start + (doc.duration || 0))}` : "")),
    el("div", { class: "texts" }, `policy ${doc.policy}; embedded: ${doc.texts.map((t) => t.join(" | ")).join(" ; ")}`),
    el("div", { class: "file-verdict" }, `file: ${doc.file.label || "no label fired"} · peak window ${fmtTime(doc.file.peak_start)}–${fmtTime(doc.file.peak_end)}`
      + (confidenceOf(doc.file) !== null ? ` · confidence ${fmtScore(confidenceOf(doc.file))}` : "")));
  $("#upload-warnings").replaceChildren(...(doc.warnings.length ? doc.warnings : ["no acoustic warnings (no silence, clipping or DC offset found)"])
    .map((w) => el("li", { class: doc.warnings.length ? "warning" : "hint" }, w)));
  drawViewer($("#upload-viewer"), { envelope: doc.envelope, windows: doc.windows, labels: doc.labels, label: doc.file.label || doc.labels[0],
    onPlay: (t) => playFrom({ url: u.url }, t, doc.path || "upload") });
  const labels = doc.labels;
  $("#upload-table thead tr").replaceChildren(...["row", "time", "label", "score", "confidence", "fired", ...labels].map((h) => el("th", {}, h)));
  const rows = [{ ...doc.file, kind: "file" }, ...doc.windows.map((w) => ({ ...w, kind: "window" })).sort((a, b) => rowScore(b) - rowScore(a))];
  $("#upload-table tbody").replaceChildren(...rows.map((r) => el("tr", { class: r.kind === "file" ? "file-row" : "window-row upload-window", "data-start": r.start },
    el("td", {}, r.kind), el("td", {}, `${fmtTime(r.start)}–${fmtTime(r.end)}`), el("td", {}, r.label || "–"),
    el("td", { class: "score" }, fmtScore(rowScore(r))), el("td", { class: "score" }, fmtScore(confidenceOf(r))),
    el("td", {}, (r.fired || []).join(", ")), ...labels.map((l) => el("td", { class: "score" }, fmtScore(r.scores[l]))))));
  $("#upload-result").hidden = false;
}

function csvOf(doc) {
  const q = (v) => { const s = v === null || v === undefined ? "" : String(v); return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s; };
  const head = ["row", "path", "start", "end", "label", ...doc.labels, "confidence", "fired"];
  const line = (kind, r) => [kind, doc.path || "upload", r.start, r.end, r.label || "", ...doc.labels.map((l) => r.scores[l]),
    confidenceOf(r) ?? "", (r.fired || []).join(";")].map(q).join(",");
  return [head.join(","), line("file", doc.file), ...doc.windows.map((w) => line("window", w))].join("\n") + "\n";
}

function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

const baseName = () => ((state.upload && state.upload.file && state.upload.file.name) || "upload").replace(/\.[^.]+$/, "");

// -- re-index -----------------------------------------------------------------------------
async function loadJobs() {
  const jobs = await api("/jobs?limit=10");
  $("#job-list tbody").replaceChildren(...jobs.map((j) => el("tr", {},
    el("td", {}, j.id), el("td", {}, j.status),
    el("td", {}, `${j.progress.files_done}${j.progress.files_total !== null ? "/" + j.progress.files_total : ""}`),
    el("td", {}, j.progress.windows),
    el("td", {}, j.finished_at ? new Date(j.finished_at * 1000).toLocaleString() : "–"))));
}

async function runJob(event) {
  event.preventDefault();
  await guarded(async () => {
    const paths = $("#job-paths").value.split("\n").map((p) => p.trim()).filter(Boolean);
    if (!paths.length) throw new Error("give at least one path on the server");
    let job = await api("/jobs/index", { method: "POST", body: { paths } });
    $("#job-current").hidden = false;
    while (true) {
      const p = job.progress;
      const share = p.files_total ? p.files_done / p.files_total : (job.status === "completed" ? 1 : 0);
      $("#job-bar").style.width = `${Math.round(share * 100)}%`;
      $("#job-text").textContent = `${job.id}: ${job.status} · ${p.files_done}/${p.files_total ?? "?"} files · ${p.windows} windows · `
        + `${p.windows_per_s.toFixed(1)} windows/s${p.eta_s !== null ? ` · ETA ${Math.round(p.eta_s)} s` : ""}${job.error ? " · " + job.error : ""}`;
      if (!["queued", "running"].includes(job.status)) break;
      await new Promise((r) => setTimeout(r, 500));
      job = await api(`/jobs/${job.id}`);
    }
    await Promise.all([loadJobs(), loadStats()]);
  });
}

// -- wiring -------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
  $("#upload-form").addEventListener("submit", runUpload);
  $("#upload-file").addEventListener("change", (e) => { if (e.target.files[0]) chooseFile(e.target.files[0]); });
  const zone = $("#drop-zone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer.files[0]) chooseFile(e.dataTransfer.files[0]);
  });
  $("#upload-csv").addEventListener("click", () => download(`${baseName()}-classified.csv`, "text/csv", csvOf(state.upload.result)));
  $("#upload-json").addEventListener("click", () => download(`${baseName()}-classified.json`, "application/json",
    JSON.stringify(state.upload.result, null, 2)));
  window.addEventListener("resize", () => document.querySelectorAll(".viewer").forEach((v) => v.repaint && v.repaint()));
  $("#search-form").addEventListener("submit", runSearch);
  $("#classify-form").addEventListener("submit", (e) => runClassify(e));
  $("#classify-more").addEventListener("click", () => runClassify(null, true));
  $("#job-form").addEventListener("submit", runJob);
  $("#api-key").value = state.apiKey;
  $("#key-save").addEventListener("click", () => {
    state.apiKey = $("#api-key").value.trim();
    localStorage.setItem("soundsift-api-key", state.apiKey);
    $("#key-panel").hidden = true;
    guarded(loadStats);
  });
  guarded(loadStats);
});
