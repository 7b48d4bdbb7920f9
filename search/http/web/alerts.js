// The Alerts tab: what the watches fired (GET /alerts, newest pages on demand) and their delivery state (GET /watches).
// Uses app.js's helpers ($, el, api, guarded, showTab, openFile). A link #file=ID&window=ID&t=S opens that file.
"use strict";

const alertsState = { cursor: null, watch: "" };

function alertRow(a) {
  return el("tr", {},
    el("td", {}, new Date(a.time * 1000).toLocaleString()),
    el("td", {}, a.watch),
    el("td", { class: "num" }, fmtScore(a.score)),
    el("td", {}, `${fmtTime(a.start)}–${fmtTime(a.end)}`),
    el("td", {}, el("button", { type: "button", class: "link path", title: a.path, onclick: () => openFile(a.file_id) }, a.path)),
    el("td", {}, el("audio", { controls: "", preload: "none", src: `/windows/${a.window_id}/audio` })));
}

async function loadWatches() {
  const watches = await api("/watches");
  const body = $("#watch-list tbody");
  body.replaceChildren(...watches.map((w) => el("tr", {},
    el("td", {}, w.name), el("td", {}, w.kind), el("td", { class: "num" }, w.alerts),
    el("td", {}, w.targets.join(", ") || "–"),
    el("td", {}, `${w.pending} pending, ${w.delivered} delivered, ${w.failing} failing`),
    el("td", { class: "error-text" }, w.last_error || ""))));
  const pick = $("#alert-watch");
  const chosen = pick.value;
  pick.replaceChildren(el("option", { value: "" }, "all watches"), ...watches.map((w) => el("option", { value: w.name }, w.name)));
  pick.value = chosen;
}

async function loadAlerts(more = false) {
  const params = new URLSearchParams({ limit: "50" });
  if (alertsState.watch) params.set("watch", alertsState.watch);
  if (more && alertsState.cursor) params.set("cursor", alertsState.cursor);
  const page = await api(`/alerts?${params}`);
  const body = $("#alert-list tbody");
  const rows = page.alerts.map(alertRow);
  if (more) body.append(...rows); else body.replaceChildren(...rows);
  alertsState.cursor = page.next_cursor || null;
  $("#alert-more").hidden = !alertsState.cursor;
  $("#alert-empty").hidden = body.children.length > 0;
}

function openAlertLink() {
  const hash = new URLSearchParams(location.hash.slice(1));
  const fileId = hash.get("file");
  if (fileId && /^\d+$/.test(fileId)) guarded(() => openFile(Number(fileId)));
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelector('nav button[data-tab="alerts"]').addEventListener("click", () => guarded(async () => {
    await loadWatches();
    await loadAlerts();
  }));
  $("#alert-watch").addEventListener("change", (e) => { alertsState.watch = e.target.value; guarded(() => loadAlerts()); });
  $("#alert-more").addEventListener("click", () => guarded(() => loadAlerts(true)));
  window.addEventListener("hashchange", openAlertLink);
  openAlertLink();
});
