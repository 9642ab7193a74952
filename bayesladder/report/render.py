"""Rendering a :class:`~bayesladder.report.build.Report`: one self-contained HTML file (figures as
base64 PNG, no network), or Markdown with the PNGs in a folder beside it."""

from __future__ import annotations

import base64
import math
import re
from pathlib import Path

import jinja2
import pandas as pd

from bayesladder.errors import BayesLadderError
from bayesladder.files import atomic_write_bytes, atomic_write_text, check_writable
from bayesladder.report.build import Report

NUMERIC = re.compile(r"^[+-]?[\d.]+(e[+-]?\d+)?( \u2013 [+-]?[\d.]+(e[+-]?\d+)?)?$")  # '61.2', '+0.7', a range

HTML = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ report.title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1320px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
.banner { background: #fde2e1; border: 2px solid #c0392b; color: #7b1d13; padding: .8em 1em; font-weight: 600; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0 1.5em; }
th, td { border: 1px solid #ddd; padding: .25em .5em; text-align: right; }
th { background: #f3f3f3; text-align: left; } td.text { text-align: left; overflow-wrap: anywhere; } td.nw { white-space: nowrap; }
caption { text-align: left; font-weight: 600; padding: .3em 0; }
td.FAIL { background: #f8d7da; font-weight: 600; } td.warn { background: #fff3cd; } td.pass { background: #d4edda; }
figure { display: inline-block; margin: .5em; } img { max-width: 100%; } figcaption { font-size: .8em; color: #555; }
nav a { margin-right: 1em; } .scroll { overflow-x: auto; }
</style>
</head>
<body>
<h1>{{ report.title }}</h1>
{% if report.banner %}<div class="banner" id="banner" role="alert">{% for line in report.banner %}<div>{{ line }}</div>{% endfor %}</div>{% endif %}
<nav>{% for s in report.sections %}<a href="#{{ s.key }}">{{ s.title }}</a>{% endfor %}</nav>
{% for s in report.sections %}
<section id="{{ s.key }}">
<h2>{{ s.title }}</h2>
{% if s.text %}<p>{{ s.text }}</p>{% endif %}
{% for caption, table in s.tables %}<div class="scroll"><table aria-label="{{ caption }}"><caption>{{ caption }}</caption><thead><tr>{% for c in table.columns %}<th>{{ c }}</th>{% endfor %}</tr></thead>
<tbody>{% for row in rows(table) %}<tr>{% for cls, cell in row %}<td class="{{ cls }}">{{ cell }}</td>{% endfor %}</tr>{% endfor %}</tbody></table></div>
{% endfor %}
{% for caption, data in s.figures %}<figure><img alt="{{ caption }}" src="data:image/png;base64,{{ b64(data) }}"><figcaption>{{ caption }}</figcaption></figure>
{% endfor %}
</section>
{% endfor %}
</body>
</html>
"""


def html(report: Report) -> str:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(HTML)
    return template.render(report=report, rows=_rows, b64=lambda data: base64.b64encode(data).decode("ascii"))


def markdown(report: Report, link_prefix: str) -> tuple[str, dict[str, bytes]]:
    """Markdown text linking each figure as ``link_prefix/NAME.png``, and the figures (NAME.png -> PNG bytes)."""
    lines = [f"# {report.title}", ""]
    figures = {}
    for line in report.banner:
        lines += [f"> **{line}**", ""]
    for s in report.sections:
        lines += [f"## {s.title}", ""]
        if s.text:
            lines += [s.text, ""]
        for caption, table in s.tables:
            lines += [
                f"*{caption}*",
                "",
                "| " + " | ".join(map(str, table.columns)) + " |",
                "|" + "---|" * len(table.columns),
            ]
            for row in _rows(table):
                lines.append("| " + " | ".join(cell.replace("|", "\\|") for _, cell in row) + " |")
            lines.append("")
        for k, (caption, data) in enumerate(s.figures):
            name = f"{s.key}-{k + 1}-{_slug(caption)}.png"
            figures[name] = data
            lines += [f"![{caption}]({link_prefix}/{name})", ""]
    return "\n".join(lines), figures


def check_destination(path: str | Path, fmt: str) -> Path:
    """The report's file, refused before the report is built if it is not html/md or cannot be written."""
    path = Path(path)
    if fmt not in ("html", "md"):
        raise BayesLadderError(f"unknown --format '{fmt}'; use html or md")
    if fmt == "md":
        folder = figures_folder(path)
        if folder.exists() and not folder.is_dir():
            raise BayesLadderError(
                f"{folder} is a file; the Markdown report {path} puts its figures in a folder of that name: move the "
                "file or choose another -o"
            )
        check_writable(folder / "figure.png")
    return check_writable(path, example=f"report.{fmt}")


def figures_folder(path: Path) -> Path:
    """Where a Markdown report's figures go: a folder beside it, named after it."""
    return path.parent / f"{path.stem}_figures"


def write(report: Report, path: str | Path, fmt: str = "html") -> list[Path]:
    """Write the report atomically (the page appears complete or not at all); returns every file written, the
    page first. Markdown's figures are written into a folder beside it before the page."""
    path = check_destination(path, fmt)
    if fmt == "html":
        return [atomic_write_text(path, html(report))]
    folder = figures_folder(path)
    text, figures = markdown(report, folder.name)
    written = [atomic_write_bytes(folder / name, data) for name, data in figures.items()]
    return [atomic_write_text(path, text), *written]


def _rows(table: pd.DataFrame) -> list[list[tuple[str, str]]]:
    out = []
    for row in table.itertuples(index=False):
        cells = []
        for value in row:
            cls = "text"
            if value is None or (isinstance(value, float) and math.isnan(value)):
                text = "-"
            elif isinstance(value, (bool,)) or type(value).__name__ == "bool_":
                text = "yes" if value else "no"
            elif isinstance(value, float) or type(value).__name__.startswith("float"):
                text = _number(float(value))
                cls = ""
            else:
                text = str(value)
                cls = text if text in ("pass", "FAIL", "warn", "info") else ("" if NUMERIC.match(text) else "text")
            if cls == "text" and len(text) <= 24:
                cls = "text nw"  # short labels (run and task names) stay on one line
            cells.append((cls, text))
        out.append(cells)
    return out


def _number(v: float) -> str:
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
        return f"{v:.3g}"
    return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]
