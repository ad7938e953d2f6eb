"""Escaping for every output medium keytrail writes: the one place per medium.

Log content is attacker-influenced (principal names, Vault display names, user agents,
key aliases, request URIs), and keytrail's outputs are read by terminals, browsers,
spreadsheets, graph tools and search engines. Every writer passes log-derived text
through the function for its medium:

  terminal(v)        table printers, status and error lines (C0/C1 controls incl. ESC,
                     CSI/OSC introducers, DEL, bidi overrides/isolates, line separators -> '?')
  html_text(v)       the HTML report (metacharacters, quotes; controls/bidi made visible;
                     the report also has a strict CSP)
  csv_cell(v)        CSV exports (spreadsheet formula guard)
  xml_text(v)        GraphML / XML (XML 1.0 metacharacters and characters XML 1.0 forbids)
  json_line(obj)     NDJSON files and `--json` output (JSON, plus C1/bidi/U+2028 escaped)
  search_document(d) documents sent to Elasticsearch/OpenSearch (json_line's bytes)

It lives in `parsers/` (the bottom layer) only so that detectors, dashboards and
pipelines can all import it; it knows nothing of parsing. Secrets are a different job:
parsers/scrub.py removes them at parse time, before any of this runs.
"""

from __future__ import annotations

import html
import re
from typing import Any, Final

import orjson

# Characters that move the cursor, start escape sequences or reorder text on a terminal.
TERMINAL_UNSAFE: Final[frozenset[int]] = frozenset(
    [*range(0x00, 0x20), *range(0x7F, 0xA0),  # C0 (incl. ESC, BEL, CR, LF), DEL, C1 (CSI, OSC)
     0x061C, 0x200E, 0x200F,  # Arabic letter mark, LRM, RLM
     *range(0x202A, 0x202F),  # LRE RLE PDF LRO RLO (U+202E: right-to-left override)
     *range(0x2066, 0x206A),  # LRI RLI FSI PDI
     0x2028, 0x2029])  # line / paragraph separator
_TERMINAL_TABLE: Final[dict[int, str]] = dict.fromkeys(TERMINAL_UNSAFE, "?")
_TERMINAL_TEXT_TABLE: Final[dict[int, str]] = {
    k: v for k, v in _TERMINAL_TABLE.items() if k != 0x0A}


def terminal(value: Any) -> str:
    """One value for a terminal cell or line: every unsafe character becomes '?'."""
    return "" if value is None else str(value).translate(_TERMINAL_TABLE)


def terminal_text(text: str) -> str:
    """Multi-line text for a terminal: as terminal(), but line feeds are kept."""
    return text.translate(_TERMINAL_TEXT_TABLE)


_HTML_VISIBLE: Final[dict[int, str]] = {
    c: f"\\u{c:04x}" for c in TERMINAL_UNSAFE if c not in (0x09, 0x0A)}


def html_text(value: Any) -> str:
    """Text or attribute value for HTML: metacharacters and quotes escaped; controls and
    bidi overrides shown as visible `\\uXXXX` (they are HTML parse errors, and an RLO
    would let a name display reversed in the audit report)."""
    return html.escape("" if value is None else str(value).translate(_HTML_VISIBLE),
                       quote=True)


# Leading characters spreadsheet imports treat as a formula, after trimming the
# whitespace some of them trim: ASCII and fullwidth = + - @, and TAB/CR/LF/space.
_FORMULA_START: Final[frozenset[str]] = frozenset("=+-@\t\r\n \u3000＝＋－＠﹦﹢﹣﹫")


def csv_cell(value: Any) -> str:
    """One CSV cell. A string that a spreadsheet could run as a formula gets a leading
    apostrophe (OWASP CSV-injection guidance); booleans are 'true'/'false'."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    s = str(value)
    if isinstance(value, str) and s[:1] in _FORMULA_START:
        return "'" + s
    return s


# XML 1.0 allows TAB, LF, CR, and U+0020..U+D7FF, U+E000..U+FFFD, U+10000..U+10FFFF.
_XML_INVALID: Final = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_placeholder(m: re.Match[str]) -> str:
    return f"\\u{ord(m.group()):04x}"


def xml_text(value: Any) -> str:
    """Text or (double-quoted) attribute value for XML 1.0: metacharacters escaped, and
    characters XML 1.0 cannot carry at all (C0 controls, lone surrogates, U+FFFE/FFFF)
    written as the visible text `\\uXXXX`, so one hostile name cannot make the whole
    file invalid and two names differing only there stay two nodes."""
    s = _XML_INVALID.sub(_xml_placeholder, "" if value is None else str(value))
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("\t", "&#9;").replace("\n", "&#10;")
            .replace("\r", "&#13;"))


# orjson escapes C0 controls; these are left raw and can still act on a terminal or a
# JavaScript parser (U+2028/2029), so they are written as \\uXXXX (same JSON value).
_JSON_RAW_UNSAFE: Final = re.compile(
    "[\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def _json_escape(m: re.Match[str]) -> str:
    return f"\\u{ord(m.group()):04x}"


def json_bytes(obj: Any, option: int = 0) -> bytes:
    """orjson.dumps(obj), with terminal-unsafe characters escaped inside strings."""
    raw = orjson.dumps(obj, option=option)
    if raw.isascii():
        return raw
    text = raw.decode("utf-8")
    return _JSON_RAW_UNSAFE.sub(_json_escape, text).encode("utf-8")


def json_line(obj: Any) -> str:
    """One NDJSON line (with its newline) for files and `--json` output."""
    return json_bytes(obj).decode("utf-8") + "\n"


def search_document(doc: Any) -> bytes:
    """A document body for the search engine: the same escaping as json_line."""
    return json_bytes(doc)
