"""Small shared streamlit helpers: error display next to a field, labels, formatting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from evoroute.core.errors import EvoRouteError, ValidationError
from evoroute.settings import DEFAULTS


def label_badge(text: str) -> None:
    """A caption saying where the numbers below come from."""
    st.caption(f":material/info: Numbers: **{text}**")


def field_error(errors: dict[str, str], field: str) -> None:
    """Show the error of ``field`` (if any) right under its widget."""
    if field in errors:
        st.error(errors[field], icon=":material/error:")


def run_action(fn: Callable[[], Any], *, field_errors_key: str | None = None) -> Any:
    """Call ``fn``; a user error becomes a message (by field when it has one), never a traceback.

    Returns fn's result, or None if it raised an EvoRouteError. A ValidationError with a
    ``field`` is stored under ``st.session_state[field_errors_key]`` so the form can show it
    beside that field; others are shown here.
    """
    if field_errors_key:
        st.session_state[field_errors_key] = {}
    try:
        return fn()
    except ValidationError as exc:
        if field_errors_key and exc.field:
            st.session_state[field_errors_key] = {exc.field: str(exc)}
        else:
            st.error(str(exc), icon=":material/error:")
    except EvoRouteError as exc:
        st.error(str(exc), icon=":material/error:")
    return None


def usd(x: float | None, digits: int = 4) -> str:
    return "–" if x is None else f"${x:,.{digits}f}"


def num(x: float | None, fmt: str = "{:.3f}") -> str:
    return "–" if x is None else fmt.format(x)


#: What a table shows in a cell with no value (never the word "None").
MISSING = "–"


def delta(diff: float | None, fmt: str, *, zero: str = "±0", inverse: bool = False) -> dict:
    """``st.metric`` keyword arguments for a change ``diff`` shown as ``fmt`` (``"{:+.3f}"``).

    A change that rounds to zero at that precision is shown as ``zero`` with no arrow and no
    colour: an arrow and green/red would claim a move that is not there. ``inverse``: a rise
    is bad (cost, latency). ``diff`` None: no delta at all.
    """
    if diff is None:
        return {"delta": None}
    text = fmt.format(diff)
    if text.lstrip("+-") == fmt.format(0.0).lstrip("+-"):
        return {"delta": zero, "delta_color": "off", "delta_arrow": "off"}
    return {"delta": text, "delta_color": "inverse" if inverse else "normal"}


def weights_sliders(prefix: str, default: tuple[float, float, float] = DEFAULTS.weights,
                    on_change: Callable[[], None] | None = None) -> tuple[float, float, float]:
    """Three sliders for (w_p, w_c, w_d) with keys ``<prefix>_wp`` / ``_wc`` / ``_wd``."""
    c1, c2, c3 = st.columns(3)
    wp = c1.slider("w_p (performance)", 0.0, 2.0, float(default[0]), 0.05, key=f"{prefix}_wp",
                   on_change=on_change)
    wc = c2.slider("w_c (cost)", 0.0, 2.0, float(default[1]), 0.01, key=f"{prefix}_wc",
                   on_change=on_change)
    wd = c3.slider("w_d (latency)", 0.0, 2.0, float(default[2]), 0.01, key=f"{prefix}_wd",
                   on_change=on_change)
    return (wp, wc, wd)


def query_int(name: str) -> int | None:
    """An integer query parameter (e.g. ``?run=12``), None if absent or malformed."""
    raw = st.query_params.get(name)
    try:
        return int(raw) if raw not in (None, "") else None
    except (TypeError, ValueError):
        return None
