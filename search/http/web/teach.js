// The Teach tab and the marks on every hit: "more like this" (POST /search with `like`), ✓/✗ marking a window as
// an example of the chosen class (POST /examples), the examples and probes of the index (GET /examples, /probes),
// training a probe as a server job (POST /probes/{name}/train, followed on /jobs/{id}) and scoring with it.
// Uses app.js's helpers ($, el, api, guarded, renderSearch, fmtTime, fmtScore, showTab).
"use strict";

const teach = { cls: localStorage.getItem("soundsift-teach-class") || "" };

function teachClass() {
  const cls = ($("#teach-class").value || "").trim();
  if (!cls) throw new Error("choose or type a class in the 'class' box first (the first ✓ creates it)");
  teach.cls = cls;
  localStorage.setItem("soundsift-teach-class", cls);
  return cls;
}

async function moreLikeThis(windowId) {
  await guarded(async () => {
    const doc = await api("/search", { method: "POST", body: { like: [windowId], k: Number($("#k").value) || 10 } });
    showTab("search");
    renderSearch(doc);
  });
}

async function mark(windowId, negative, button) {
  await guarded(async () => {
    const cls = teachClass();
    await api("/examples", { method: "POST", body: { class: cls, targets: [windowId], negative, source: "page" } });
    button.classList.add("marked");
    button.title = `${negative ? "counter-example" : "example"} of ${cls}`;
    await loadClasses();
  });
}

function markButtons(windowId) {
  const wid = Number(windowId);
  const box = el("span", { class: "teach-actions" },
    el("button", { type: "button", class: "like", title: "more like this", onclick: () => moreLikeThis(wid) }, "more like this"),
    el("button", { type: "button", class: "mark-yes", title: "an example of the chosen class",
      onclick: (e) => mark(wid, false, e.currentTarget) }, "✓"),
    el("button", { type: "button", class: "mark-no", title: "not the chosen class",
      onclick: (e) => mark(wid, true, e.currentTarget) }, "✗"));
  return box;
}

// Every hit (search), window row (classify, file view) gets the buttons once, whenever app.js draws them.
function decorate(root) {
  root.querySelectorAll("li.hit[data-window], tr.window-row[data-window], #file-windows tr[data-window]").forEach((node) => {
    if (node.querySelector(".teach-actions")) return;
    const actions = markButtons(node.dataset.window);
    if (node.tagName === "TR") node.append(el("td", {}, actions));
    else (node.querySelector(".hit-actions") || node).append(actions);
  });
}

async function loadClasses() {
  const doc = await api("/examples");
  $("#teach-classes").replaceChildren(...doc.classes.map((c) => el("option", { value: c })));
  const counts = {};
  for (const e of doc.examples) {
    const c = (counts[e.class] ||= { pos: 0, neg: 0, stale: 0 });
    if (e.stale) c.stale += 1; else if (e.positive) c.pos += 1; else c.neg += 1;
  }
  $("#teach-examples").replaceChildren(el("table", { class: "matrix" },
    el("thead", {}, el("tr", {}, ...["class", "✓", "✗", "stale"].map((h) => el("th", {}, h)))),
    el("tbody", {}, ...Object.entries(counts).map(([c, n]) => el("tr", { "data-class": c },
      el("td", {}, c), el("td", {}, n.pos), el("td", {}, n.neg), el("td", {}, n.stale))))));
  return doc;
}

async function loadProbes() {
  const doc = await api("/probes");
  $("#teach-probes").replaceChildren(...doc.probes.map((p) => el("div", { class: "probe", "data-probe": p.name },
    el("strong", {}, `${p.name} v${p.version}`),
    el("span", {}, ` ${p.classes.join(", ")}; cv accuracy ${p.metrics.cv_accuracy === undefined ? "n/a" : fmtScore(p.metrics.cv_accuracy)}`),
    p.examples_changed ? el("span", { class: "hint" }, " (examples changed: train again)") : "",
    ...p.classes.map((c) => el("button", { type: "button", class: "probe-search", onclick: () => searchProbe(p.name, c) }, `top ${c}`)))));
}

async function searchProbe(name, cls) {
  await guarded(async () => {
    const doc = await api("/search", { method: "POST", body: { probe: `${name}:${cls}`, k: Number($("#k").value) || 10 } });
    showTab("search");
    renderSearch(doc);
  });
}

async function runTrain(event) {
  event.preventDefault();
  await guarded(async () => {
    const name = $("#train-name").value.trim();
    const classes = $("#train-classes").value.trim();
    if (!name || !classes) throw new Error("give the probe a name and the classes to tell apart");
    const body = { classes };
    const background = $("#train-background").value.trim();
    if (background) body.background = Number(background);
    const status = $("#train-status");
    status.textContent = "training…";
    let job = await api(`/probes/${encodeURIComponent(name)}/train`, { method: "POST", body });
    while (job.status === "queued" || job.status === "running") {
      await new Promise((r) => setTimeout(r, 300));
      job = await api(`/jobs/${job.id}`);
    }
    if (job.status !== "completed") throw new Error(`training failed: ${job.error}`);
    const m = job.train.result.metrics;
    status.textContent = `trained ${name} v${job.train.result.version}: cv accuracy ${m.cv_accuracy === undefined ? "n/a" : fmtScore(m.cv_accuracy)}`;
    await loadProbes();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("#teach-class").value = teach.cls;
  $("#train-form").addEventListener("submit", runTrain);
  document.querySelector("nav button[data-tab=teach]").addEventListener("click", () => guarded(async () => {
    await loadClasses();
    await loadProbes();
  }));
  const watch = new MutationObserver(() => decorate(document.body));
  watch.observe(document.querySelector("main"), { childList: true, subtree: true });
  decorate(document.body);
});
