"""The quality-vs-cost plots: plotly figures screenshotted with headless Chromium."""

from __future__ import annotations

import collections
import math
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from evoroute.evaluation import metrics

from .common import EVOROUTE_FAMILIES, ablation_of, capabilities, family, short

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
WIDTH, HEIGHT = 1400, 1060



# ------------------------------------------------------------------------------ plots
COLORS = {"evoroute": "#d62728", "ablation": "#ff7f0e", "oracle": "#000000", "oracle-cascade": "#2ca02c",
          "threshold": "#9467bd", "baseline": "#1f77b4", "single": "#7f7f7f", "hull": "#7f7f7f",
          "costlean": "#8c1d1d", "learned": "#17becf", "variant": "#e377c2"}


def _kind(rep: dict[str, Any], r: str) -> str:
    """The plot style of a router: its family's, or its own where COLORS has one."""
    fam = family(rep, r)
    if r == "evoroute":
        return "evoroute"
    if fam in EVOROUTE_FAMILIES:
        return "ablation" if ablation_of(rep, r) else "variant"
    if fam == "single":
        return "single"
    if r in COLORS:
        return r
    return "learned" if fam == "learned" else "baseline"


X_RANGE = (0.05, 7.0)          # USD, log axis
Y_RANGE = (0.54, 1.0)
MARGIN = {"l": 80, "r": 30, "t": 100, "b": 230}   # the legend sits below the plot


def _px(cost: float, quality: float) -> tuple[float, float]:
    """Pixel position of a (cost, quality) point in the figure (for label placement)."""
    w = WIDTH - MARGIN["l"] - MARGIN["r"]
    h = HEIGHT - MARGIN["t"] - MARGIN["b"]
    lo, hi = math.log10(X_RANGE[0]), math.log10(X_RANGE[1])
    x = MARGIN["l"] + w * (math.log10(max(cost, 1e-9)) - lo) / (hi - lo)
    y = MARGIN["t"] + h * (1 - (quality - Y_RANGE[0]) / (Y_RANGE[1] - Y_RANGE[0]))
    return x, y


POSITIONS = ("middle right", "middle left", "top center", "bottom center", "top right", "top left",
             "bottom right", "bottom left")


def _box(x: float, y: float, pos: str, w: float, h: float, gap: float = 7.0) -> tuple[float, ...]:
    vert, horiz = pos.split()
    if horiz == "right":
        x0 = x + gap
    elif horiz == "left":
        x0 = x - gap - w
    else:
        x0 = x - w / 2
    if vert == "top":
        y0 = y - gap - h
    elif vert == "bottom":
        y0 = y + gap
    else:
        y0 = y - h / 2
    return x0, y0, x0 + w, y0 + h


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    dx = min(a[2], b[2]) - max(a[0], b[0])
    dy = min(a[3], b[3]) - max(a[1], b[1])
    return dx * dy if dx > 0 and dy > 0 else 0.0


def _polyline_boxes(xs: list[float], ys: list[float], step: float = 6.0) -> list[tuple[float, ...]]:
    """Small boxes along a drawn line (pixels), so labels avoid sitting on lines."""
    out = []
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        n = max(1, int(math.hypot(x1 - x0, y1 - y0) / step))
        for k in range(n + 1):
            x, y = x0 + (x1 - x0) * k / n, y0 + (y1 - y0) * k / n
            out.append((x - 2, y - 2, x + 2, y + 2))
    return out


