"""A report as sections of text, figures and tables, rendered to self-contained HTML or Markdown.

The HTML embeds every image as a data URI, so the one file opens offline from disk; the
Markdown version links to PNG files in a folder next to it.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

DPI = 100


@dataclass
class Text:
    """A paragraph; ``links`` maps a figure id to the phrase in the text that links to it."""

    text: str
    links: dict[str, str] = field(default_factory=dict)


@dataclass
class Picture:
    """A PNG figure with an id (its anchor) and a caption."""

    id: str
    png: bytes
    caption: str = ""

    @classmethod
    def of(cls, id: str, fig: Figure, caption: str = "") -> Picture:
        """Render a matplotlib figure to PNG."""
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI)
        return cls(id, buffer.getvalue(), caption)


@dataclass
class Gallery:
    """Pictures of one kind (a variant's each) side by side, in as many columns as the page has room
    for, each captioned with what tells it apart; ``caption`` says what they all show."""

    pictures: list[Picture]
    caption: str = ""


@dataclass
class Table:
    """A table; cells in ``bold`` (pairs of row position and column name) are shown in bold; the first
    column and those in ``text`` are aligned left, the others (numbers) right."""

    frame: pd.DataFrame
    caption: str = ""
    bold: set[tuple[int, str]] = field(default_factory=set)
    text: tuple[str, ...] = ()

    def left(self, column: str) -> bool:
        return column == self.frame.columns[0] or column in self.text


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Text | Picture | Gallery | Table] = field(default_factory=list)


@dataclass
class Document:
    title: str
    sections: list[Section] = field(default_factory=list)
    subtitle: str = ""


def slug(text: str) -> str:
    """A file- and anchor-safe name."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "item"


def _cell(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.4g}"
    return str(value)


# ---------------------------------------------------------------------------- HTML
STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.5}
h1{margin-bottom:.2em} .subtitle{color:#666;margin-top:0}
nav ol{columns:2} section{margin-top:2.5em} img{max-width:100%;height:auto;border:1px solid #eee;box-sizing:border-box}
figure{margin:1.5em 0} figcaption{color:#555;font-size:.92em}
table{border-collapse:collapse;margin:1em 0;font-size:.92em} th,td{border:1px solid #ccc;padding:.3em .6em;
text-align:right} th{background:#f4f4f4} td:first-child,th:first-child,.left{text-align:left}
caption{caption-side:bottom;color:#555;font-size:.9em;padding-top:.3em;text-align:left}
.wide{overflow-x:auto}
.cells{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,500px),1fr));gap:0 1em}
.cells figure{margin:.5em 0} .cells figure:target{grid-column:1/-1}
"""


def _html_text(block: Text) -> str:
    text = html.escape(block.text)
    for figure_id, phrase in block.links.items():
        escaped = html.escape(phrase)
        text = text.replace(escaped, f'<a href="#fig-{slug(figure_id)}">{escaped}</a>', 1)
    return f"<p>{text}</p>"


def _html_table(block: Table) -> str:
    align = {c: ' class="left"' if block.left(c) else "" for c in block.frame.columns}
    head = "".join(f"<th{align[c]}>{html.escape(str(c))}</th>" for c in block.frame.columns)
    rows = []
    for i, (_, row) in enumerate(block.frame.iterrows()):
        cells = []
        for column in block.frame.columns:
            value = html.escape(_cell(row[column]))
            value = f"<b>{value}</b>" if (i, column) in block.bold else value
            cells.append(f"<td{align[column]}>{value}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    caption = f"<caption>{html.escape(block.caption)}</caption>" if block.caption else ""
    table = f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    return f'<div class="wide">{table}</div>'  # scrolls sideways on a narrow window, not the page


def _html_picture(block: Picture, enlarge: bool = False) -> str:
    """A figure; with ``enlarge``, the image links to its own anchor, which the style widens to the whole
    row of its gallery."""
    data = base64.b64encode(block.png).decode("ascii")
    caption = html.escape(block.caption or block.id)
    anchor = f"fig-{slug(block.id)}"
    image = f'<img src="data:image/png;base64,{data}" alt="{caption}">'
    if enlarge:
        image = f'<a href="#{anchor}" title="show at full width">{image}</a>'
    return f'<figure id="{anchor}">{image}<figcaption>{caption}</figcaption></figure>'


def _html_gallery(block: Gallery) -> str:
    cells = "".join(_html_picture(picture, enlarge=True) for picture in block.pictures)
    hint = "click a picture to see it at full width"
    caption = html.escape(f"{block.caption} ({hint})" if block.caption else hint.capitalize())
    return f'<figure><div class="cells">{cells}</div><figcaption>{caption}</figcaption></figure>'


def render_html(doc: Document) -> str:
    """One self-contained HTML page: contents, then every section."""
    render = {Text: _html_text, Table: _html_table, Picture: _html_picture, Gallery: _html_gallery}
    toc = "".join(f'<li><a href="#{s.id}">{html.escape(s.title)}</a></li>' for s in doc.sections)
    body = "".join(
        f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>'
        + "".join(render[type(b)](b) for b in s.blocks) + "</section>"
        for s in doc.sections
    )
    subtitle = f'<p class="subtitle">{html.escape(doc.subtitle)}</p>' if doc.subtitle else ""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(doc.title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{html.escape(doc.title)}</h1>{subtitle}<nav><ol>{toc}</ol></nav>{body}</body></html>")


# ---------------------------------------------------------------------------- Markdown
def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _md_table(block: Table) -> str:
    columns = list(block.frame.columns)
    lines = ["| " + " | ".join(_md_escape(str(c)) for c in columns) + " |",
             "|" + "|".join(":---" if block.left(c) else "---:" for c in columns) + "|"]
    for i, (_, row) in enumerate(block.frame.iterrows()):
        cells = [_md_escape(_cell(row[c])) for c in columns]
        cells = [f"**{v}**" if (i, c) in block.bold else v for v, c in zip(cells, columns)]
        lines.append("| " + " | ".join(cells) + " |")
    if block.caption:
        lines += ["", f"*{block.caption}*"]
    return "\n".join(lines)


def _md_picture(block: Picture, figures_dir: Path, link_prefix: str) -> str:
    """The picture written to ``figures_dir``, linked with its anchor, and its caption."""
    name = f"{slug(block.id)}.png"
    (figures_dir / name).write_bytes(block.png)
    text = f'<a id="{slug(block.id)}"></a>\n\n![{block.caption or block.id}]({link_prefix}/{name})'
    return text + (f"\n\n*{block.caption}*" if block.caption else "")


def render_markdown(doc: Document, figures_dir: Path, link_prefix: str) -> str:
    """Markdown text; every picture is written to ``figures_dir`` and linked as ``link_prefix/<id>.png``."""
    figures_dir.mkdir(parents=True, exist_ok=True)
    parts = [f"# {doc.title}", ""]
    if doc.subtitle:
        parts += [f"*{doc.subtitle}*", ""]
    for section in doc.sections:
        parts += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Text):
                text = block.text
                for figure_id, phrase in block.links.items():
                    text = text.replace(phrase, f"[{phrase}](#{slug(figure_id)})", 1)
                parts.append(text)
            elif isinstance(block, Table):
                parts.append(_md_table(block))
            elif isinstance(block, Gallery):
                pictures = [_md_picture(picture, figures_dir, link_prefix) for picture in block.pictures]
                parts.append("\n\n".join(pictures + ([f"*{block.caption}*"] if block.caption else [])))
            else:
                parts.append(_md_picture(block, figures_dir, link_prefix))
            parts.append("")
    return "\n".join(parts)
