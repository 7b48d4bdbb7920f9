// What is said: the file view's transcript segments under the waveform; a click plays from the segment's start.
// app.js announces each opened file with a "soundsift:file" event; el, fmtTime and playFrom are app.js globals.
"use strict";

function renderTranscript(f) {
  const box = document.getElementById("file-transcript");
  const segments = f.transcript || [];
  box.hidden = segments.length === 0;
  const startOf = new Map(f.windows.map((w) => [w.id, w.start]));
  box.replaceChildren(...segments.map((s) => {
    const offset = startOf.has(s.window_id) ? startOf.get(s.window_id) : s.start;
    return el("button", {
      type: "button", class: "segment", "data-start": String(s.start), "data-window": String(s.window_id),
      title: `${s.model}${s.language ? " · " + s.language : ""}: play from ${fmtTime(s.start)}`,
      onclick: () => playFrom({ windowId: s.window_id, offset }, s.start - offset, `${f.path} ${fmtTime(s.start)}`),
    }, el("span", { class: "when" }, `${fmtTime(s.start)}–${fmtTime(s.end)}`), el("span", { class: "said" }, s.text));
  }));
}

document.addEventListener("soundsift:file", (e) => renderTranscript(e.detail.file));