def place_labels(labels: list[tuple[str, float, float, float, str]], markers: list[tuple[float, ...]],
                 obstacles: list[tuple[float, ...]], lines: list[tuple[float, ...]]) -> dict[str, str]:
    """Greedy label placement: each label (key, x px, y px, font size, text) takes the text
    position whose box overlaps least with the labels already placed, the markers, the drawn
    lines and the obstacles (legend, plot edges); ties go to the first position in POSITIONS."""
    placed = list(obstacles)
    marks = [(m[0] - (m[2] if len(m) > 2 else 7), m[1] - (m[2] if len(m) > 2 else 7),
              m[0] + (m[2] if len(m) > 2 else 7), m[1] + (m[2] if len(m) > 2 else 7)) for m in markers]
    out: dict[str, str] = {}
    for key, x, y, size, text in labels:
        w, h = 0.6 * size * len(text), 1.45 * size
        best, best_cost = POSITIONS[0], float("inf")
        for k, pos in enumerate(POSITIONS):
            bx = _box(x, y, pos, w, h)
            cost = sum(_overlap(bx, o) for o in placed) * 3 + sum(
                _overlap(bx, m) for m in marks if not (m[0] < x < m[2] and m[1] < y < m[3])) * 2 + sum(
                _overlap(bx, ln) for ln in lines)
            out_of_plot = (bx[0] < MARGIN["l"] or bx[2] > WIDTH - MARGIN["r"] or bx[1] < MARGIN["t"]
                           or bx[3] > HEIGHT - MARGIN["b"])
            cost += 1e6 if out_of_plot else 0.0
            cost += 0.5 * k      # a mild preference for the order of POSITIONS
            if cost < best_cost:
                best, best_cost = pos, cost
        out[key] = best
        placed.append(_box(x, y, best, w, h))
    return out


def _merge_coincident(items: list[tuple[str, float, float]], tol_px: float = 4.0
                      ) -> list[tuple[list[str], float, float]]:
    """Points drawn on top of each other share one label ("a = b")."""
    groups: list[tuple[list[str], float, float]] = []
    for name, x, y in items:
        for g in groups:
            if abs(g[1] - x) < tol_px and abs(g[2] - y) < tol_px:
                g[0].append(name)
                break
        else:
            groups.append(([name], x, y))
    return groups


