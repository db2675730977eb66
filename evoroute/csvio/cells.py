"""One CSV cell, safe both ways: spreadsheet formulas escaped, credentials redacted.

Export is safe to open in a spreadsheet (OWASP's CSV-injection guidance): a text cell that a
spreadsheet could run as a formula is prefixed with a single quote. That is a cell whose first
character is a tab, carriage return or newline, or whose first non-whitespace character is one
of ``= + - @`` or anything that NFKC-normalises to one (fullwidth ``＝ ＋ － ＠``, small and
super/subscript forms, the minus sign ``−``). A cell that already starts with a quote followed
by such text gets one more quote, so import removes exactly the quote export added: every text
round-trips. Anything that looks like a credential is redacted (:mod:`evoroute.secrets`) on
export *and* on import. Cells of any size up to :data:`~evoroute.core.types.MAX_TEXT_CHARS`
round-trip (the csv module's 128 KiB field limit is raised).
"""

from __future__ import annotations

import csv
import json
import re
import sys
import unicodedata

from evoroute import secrets
from evoroute.core.types import MAX_TEXT_CHARS

_FORMULA_START = frozenset("=+-@\u2212")     # U+2212 MINUS SIGN: some spreadsheets take it as -


def formula_like(value: str) -> bool:
    """Would a spreadsheet run this as a formula (OWASP + leading space + NFKC forms)?"""
    if not value:
        return False
    if value[0] in "\t\r\n":
        return True
    stripped = value.lstrip()
    if not stripped:
        return False
    first = stripped[0]
    return first in _FORMULA_START or unicodedata.normalize("NFKC", first)[:1] in _FORMULA_START


def _needs_escape(value: str) -> bool:
    # quotes followed by formula-like text get one more quote, so unescape is exact
    return formula_like(value.lstrip("'"))


def escape_cell(value: str) -> str:
    """Prefix a quote to text a spreadsheet could run as a formula (CSV injection)."""
    return "'" + value if _needs_escape(value) else value


def unescape_cell(value: str) -> str:
    """Undo :func:`escape_cell` exactly: ``unescape_cell(escape_cell(v)) == v`` for every v."""
    if value.startswith("'") and _needs_escape(value[1:]):
        return value[1:]
    return value


def redact_secrets(text: str, env: list[tuple[str, str]] | None = None) -> str:
    """Credentials out of a cell (evoroute.secrets); empty cells stay empty."""
    return secrets.redact(text, env=env) if text else text


_JSON_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_JSON_UNESCAPE = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def redact_explanation(text: str, env: list[tuple[str, str]] | None) -> str:
    """Redact inside the JSON (its strings), so the cell stays valid JSON.

    Walking the ~260 strings of an explanation (its neighbours' texts) one by one made export
    slow, so the whole document is checked first: with its escapes decoded (none of them
    \\uXXXX, which could spell anything) every string it holds is a substring of it, and when
    neither that text nor the raw one can hold a secret the cell is returned as it is."""
    env_now = env if env is not None else secrets.env_secrets()
    if "\\u" not in text:
        plain = _JSON_ESCAPE.sub(lambda m: _JSON_UNESCAPE.get(m.group(1), m.group(1)), text)
        if not any(v in plain or v in text for _, v in env_now) \
                and not secrets.may_hold_secret(text) and not secrets.may_hold_secret(plain):
            return text
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return redact_secrets(text, env)
    return json.dumps(secrets.redact_json(obj, env=env), allow_nan=False)


def raise_csv_limit() -> None:
    """The csv module refuses fields over 128 KiB by default; allow MAX_TEXT_CHARS (+ quotes)
    so our own check names the column instead."""
    want = MAX_TEXT_CHARS * 4 + 16
    if csv.field_size_limit() < want:
        csv.field_size_limit(min(want, sys.maxsize))
