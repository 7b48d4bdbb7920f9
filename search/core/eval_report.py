"""The evaluation report as one self-contained HTML page: the report's JSON, the renderer and its style inlined,
the plots drawn as inline SVG; it loads nothing from anywhere. The page's Evaluate tab uses the same renderer.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

HERE = Path(__file__).parent
SCRIPT = HERE / "eval_report.js"
STYLE = HERE / "eval_report.css"

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<div id="report"></div>
<script type="application/json" id="report-data">{data}</script>
<script>{script}</script>
<script>SoundsiftEvalReport.render(document.getElementById("report"), JSON.parse(document.getElementById("report-data").textContent));</script>
</body>
</html>
"""


def script() -> str:
    """The renderer (defines ``window.SoundsiftEvalReport.render(container, report)``)."""
    return SCRIPT.read_text(encoding="utf-8")


def style() -> str:
    """The report's CSS."""
    return STYLE.read_text(encoding="utf-8")


def _json_in_html(document: dict) -> str:
    # Inside <script>, "</" would end the element: JSON lets "/" be escaped, and "<!--" never appears then.
    return json.dumps(document, ensure_ascii=False).replace("</", "<\\/").replace("<!--", "<\\u0021--")


def report_html(report) -> str:
    """The report (an `EvalReport` or its dict) as a self-contained HTML page."""
    document = report.model_dump(mode="json") if hasattr(report, "model_dump") else dict(report)
    title = f"soundsift eval: {len(document.get('labels', []))} labels, {document.get('clips', 0)} clips"
    return _PAGE.format(title=html.escape(title), style=style(), data=_json_in_html(document), script=script())


def write_html(report, path: str | Path) -> Path:
    """Write the HTML report atomically."""
    target = Path(path).expanduser()
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(report_html(report), encoding="utf-8")
    os.replace(tmp, target)
    return target