def make_figure(rep: dict[str, Any], costlean: dict[str, Any] | None) -> Any:
    import plotly.graph_objects as go

    # the ablations are single points with wide seed spreads: the ablation table holds them
    rows = {r: o for r, o in rep["routers"].items() if not ablation_of(rep, r)}
    fig = go.Figure()
    singles = [r for r in rows if r.startswith("single:")]
    pts = np.array([[rows[r]["cost_usd"], rows[r]["quality"]] for r in singles])
    hull = metrics.upper_convex_hull(pts)
    fig.add_trace(go.Scatter(x=hull[:, 0], y=hull[:, 1], mode="lines",
                             name="upper convex hull of the single models",
                             line={"color": COLORS["hull"], "dash": "dash", "width": 2}))

    # every label to place: (key, x px, y px, font size, text); priority = list order
    labels: list[tuple[str, float, float, float, str]] = []
    markers: list[tuple[float, ...]] = []   # (x px, y px[, half size px])
    text_of: dict[str, str] = {}

    # router points, coincident ones merged ("cheapest = mistral-7b-chat")
    prio = {"evoroute": 0, "oracle": 1, "oracle-cascade": 2, "threshold": 3, "learned": 4, "variant": 5,
            "ablation": 6, "single": 7, "baseline": 8}
    order = sorted(rows, key=lambda r: (prio[_kind(rep, r)], r))
    for names, x, y in _merge_coincident([(r, *_px(rows[r]["cost_usd"], rows[r]["quality"])) for r in order]):
        markers.append((x, y, 13.0 if names[0] == "evoroute" else 7.0))
        text = " = ".join(_label(r) for r in names)
        if names[0] == "threshold":
            text += f" ({100 * _default_knob('threshold', rep):.0f} % strong)"
        text_of[names[0]] = text
        labels.append((names[0], x, y, 14 if names[0] == "evoroute" else 12, text))
    cl_key = None
    if costlean is not None and "evoroute" in costlean["routers"]:
        o = costlean["routers"]["evoroute"]
        x, y = _px(o["cost_usd"], o["quality"])
        w = ",".join(f"{v:g}" for v in costlean["weights"])
        cl_key = "costlean"
        text_of[cl_key] = f"evoroute, weights {w}"
        markers.append((x, y))
        labels.append((cl_key, x, y, 12, text_of[cl_key]))

    sweeps = rep.get("sweeps", {})
    # (router, legend, colour, label format; None: the line only, no point labels)
    sweep_specs = (("evoroute", "evoroute (query-aware kNN), cost weight w_c swept", COLORS["evoroute"],
                    "w_c={}"),
                   ("evoroute-paper", "evoroute-paper (the paper's union), w_c swept", COLORS["variant"],
                    None),
                   ("threshold", "threshold router, strong-call share swept", COLORS["threshold"], "{}"),
                   ("oracle-cascade", "oracle cascade, ladder length 1..n", COLORS["oracle-cascade"],
                    "{} rung(s)"))
    sweep_text: dict[tuple[str, int], str] = {}
    for r, _, _, fmt in sweep_specs:
        sw = sorted(sweeps.get(r) or [], key=lambda p: p["cost_usd"])
        if len(sw) < 2 or fmt is None:
            continue
        own = rows.get(r)
        own_px = _px(own["cost_usd"], own["quality"]) if own else (-1e9, -1e9)
        for g_names, x, y in _merge_coincident(
                [(str(i), *_px(p["cost_usd"], p["quality"])) for i, p in enumerate(sw)], tol_px=10.0):
            # the router's own setting is its big marker: its sweep point needs no label
            if abs(x - own_px[0]) < 4 and abs(y - own_px[1]) < 4 and len(g_names) == 1:
                continue
            knobs = sorted(sw[int(i)]["knob"] for i in g_names)
            if own and abs(x - own_px[0]) < 12 and abs(y - own_px[1]) < 12:
                # next to the router's own marker: its own setting is that marker
                knobs = [k for k in knobs if not np.isclose(k, _default_knob(r, rep))] or knobs
            if r == "threshold":
                shown = [k for k in knobs if k == 0.2]
                if not shown:
                    continue
                txt = "/".join(f"{100 * k:.0f} %" for k in shown) + " strong"
            else:
                txt = fmt.format(", ".join(f"{k:g}" for k in knobs))
            markers.append((x, y))
            key = f"{r}#{g_names[0]}"
            sweep_text[(r, int(g_names[0]))] = key
            labels.append((key, x, y, 11, txt))
            text_of[key] = txt
    legend_box = (0.0, HEIGHT - MARGIN["b"] + 40, WIDTH, HEIGHT)   # below the plot
    drawn = [np.array([_px(c, q) for c, q in hull])]
    for r, *_ in sweep_specs:
        sw = sorted(sweeps.get(r) or [], key=lambda p: p["cost_usd"])
        if len(sw) >= 2:
            drawn.append(np.array([_px(p["cost_usd"], p["quality"]) for p in sw]))
    line_boxes = [b for d in drawn for b in _polyline_boxes(list(d[:, 0]), list(d[:, 1]))]
    for o in rows.values():      # error bars are lines too
        x, y = _px(o["cost_usd"], o["quality"])
        if o["cost_usd_sd"] > 0:
            xl = _px(max(o["cost_usd"] - o["cost_usd_sd"], X_RANGE[0]), o["quality"])[0]
            xr = _px(o["cost_usd"] + o["cost_usd_sd"], o["quality"])[0]
            line_boxes += _polyline_boxes([xl, xr], [y, y])
        if o["quality_sd"] > 0:
            yt = _px(o["cost_usd"], o["quality"] + o["quality_sd"])[1]
            yb = _px(o["cost_usd"], o["quality"] - o["quality_sd"])[1]
            line_boxes += _polyline_boxes([x, x], [yt, yb])
    pos = place_labels(labels, markers, [legend_box], line_boxes)

    for r, label, color, _ in sweep_specs:
        sw = sorted(sweeps.get(r) or [], key=lambda p: p["cost_usd"])
        if len(sw) < 2:
            continue
        keys = [sweep_text.get((r, i)) for i in range(len(sw))]
        fig.add_trace(go.Scatter(
            x=[p["cost_usd"] for p in sw], y=[p["quality"] for p in sw], mode="lines+markers+text",
            name=label, text=[text_of[k] if k else "" for k in keys],
            textposition=[pos[k] if k else "middle right" for k in keys],
            textfont={"size": 11, "color": color},
            marker={"size": 7, "color": color, "symbol": "circle-open"},
            line={"color": color, "width": 1.5, "dash": "dot"}, hoverinfo="x+y+text"))
    if cl_key:
        o = costlean["routers"]["evoroute"]
        fig.add_trace(go.Scatter(
            x=[o["cost_usd"]], y=[o["quality"]], mode="markers+text",
            name=f"evoroute, cost-leaning weights {text_of[cl_key].split()[-1]} ({len(costlean['seeds'])} "
                 "seeds)",
            text=[text_of[cl_key]], textposition=[pos[cl_key]],
            textfont={"size": 12, "color": COLORS["costlean"]},
            marker={"size": 13, "color": COLORS["costlean"], "symbol": "diamond"},
            error_x={"type": "data", "array": [o["cost_usd_sd"]], "visible": True, "thickness": 1},
            error_y={"type": "data", "array": [o["quality_sd"]], "visible": True, "thickness": 1}))
    groups: dict[str, list[str]] = collections.defaultdict(list)
    for r in rows:
        groups[_kind(rep, r)].append(r)
    names = {"evoroute": "evoroute (default weights 1, 0.1, 0.05)", "ablation": "ablations of both designs",
             "oracle": "oracle (cheapest correct model)",
             "oracle-cascade": "oracle cascade (recorded-answer verifier: an upper bound)",
             "threshold": "threshold router (RouteLLM-style)", "baseline": "random / round robin / cheapest",
             "learned": "learned baselines (per-role, kNN, logistic, LinTS, confidence cascade)",
             "variant": "evoroute-paper, evoroute-knn, evoroute-lin", "single": "single models"}
    symbols = {"evoroute": "star", "ablation": "triangle-up", "oracle": "star-diamond",
               "oracle-cascade": "square", "threshold": "square", "baseline": "circle",
               "single": "circle", "learned": "diamond", "variant": "star-triangle-up"}
    bar_colors = {"ablation": "rgba(255,127,14,0.45)", "baseline": "rgba(31,119,180,0.6)"}
    for kind in ("single", "baseline", "threshold", "learned", "oracle-cascade", "oracle", "ablation",
                 "variant", "evoroute"):
        rs = groups.get(kind)
        if not rs:
            continue
        bar = {"visible": True, "thickness": 1.2, "width": 3, "color": bar_colors.get(kind, COLORS[kind])}
        fig.add_trace(go.Scatter(
            x=[rows[r]["cost_usd"] for r in rs], y=[rows[r]["quality"] for r in rs],
            mode="markers+text", name=names[kind],
            text=[text_of.get(r, "") for r in rs], textposition=[pos.get(r, "middle right") for r in rs],
            textfont={"size": 14 if kind == "evoroute" else 12,
                      "color": COLORS[kind] if kind != "single" else "#333"},
            marker={"size": 18 if kind == "evoroute" else 11, "color": COLORS[kind], "symbol": symbols[kind],
                    "line": {"width": 1, "color": "white"}},
            error_x={"type": "data", "array": [rows[r]["cost_usd_sd"] for r in rs], **bar},
            error_y={"type": "data", "array": [rows[r]["quality_sd"] for r in rs], **bar}))
    n = rep["n_test"]
    proto = rep["protocol"]
    how = ("EvoRoute learns online on the train split, seeing only the chosen model's outcome"
           if proto == "bandit" else
           "EvoRoute starts with every model's recorded outcome on the train split")
    fig.update_layout(
        title={"text": f"Quality vs cost — replayed RouterBench test split, {n} queries "
                       f"(ARC-Challenge, MBPP, Winogrande), {proto} protocol<br>"
                       f"<sup>{how}. Points: mean ± sd over {len(rep['seeds'])} seeds. Quality and cost are "
                       "real recorded outcomes (replayed), no model was called. Ablations: see the "
                       "tables.</sup>",
               "x": 0.5, "font": {"size": 20}},
        xaxis={"title": {"text": "total cost of the test split, USD (log scale)"}, "type": "log",
               "gridcolor": "#e5e5e5", "tickprefix": "$",
               "tickvals": [0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 3, 5],
               "range": [math.log10(X_RANGE[0]), math.log10(X_RANGE[1])]},
        yaxis={"title": {"text": "quality = mean task success on the test split"}, "gridcolor": "#e5e5e5",
               "range": list(Y_RANGE), "dtick": 0.05},
        plot_bgcolor="white", paper_bgcolor="white", font={"size": 14},
        legend={"x": 0.0, "y": -0.09, "xanchor": "left", "yanchor": "top", "orientation": "h",
                "bgcolor": "rgba(255,255,255,0.9)",
                "bordercolor": "#ccc", "borderwidth": 1, "font": {"size": 12}},
        width=WIDTH, height=HEIGHT, margin=MARGIN)
    return fig


