// The Evaluate tab: a labelled sample on the server measured against a label set (POST /eval), drawn by the
// report's renderer (/eval/report.js, the same one the HTML report inlines); and the classify form's label-set
// choice (GET /label-sets). Uses app.js's helpers ($, api, guarded).
"use strict";

(function loadRenderer() {
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = "/eval/report.css";
  document.head.append(link);
  const script = document.createElement("script");
  script.src = "/eval/report.js";
  document.head.append(script);
})();

function evalLines(id) {
  return $(id).value.split("\n").map((s) => s.trim()).filter(Boolean);
}

async function runEval(event) {
  event.preventDefault();
  await guarded(async () => {
    const sample = $("#eval-sample").value.trim();
    if (!sample) throw new Error("give the path of a labelled sample on the server (class folders or a manifest)");
    const body = { sample };
    const labels = $("#eval-labels").value.trim();
    if (labels) body.labels = labels;
    const templates = evalLines("#eval-templates");
    if (templates.length) body.prompt_templates = templates;
    const variants = evalLines("#eval-variants");
    if (variants.length) body.variants = variants;
    const policies = $("#eval-policies").value.split(",").map((s) => s.trim()).filter(Boolean);
    if (policies.length) body.policies = policies;
    const target = $("#eval-target").value.trim();
    if (target) body.target_precision = Number(target);
    const saveAs = $("#eval-save").value.trim();
    if (saveAs) body.save_as = saveAs;
    const status = $("#eval-status");
    status.textContent = "embedding the sample's clips and scoring…";
    const started = performance.now();
    try {
      const report = await api("/eval", { method: "POST", body });
      showEvalReport(report);
      status.textContent = `done in ${((performance.now() - started) / 1000).toFixed(1)} s`
        + ` (${report.embedded_windows} windows embedded, ${report.cached_clips} clips from the cache)`;
      if (saveAs) loadLabelSets();
    } catch (err) {
      status.textContent = "";
      throw err;
    }
  });
}

function showEvalReport(report) {
  const target = $("#eval-report");
  if (!window.SoundsiftEvalReport) throw new Error("the report renderer has not loaded yet: try again");
  window.SoundsiftEvalReport.render(target, report);
}

async function loadLabelSets() {
  const select = $("#classify-label-set");
  if (!select) return;
  const doc = await api("/label-sets");
  const current = select.value;
  select.replaceChildren(el("option", { value: "" }, "none (type labels)"), ...doc.label_sets.map((n) => el("option", { value: n }, n)));
  if (doc.label_sets.includes(current)) select.value = current;
}

document.addEventListener("DOMContentLoaded", () => {
  $("#eval-form").addEventListener("submit", runEval);
  // the stored label sets, fresh each time the classify tab opens (one may have been saved meanwhile)
  document.querySelector("nav button[data-tab=classify]").addEventListener("click", () => guarded(loadLabelSets));
  if (state.apiKey) guarded(loadLabelSets);
});
