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
  const select = $("#policy");
  const current = select.value;
  select.replaceChildren(...s.policies.map((p) => el("option", { value: p }, p)));
  select.value = s.policies.includes(current) ? current : "softmax";
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
        playButton(h.window_id, `${h.path} ${fmtTime(h.start)}–${fmtTime(h.end)}`))))
        : el("p", { class: "hint" }, "no hits"));
  }));
}

// -- classification -----------------------------------------------------------------------
async function runClassify(event, more = false) {
  if (event) event.preventDefault();
  await guarded(async () => {
    if (!more) {
      const labels = $("#labels").value.trim();
      if (!labels) throw new Error("type some labels, e.g. glass breaking, dog barking");
      const body = { labels, policy: $("#policy").value, by: "window", limit: 1000 };
      const threshold = $("#threshold").value.trim();
      if (threshold) body.threshold = Number(threshold);
      const glob = $("#classify-glob").value.trim();
      if (glob) body.filters = { path_glob: glob };
      state.classify = { body, rows: [], header: null, cursor: null };
    }
    const c = state.classify;
    const doc = await api("/classify", { method: "POST", body: { ...c.body, cursor: c.cursor || undefined } });
    c.header = doc;
    c.rows.push(...doc.rows);
    c.cursor = doc.next_cursor;
    renderClassify();
  });
}

function groupsOf(rows) {
  const groups = new Map();
  for (const r of rows) {
    if (!groups.has(r.path)) groups.set(r.path, { path: r.path, file_id: r.file_id, rows: [] });
    groups.get(r.path).rows.push(r);
  }
  return [...groups.values()].map((g) => {
    g.rows.sort((a, b) => rowScore(b) - rowScore(a));
    g.best = g.rows[0];
    g.score = rowScore(g.best);
    g.label = g.best.label || "";
    g.windows = g.rows.length;
    return g;
  });
}

function renderClassify() {
  const c = state.classify;
  const h = c.header;
  $("#classify-head").replaceChildren(
    el("div", { class: "texts" }, `policy ${h.policy}; embedded: ${h.texts.map((t) => t.join(" | ")).join(" ; ")}`),
    el("div", { class: "hint" }, `${c.rows.length} windows${c.cursor ? " (more available)" : ""}`));
  const { key, dir } = state.sort;
  const groups = groupsOf(c.rows).sort((a, b) => (a[key] < b[key] ? -1 : a[key] > b[key] ? 1 : 0) * dir);
  const body = $("#classify-table tbody");
  body.replaceChildren(...groups.flatMap((g) => [
    el("tr", { class: "file-row" },
      el("td", {}, el("button", { type: "button", class: "link path open-file", title: g.path,
        onclick: () => openFile(g.file_id, { labels: c.body.labels, policy: c.body.policy }) }, g.path)),
      el("td", {}, g.label || "–"), el("td", { class: "score" }, fmtScore(g.score)), el("td", {}, g.windows), el("td", {})),
    ...g.rows.map((r) => el("tr", { class: "window-row" },
      el("td", {}, `${fmtTime(r.start)}–${fmtTime(r.end)}`), el("td", {}, r.label || "–"),
      el("td", { class: "score" }, fmtScore(rowScore(r))), el("td", {}, ""),
      el("td", {}, playButton(r.window_id, `${r.path} ${fmtTime(r.start)}–${fmtTime(r.end)}`)))),
  ]));
  document.querySelectorAll("#classify-table th.sortable").forEach((th) => {
    th.classList.toggle("sorted-asc", th.dataset.sort === key && dir === 1);
    th.classList.toggle("sorted-desc", th.dataset.sort === key && dir === -1);
  });
  $("#classify-table").hidden = false;
  $("#classify-more").hidden = !c.cursor;
}

function sortBy(key) {
  state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : (key === "path" || key === "label" ? 1 : -1) };
  if (state.classify && state.classify.header) renderClassify();
}

// -- file view ----------------------------------------------------------------------------
function scoreColour(t) {
  // low scores cool blue, high scores warm red
  return `hsl(${Math.round(220 - 220 * t)}, 75%, ${Math.round(88 - 38 * t)}%)`;
}

async function openFile(fileId, scoring = {}) {
  showTab("file");
  await guarded(async () => {
    const params = new URLSearchParams();
    if (scoring.query) params.set("query", scoring.query);
    else if (scoring.labels) { params.set("labels", scoring.labels); params.set("policy", scoring.policy || "softmax"); }
    const f = await api(`/files/${fileId}?${params}`);
    const scored = f.windows.filter((w) => w.score !== null && w.score !== undefined);
    const lo = Math.min(...scored.map((w) => w.score)), hi = Math.max(...scored.map((w) => w.score));
    const norm = (s) => (hi > lo ? (s - lo) / (hi - lo) : 0.5);
    $("#file-head").replaceChildren(
      el("h2", {}, f.path),
      el("div", { class: "hint" }, `${f.window_count} windows · ${f.duration ? f.duration.toFixed(1) : "?"} s · ${f.codec || ""} · ${f.status}`
        + (scoring.query ? ` · scored against “${scoring.query}”` : scoring.labels ? ` · scored against labels ${scoring.labels}` : "")),
      f.query_texts ? el("div", { class: "texts" }, `embedded: ${f.query_texts.join(" | ")}`) : "");
    const label = (w) => `${f.path} ${fmtTime(w.start)}–${fmtTime(w.end)}`;
    $("#file-strip").replaceChildren(...f.windows.map((w) => el("div", {
      class: "cell", "data-window": w.id, title: `${fmtTime(w.start)}–${fmtTime(w.end)} score ${fmtScore(w.score)}`,
      style: `background:${w.score === null || w.score === undefined ? "#dfe3e8" : scoreColour(norm(w.score))}`,
      onclick: () => play(w.id, label(w)) })));
    $("#file-windows tbody").replaceChildren(...f.windows.map((w) => el("tr", {},
      el("td", {}, w.id), el("td", {}, `${fmtTime(w.start)}–${fmtTime(w.end)}`), el("td", { class: "score" }, fmtScore(w.score)),
      el("td", {}, w.label || ""), el("td", { class: "hint" }, Object.entries(w.tags).map(([k, v]) => `${k}=${v}`).join(" ")),
      el("td", { class: "model-tags" }, Object.entries(w.model_tags || {}).map(([model, pairs]) =>
        `${model}: ${pairs.map((p) => `${p.label} ${fmtScore(p.score)}`).join(", ")}`).join(" · ")),
      el("td", {}, playButton(w.id, label(w))))));
    $("#file-windows").hidden = false;
  });
}

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
  document.querySelectorAll("#classify-table th.sortable").forEach((th) => th.addEventListener("click", () => sortBy(th.dataset.sort)));
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