def _default_knob(router: str, rep: dict[str, Any]) -> float:
    """The knob value of a router's own (unswept) setting in this report: recorded by the bench,
    else the router's declaration (the run's w_c for the ``"w_c"`` knob), else (a knob set from
    the data, e.g. the oracle cascade's ladder) its largest swept value."""
    own = rep["routers"].get(router, {}).get("default_knob")
    if own is not None:
        return float(own)
    knob = capabilities(rep, router).cost_knob
    if knob is not None and knob.param == "w_c" and knob.default is None:
        return float(rep["weights"][1])
    if knob is not None and knob.default is not None:
        return float(knob.default)
    return max(pt["knob"] for pt in rep["sweeps"].get(router) or [{"knob": 0.0}])


def _label(r: str) -> str:
    if r.startswith("single:"):
        return short(r)
    ablation = {"no-cold-start": "no cold start", "no-role-tool": "no role/tool (semantic only)",
                "no-ts": "no TS", "no-pareto": "no Pareto"}
    for design, prefix in (("evoroute-paper-", "paper "), ("evoroute-", "")):
        if r.startswith(design) and r.removeprefix(design) in ablation:
            return prefix + ablation[r.removeprefix(design)]
    return {"round_robin": "round robin"}.get(r, r)


def screenshot(fig: Any, png: Path) -> Path:
    """Self-contained HTML (plotly.js inlined) -> PNG with headless Chromium."""
    chromium = next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)
    if chromium is None:
        raise SystemExit(f"make_results: none of {', '.join(CHROMIUM_NAMES)} on PATH; install "
                         "chromium with `bash scripts/install_system_deps.sh` (Debian chromium)")
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="evoroute-results-"))
    try:
        page = tmp / (png.stem + ".html")
        # Explicit pixel size: the default "100%" div follows the viewport, which headless
        # Chromium makes shorter than --window-size (browser chrome), and would clip the x axis.
        fig.write_html(str(page), include_plotlyjs=True, full_html=True,
                       default_width=f"{WIDTH}px", default_height=f"{HEIGHT}px",
                       config={"staticPlot": True, "displayModeBar": False})
        text = page.read_text(encoding="utf-8")
        page.write_text(text.replace("<head>", "<head><style>body{margin:0}</style>", 1), encoding="utf-8")
        profile = tmp / "profile"
        shot = tmp / png.name
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
               "--hide-scrollbars", f"--window-size={WIDTH},{HEIGHT}", "--virtual-time-budget=5000",
               f"--screenshot={shot}", page.as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if not shot.is_file():
            raise RuntimeError(f"chromium wrote no screenshot (exit {proc.returncode}): "
                               f"{proc.stderr[-2000:]}")
        shutil.move(str(shot), png)
        return png
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


