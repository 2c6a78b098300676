"""A tiny document model (headings, text, tables, images) rendered to Markdown and to HTML."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

from attnbench.sanitize import plain

MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>|&~])")
MD_LEADING = re.compile(r"^([#+\-=])")
MD_NUMBERED = re.compile(r"^(\d+)([.)])")


@dataclass
class Cell:
    """A table cell: plain text (escaped when rendered) and whether it is the best of its row."""

    text: str
    best: bool = False
    wrap: bool = False  # long prose (a message): wraps, left-aligned


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Text:
    text: str
    warn: bool = False


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Cell]]
    caption: str = ""


@dataclass
class Image:
    path: Path
    alt: str
    css_class: str = ""  # "mask": a small picture floated beside the table that follows


@dataclass
class Doc:
    """What a report says, in order, independent of the output format."""

    title: str
    blocks: list[Heading | Text | Table | Image] = field(default_factory=list)

    def add(self, *blocks: Heading | Text | Table | Image) -> None:
        self.blocks.extend(blocks)


def md_escape(text: object) -> str:
    """Inline text safe in Markdown: one line, control characters shown escaped, punctuation
    backslash-escaped."""
    return MD_SPECIAL.sub(r"\\\1", " ".join(plain(text).split()))


def md_block(text: object) -> str:
    """A paragraph safe in Markdown: also no heading, list or rule made by its first characters."""
    escaped = MD_LEADING.sub(r"\\\1", md_escape(text))
    return MD_NUMBERED.sub(r"\1\\\2", escaped)


def to_markdown(doc: Doc, base: Path) -> str:
    """The document as Markdown; images as paths relative to base."""
    out = [f"# {md_escape(doc.title)}", ""]
    for b in doc.blocks:
        if isinstance(b, Heading):
            out += ["#" * min(b.level, 6) + " " + md_escape(b.text), ""]
        elif isinstance(b, Text):
            out += ["> **warning:** " + md_escape(b.text) if b.warn else md_block(b.text), ""]
        elif isinstance(b, Table):
            out += _md_table(b)
        else:
            rel = b.path.relative_to(base) if b.path.is_relative_to(base) else b.path
            out += [f"![{md_escape(b.alt)}]({rel.as_posix()})", ""]
    return "\n".join(out)


def _md_table(t: Table) -> list[str]:
    def cell(c: Cell) -> str:
        text = md_escape(c.text) if c.text else " "
        return f"**{text}**" if c.best else text

    lines = [f"*{md_escape(t.caption)}*", ""] if t.caption else []
    lines.append("| " + " | ".join(md_escape(h) for h in t.headers) + " |")
    lines.append("|" + "|".join("---" for _ in t.headers) + "|")
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in t.rows]
    return [*lines, ""]


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1200px;
padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right;vertical-align:top;
white-space:nowrap}
th:first-child,td:first-child{text-align:left}
th{background:#f3f3f3} td.best{background:#e6f4ea;font-weight:bold}
td.msg{white-space:normal;text-align:left;min-width:24em;max-width:48em}
caption{text-align:left;font-style:italic;padding:.3em 0}
.warn{background:#fff4e5;border-left:4px solid #f0a030;padding:.4em .8em}
figure{display:inline-block;margin:.5em 1em .5em 0} img{max-width:100%;height:auto}
figcaption{font-size:.8em;color:#555}
h2{clear:both} figure.mask{float:right;max-width:40%;margin:0 0 1em 1.5em}
figure.mask figcaption{max-width:28em}
"""


def html_escape(text: object) -> str:
    """Text safe in HTML: markup escaped, control characters shown escaped, one line."""
    return html.escape(plain(text))


def to_html(doc: Doc) -> str:
    """The document as one self-contained HTML page (images inlined as data URIs, no script)."""
    esc = html_escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{esc(doc.title)}</title><style>{CSS}</style></head><body>",
           f"<h1>{esc(doc.title)}</h1>"]
    for b in doc.blocks:
        if isinstance(b, Heading):
            level = min(max(b.level, 2), 6)
            out.append(f"<h{level}>{esc(b.text)}</h{level}>")
        elif isinstance(b, Text):
            out.append(f'<p class="warn">{esc(b.text)}</p>' if b.warn else f"<p>{esc(b.text)}</p>")
        elif isinstance(b, Table):
            out.append(_html_table(b))
        else:
            data = base64.b64encode(b.path.read_bytes()).decode("ascii")
            cls = f' class="{esc(b.css_class)}"' if b.css_class else ""
            out.append(f'<figure{cls}><img src="data:image/png;base64,{data}" '
                       f'alt="{esc(b.alt)}"><figcaption>{esc(b.alt)}</figcaption></figure>')
    out.append("</body></html>")
    return "\n".join(out)


def _html_table(t: Table) -> str:
    esc = html_escape
    rows = ["<table>"]
    if t.caption:
        rows.append(f"<caption>{esc(t.caption)}</caption>")
    rows.append("<tr>" + "".join(f"<th>{esc(h)}</th>" for h in t.headers) + "</tr>")
    for row in t.rows:
        cells = "".join(_html_cell(c) for c in row)
        rows.append(f"<tr>{cells}</tr>")
    rows.append("</table>")
    return "\n".join(rows)


def _html_cell(c: Cell) -> str:
    cls = " ".join(name for name, on in (("best", c.best), ("msg", c.wrap)) if on)
    attr = f' class="{cls}"' if cls else ""
    return f"<td{attr}>{html_escape(c.text)}</td>"
