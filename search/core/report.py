"""The alert report: per watch, alert counts per hour or day and the top matches (waveform, score, a player, a link
into the page), as one self-contained HTML file (report_template.html) or a JSON document."""

from __future__ import annotations

import base64
import html
import re
import time
from pathlib import Path
from string import Template
from typing import Any

import numpy as np

from indexer.errors import BadInput
from indexer.watch_store import WatchStore
from search.core.delivery import alert_document

TEMPLATE = Path(__file__).with_name("report_template.html")
_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
HOURLY_UP_TO_S = 2 * 86400  # spans up to two days are counted per hour, longer ones per day


def parse_since(text: str) -> float:
    """'24h', '30m', '7d', '2w' -> seconds; BadInput otherwise."""
    m = _SPAN.match(text or "")
    if not m or float(m.group(1)) <= 0:
        raise BadInput(f"--since takes a span such as 24h, 30m, 7d or 2w, not {text!r}")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def build_report(
    store,
    since: str | None = None,
    run_id: int | None = None,
    watch: str | None = None,
    top: int = 5,
    base_url: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The report document: the window of time, and per watch its counts per bucket and its top alerts."""
    now = time.time() if now is None else now
    if top < 1:
        raise BadInput("--top must be at least 1")
    start = None if run_id is not None else now - parse_since(since or "24h")
    ws = WatchStore(store)
    if watch is not None and ws.named(watch) is None and not ws.alert_counts(watch):
        raise BadInput(f"no watch named {watch!r}; see `soundsift watch list`")
    rows = ws.alerts(watch=watch, since=start, run_id=run_id)
    scope = f"run {run_id}" if run_id is not None else f"the last {since or '24h'}"
    if not rows:
        raise BadInput(f"no alerts in {scope}{f' for watch {watch!r}' if watch else ''}: nothing to report")
    first = start if start is not None else min(r.created_at for r in rows)
    bucket = 3600 if now - first <= HOURLY_UP_TO_S else 86400
    watches = []
    for name in sorted({r.watch for r in rows}):
        mine = [r for r in rows if r.watch == name]
        counts: dict[str, int] = {}
        for r in mine:
            key = time.strftime("%Y-%m-%d %H:00" if bucket == 3600 else "%Y-%m-%d", time.localtime(r.created_at))
            counts[key] = counts.get(key, 0) + 1
        best = sorted(mine, key=lambda r: (-r.score, r.id))[:top]
        watches.append(
            {
                "watch": name,
                "alerts": len(mine),
                "per": "hour" if bucket == 3600 else "day",
                "counts": [{"bucket": k, "alerts": v} for k, v in sorted(counts.items())],
                "top": [alert_document(r, base_url) for r in best],
            }
        )
    return {"scope": scope, "since": start, "until": now, "run_id": run_id, "generated_at": now, "watches": watches}


# -- HTML -----------------------------------------------------------------------------------------
def waveform_svg(audio: np.ndarray, width: int = 480, height: int = 60) -> str:
    """A min/max envelope of ``audio`` as an inline SVG path."""
    if not len(audio):
        return ""
    cols = min(width, len(audio))
    edges = np.linspace(0, len(audio), cols + 1).astype(int)
    mid = height / 2
    parts = []
    for x in range(cols):
        seg = audio[edges[x] : max(edges[x + 1], edges[x] + 1)]
        lo, hi = float(seg.min()), float(seg.max())
        parts.append(f"M{x} {mid - hi * mid:.1f}V{mid - lo * mid:.1f}")
    return (
        f'<svg class="wave" viewBox="0 0 {cols} {height}" preserveAspectRatio="none" width="{width}" height="{height}">'
        f'<path d="{"".join(parts)}" stroke="#2a6fb0" stroke-width="1" fill="none"/></svg>'
    )


def _bars(counts: list[dict]) -> str:
    peak = max(c["alerts"] for c in counts)
    rows = "".join(
        f'<tr><td>{html.escape(c["bucket"])}</td><td><span class="bar" style="width:{max(2, 200 * c["alerts"] // peak)}px">'
        f"</span> {c['alerts']}</td></tr>"
        for c in counts
    )
    return f'<table class="counts">{rows}</table>'


def render_html(doc: dict, clip_of=None, server_url: str | None = None) -> str:
    """The report as one HTML page. ``clip_of(alert) -> (mono samples, wav bytes or None)`` gives each top match's
    waveform and, with --embed-audio, its audio inline; otherwise the player streams from ``server_url``."""
    sections = []
    for w in doc["watches"]:
        items = []
        for a in w["top"]:
            audio, data = clip_of(a) if clip_of else (np.zeros(0, np.float32), None)
            if data is not None:
                src = "data:audio/wav;base64," + base64.b64encode(data).decode()
            elif server_url:
                src = f"{server_url.rstrip('/')}/windows/{a['window_id']}/audio"
            else:
                src = ""
            player = f'<audio controls preload="none" src="{html.escape(src)}"></audio>' if src else ""
            link = f' <a href="{html.escape(a["link"])}">open in soundsift</a>' if a.get("link") else ""
            items.append(
                f'<li><div class="score">{a["score"]:.4f}</div><div><div class="path">{html.escape(str(a["path"]))} '
                f'<span class="time">{a["start"]:.1f}-{a["end"]:.1f} s</span>{link}</div>'
                f"{waveform_svg(audio)}{player}</div></li>"
            )
        sections.append(
            f"<section><h2>{html.escape(w['watch'])} <small>{w['alerts']} alerts</small></h2>"
            f"<h3>alerts per {w['per']}</h3>{_bars(w['counts'])}<h3>top {len(w['top'])}</h3>"
            f'<ol class="top">{"".join(items)}</ol></section>'
        )
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(doc["generated_at"]))
    return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        title=html.escape(f"soundsift report: {doc['scope']}"),
        generated=html.escape(when),
        body="".join(sections),
    )
