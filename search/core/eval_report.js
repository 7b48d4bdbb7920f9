/* The evaluation report drawn in the browser: summary, per-label table, variants, confusion matrix, one
   precision-recall curve per label, a reliability diagram, the retrieval view and the misclassified clips.
   Used by the self-contained HTML report (`soundsift eval --out`) and by the page's Evaluate tab. Everything is
   built with DOM calls (text through textContent), plots as inline SVG; nothing is loaded from anywhere. */
(function () {
  "use strict";
  const SVG = "http://www.w3.org/2000/svg";

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    for (const c of children || []) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = String(text);
    return node;
  }
  function num(v, digits) {
    return v === null || v === undefined ? "–" : Number(v).toFixed(digits === undefined ? 3 : digits);
  }
  function table(head, rows, cls) {
    const t = el("table", { class: cls || "eval-table" });
    t.append(el("thead", {}, [el("tr", {}, head.map((h) => el("th", {}, [h])))]));
    const body = el("tbody");
    const frag = document.createDocumentFragment();
    for (const r of rows) frag.append(el("tr", {}, r.map((c) => el("td", {}, [c]))));
    body.append(frag);
    t.append(body);
    return t;
  }
  function section(title, ...children) {
    return el("section", { class: "eval-section" }, [el("h3", {}, [title]), ...children]);
  }

  function confusion(conf) {
    const n = conf.labels.length;
    const cell = Math.max(8, Math.min(36, Math.floor(540 / Math.max(n, 1))));
    const pad = 130;
    const size = pad + n * cell + 10;
    const root = svg("svg", { width: size, height: size, class: "eval-confusion", role: "img" });
    root.append(svg("title", {}, "confusion matrix: rows true, columns predicted"));
    const g = svg("g", { transform: `translate(${pad},${pad})` });
    conf.matrix.forEach((row, i) => {
      const total = row.reduce((a, b) => a + b, 0) || 1;
      row.forEach((v, j) => {
        const share = v / total;
        const r = svg("rect", {
          x: j * cell, y: i * cell, width: cell - 1, height: cell - 1,
          fill: i === j ? `rgba(30,130,60,${0.1 + 0.9 * share})` : `rgba(200,50,40,${v ? 0.1 + 0.9 * share : 0.03})`,
        });
        r.append(svg("title", {}, `${conf.labels[i]} → ${conf.labels[j]}: ${v}`));
        g.append(r);
        if (v && cell >= 18) {
          g.append(svg("text", { x: j * cell + cell / 2, y: i * cell + cell / 2 + 4, "text-anchor": "middle", class: "eval-count" }, v));
        }
      });
    });
    const fs = Math.min(12, cell);
    conf.labels.forEach((name, i) => {
      const short = name.length > 18 ? name.slice(0, 17) + "…" : name;
      g.append(svg("text", { x: -4, y: i * cell + cell / 2 + 4, "text-anchor": "end", "font-size": fs }, short));
      g.append(svg("text", { transform: `translate(${i * cell + cell / 2 + 4},-4) rotate(-60)`, "font-size": fs }, short));
    });
    root.append(g);
    return root;
  }

  function axes(g, w, h, xLabel, yLabel) {
    g.append(svg("rect", { x: 0, y: 0, width: w, height: h, class: "eval-frame" }));
    for (const t of [0, 0.5, 1]) {
      g.append(svg("text", { x: t * w, y: h + 12, "text-anchor": "middle", class: "eval-tick" }, t));
      g.append(svg("text", { x: -4, y: h - t * h + 3, "text-anchor": "end", class: "eval-tick" }, t));
    }
    g.append(svg("text", { x: w / 2, y: h + 24, "text-anchor": "middle", class: "eval-axis" }, xLabel));
    g.append(svg("text", { transform: `translate(-22,${h / 2}) rotate(-90)`, "text-anchor": "middle", class: "eval-axis" }, yLabel));
  }

  function prCurve(label, points, ap) {
    const w = 150, h = 110;
    const root = svg("svg", { width: w + 40, height: h + 48, class: "eval-pr", role: "img" });
    root.append(svg("title", {}, `precision-recall curve of ${label}`));
    root.append(svg("text", { x: 30, y: 11, class: "eval-plot-title" }, `${label.length > 22 ? label.slice(0, 21) + "…" : label} (AP ${num(ap, 2)})`));
    const g = svg("g", { transform: "translate(30,16)" });
    axes(g, w, h, "recall", "precision");
    if (points.length) {
      const d = points.map(([r, p]) => `${(r * w).toFixed(1)},${(h - p * h).toFixed(1)}`).join(" ");
      g.append(svg("polyline", { points: d, class: "eval-line" }));
    }
    root.append(g);
    return root;
  }

  function reliability(cal) {
    const w = 240, h = 200;
    const root = svg("svg", { width: w + 50, height: h + 50, class: "eval-reliability", role: "img" });
    root.append(svg("title", {}, "reliability diagram"));
    const g = svg("g", { transform: "translate(36,10)" });
    axes(g, w, h, "confidence", "accuracy");
    g.append(svg("line", { x1: 0, y1: h, x2: w, y2: 0, class: "eval-diagonal" }));
    for (const b of cal.bins) {
      if (!b.count) continue;
      const bar = svg("rect", {
        x: b.lo * w + 1, y: h - b.accuracy * h, width: (b.hi - b.lo) * w - 2, height: b.accuracy * h, class: "eval-bar",
      });
      bar.append(svg("title", {}, `${num(b.lo, 1)}–${num(b.hi, 1)}: ${b.count} clips, accuracy ${num(b.accuracy)}, confidence ${num(b.confidence)}`));
      g.append(bar);
      g.append(svg("circle", { cx: b.confidence * w, cy: h - b.confidence * h, r: 2.5, class: "eval-dot" }));
    }
    root.append(g);
    return root;
  }

  function render(container, report) {
    container.replaceChildren();
    container.classList.add("eval-report");
    const r = report;
    container.append(
      el("h2", {}, [`Evaluation of ${r.labels.length} labels on ${r.clips} clips`]),
      el("p", { class: "eval-meta" }, [
        `${r.sample} (${r.layout}${r.multilabel ? ", multi-label" : ""}) · policy ${r.policy} · template ${r.template || "–"}`,
      ]),
      table(
        ["accuracy", "top-5 accuracy", "macro-F1", "micro-F1", "mAP", "ECE"],
        [[num(r.accuracy), num(r.top5_accuracy), num(r.macro_f1), num(r.micro_f1), num(r.map), num(r.calibration.ece)]],
        "eval-table eval-summary"
      )
    );
    const notes = [];
    if (r.classes_without_label.length) notes.push(`classes without a label: ${r.classes_without_label.join(", ")}`);
    if (r.labels_without_examples.length) notes.push(`labels without examples: ${r.labels_without_examples.join(", ")}`);
    if (r.unlabelled_clips) notes.push(`${r.unlabelled_clips} clips of unlabelled classes not scored`);
    if (notes.length) container.append(el("ul", { class: "eval-notes" }, notes.map((n) => el("li", {}, [n]))));
    container.append(
      section(
        "Per label",
        table(
          ["label", "text", "precision", "recall", "F1", "AP", "support", "threshold"],
          r.per_label.map((p) => [p.label, p.text, num(p.precision), num(p.recall), num(p.f1), num(p.ap), p.support, num(p.threshold)])
        )
      )
    );
    if (r.variants.length > 1) {
      container.append(
        section(
          `Variants, ranked by ${r.multilabel ? "mAP" : "macro-F1"}`,
          table(
            ["rank", "policy", "template", "phrasing", "macro-F1", "mAP", "accuracy"],
            r.variants.map((v) => [v.rank, v.policy, v.template, v.name.split(" · ").slice(2).join(" · "), num(v.macro_f1), num(v.map), num(v.accuracy)])
          )
        )
      );
    }
    container.append(section("Confusion matrix (rows true, columns predicted)", confusion(r.confusion)));
    const curves = el("div", { class: "eval-curves" });
    r.per_label.forEach((p) => curves.append(prCurve(p.label, (r.pr_curves || {})[p.label] || [], p.ap)));
    container.append(section("Precision-recall per label", curves));
    container.append(section(`Reliability (ECE ${num(r.calibration.ece)})`, r.calibration.bins.length ? reliability(r.calibration) : el("p", {}, ["scores are not probabilities: no calibration"])));
    if (r.retrieval) {
      const q = r.retrieval;
      container.append(
        section(
          `Retrieval: each label as a search query (mAP ${num(q.map)})`,
          table(
            ["label", "recall@1", "recall@5", "recall@10", "AP"],
            [["mean", num(q.recall_at_1), num(q.recall_at_5), num(q.recall_at_10), num(q.map)]].concat(
              q.per_label.map((p) => [p.label, num(p.recall_at_1), num(p.recall_at_5), num(p.recall_at_10), num(p.ap)])
            )
          )
        )
      );
    }
    container.append(
      section(
        `Misclassified (${r.misclassified.length})`,
        table(
          ["path", "start", "end", "label", "predicted", "score"],
          r.misclassified.map((m) => [m.path, num(m.start, 2), m.end === null ? "end" : num(m.end, 2), m.label, m.predicted || "–", num(m.score)]),
          "eval-table eval-misclassified"
        )
      )
    );
    if (r.skipped.length) {
      container.append(section(`Skipped (${r.skipped.length})`, table(["where", "reason"], r.skipped.map((s) => [s.where, s.reason]))));
    }
    container.setAttribute("data-rendered", "1");
    return container;
  }

  window.SoundsiftEvalReport = { render };
})();
