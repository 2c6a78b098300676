"""Plugin and record strings made safe for each place they are shown: terminal, rich, CSV."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

WHITESPACE = re.compile(r"[\t\n\r\x0b\x0c\x85\u2028\u2029]+")
BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
FORMULA_START = ("=", "+", "-", "@")


def plain(text: Any) -> str:
    """One line of printable text: line breaks and tabs become spaces; other control
    characters (ESC, BEL, DEL, C1) and bidi overrides are shown escaped (`\\x1b`), never sent."""
    s = WHITESPACE.sub(" ", str(text))
    return "".join(_visible(ch) for ch in s)


def _visible(ch: str) -> str:
    if ch in BIDI or unicodedata.category(ch) == "Cc":
        code = ord(ch)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return ch


def rich_text(text: Any) -> str:
    """plain(text) for a place where rich reads markup: `[bold]`, `[link=…]` stay text."""
    from rich.markup import escape

    return escape(plain(text))


def csv_cell(value: Any) -> Any:
    """A CSV value a spreadsheet shows as text: a string that starts like a formula
    (= + - @) gets a leading ', except a plain number such as -1.5; other values pass."""
    if not isinstance(value, str):
        return value
    value = plain(value)
    if value.startswith(FORMULA_START) and not NUMBER.fullmatch(value):
        return "'" + value
    return value
