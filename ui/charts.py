"""Plotly figures of the studio. Every title carries the label of its numbers
(replayed / live / simulated / modelled / counterfactual): a figure never hides where its
data came from."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

MARGIN = dict(l=10, r=10, t=60, b=10)
PALETTE = ["#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#EECA3B", "#B279A2",
           "#FF9DA6", "#9D755D", "#BAB0AC", "#1F77B4", "#17BECF"]
#: At most this many ticks per axis: at 400 px wide more run together.
MAX_TICKS = 6


def _title(text: str, label: str) -> dict:
    return dict(text=f"{text}<br><sup>{label}</sup>", x=0, xanchor="left", font=dict(size=15))


def _compact(fig: go.Figure) -> go.Figure:
    """The layout every chart shares so it stays readable from 400 px wide up: the legend in
    rows below the plot (never a column beside it), few small ticks, margins that grow to fit
    tick labels."""
    fig.update_layout(margin=MARGIN, font=dict(size=11),
                      legend=dict(orientation="h", yanchor="top", y=-0.22, xanchor="left", x=0,
                                  font=dict(size=10)))
    fig.update_xaxes(nticks=MAX_TICKS, automargin=True, tickfont=dict(size=10),
                     title_standoff=4)
    fig.update_yaxes(nticks=MAX_TICKS, automargin=True, tickfont=dict(size=10),
                     title_standoff=4)
    return fig


def _short(model: str, width: int = 17) -> str:
    """A model's legend name: its last path part, cut to ``width`` characters."""
    name = model.split("/")[-1]
    return name if len(name) <= width else name[:width - 1] + "…"


def _short_unique(models: list[str], width: int = 14) -> list[str]:
    """Short names that still tell the models apart: a name whose cut form another model
    shares is kept whole (its last path part, else the full id)."""
    cut = [_short(m, width) for m in models]
    last = [m.split("/")[-1] for m in models]
    out = [c if cut.count(c) == 1 else (t if last.count(t) == 1 else m)
           for c, t, m in zip(cut, last, models)]
    return out if len(set(out)) == len(set(models)) else list(models)


def model_share_area(share: pd.DataFrame, label: str) -> go.Figure:
    """Share of steps per model over the run (stacked, one window per point). The legend uses
    short names in fixed-width entries (several per row at any width); the trace's ``meta``
    and its hover keep the full model name."""
    fig = go.Figure()
    for i, (model, g) in enumerate(share.groupby("model", sort=False)):
        fig.add_trace(go.Scatter(x=g["step"], y=g["share"], name=_short(model), meta=model,
                                 mode="lines", stackgroup="share",
                                 hovertemplate=f"{model}<br>step %{{x}}<br>%{{y:.0%}}<extra></extra>",
                                 line=dict(width=0.5, color=PALETTE[i % len(PALETTE)])))
    fig.update_layout(title=_title("Share of steps per model over the run", label),
                      xaxis_title="step", yaxis=dict(title="share of steps", range=[0, 1],
                                                     tickformat=".0%"),
                      height=380)
    _compact(fig)
    fig.update_layout(legend=dict(entrywidth=105, entrywidthmode="pixels"))
    return fig


def update_model_share(fig: go.Figure | None, share: pd.DataFrame, label: str) -> go.Figure:
    """The live chart, updated in place when its models are unchanged.

    Building a plotly figure validates every property (tens of ms); assigning new x / y
    arrays to existing traces costs a fraction of that, which keeps the live fragment cheap.
    """
    groups = list(share.groupby("model", sort=False))
    if fig is None or [t.meta for t in fig.data] != [m for m, _ in groups]:
        return model_share_area(share, label)
    with fig.batch_update():
        for trace, (_, g) in zip(fig.data, groups):
            trace.x = g["step"].to_numpy()
            trace.y = g["share"].to_numpy()
    return fig


def pareto_scatter(points: pd.DataFrame, optimal: str | None, label: str,
                   latency_label: str = "modelled") -> go.Figure:
    """Models and routers on quality vs cost; latency as colour; the Pareto front as a line.

    One front per kind of numbers (the ``source`` column: replayed / simulated / live): kinds
    never share a front. The x axis is logarithmic, so points at zero cost cannot be drawn: they
    are left out of the markers and of the front line (the page says how many). Only the
    front's points carry a text label (alternately above and below, so labels do not overlap);
    every point names itself on hover.
    """
    fig = go.Figure()
    points = points.assign(source=points["source"] if "source" in points else "")
    drawable = points[points["cost"].astype(float) > 0]
    lat = drawable["latency"].astype(float)
    cmin, cmax = (float(lat.min()), float(lat.max())) if len(lat.dropna()) else (0.0, 1.0)
    on_front = drawable[drawable["pareto"]].sort_values("cost")
    # the cheapest front point is at the left edge: its label goes right, then they alternate
    text_pos = {i: ("bottom right" if j % 2 == 0 else "top left") for j, i in enumerate(on_front.index)}
    for kind, symbol, size in (("model", "circle", 13), ("router", "diamond", 15)):
        sub = drawable[drawable["kind"] == kind]
        if sub.empty:
            continue
        fig.add_trace(go.Scatter(
            x=sub["cost"], y=sub["quality"], mode="markers+text", name=f"{kind}s",
            text=[n.split("/")[-1] if i in text_pos else "" for i, n in zip(sub.index, sub["name"])],
            textposition=[text_pos.get(i, "top center") for i in sub.index],
            textfont=dict(size=10), cliponaxis=False,
            marker=dict(symbol=symbol, size=size, color=sub["latency"], cmin=cmin, cmax=cmax,
                        colorscale="Viridis", showscale=kind == "model",
                        colorbar=dict(title=dict(text=f"latency (s, {latency_label})", side="right"),
                                      thickness=10, len=0.8),
                        line=dict(width=1, color="#333")),
            customdata=np.stack([sub["n"], sub["latency"]], axis=1),
            hovertext=sub["name"],
            hovertemplate="%{hovertext}<br>quality %{y:.3f}<br>cost $%{x:.6f}<br>latency "
                          "%{customdata[1]:.2f} s (" + latency_label + ")<br>n %{customdata[0]}"
                          "<extra></extra>"))
    sources = list(dict.fromkeys(on_front["source"]))
    for i, (source, front) in enumerate(on_front.groupby("source", sort=False)):
        if len(front) > 1:
            name = "Pareto front" + (f" ({source})" if len(sources) > 1 else "")
            fig.add_trace(go.Scatter(x=front["cost"], y=front["quality"], mode="lines", name=name,
                                     line=dict(dash="dash", color=PALETTE[(3 + i) % len(PALETTE)]),
                                     hoverinfo="skip"))
    if optimal is not None and optimal in set(drawable["name"]):
        p = drawable[drawable["name"] == optimal].iloc[0]
        fig.add_trace(go.Scatter(x=[p["cost"]], y=[p["quality"]], mode="markers",
                                 name=f"utility-optimal: {optimal.split('/')[-1]}",
                                 hovertext=[optimal], hovertemplate="%{hovertext}<extra></extra>",
                                 marker=dict(symbol="star", size=26, color="gold",
                                             line=dict(width=2, color="black"))))
    fig.update_layout(title=_title("Quality vs cost per step", label),
                      xaxis=dict(title="mean cost per step (USD, log scale)", type="log",
                                 dtick=1, tickformat="$.0e"),   # one tick per decade
                      yaxis=dict(title="mean quality (task success)",   # success is in [0, 1]
                                 autorangeoptions=dict(minallowed=0, maxallowed=1.05)),
                      height=520)
    return _compact(fig)


def mix_bars(mix: pd.DataFrame, label: str) -> go.Figure:
    """Horizontal bars, one row per model under its short name (the hover has the full one):
    upright names need no rotation, so at 400 px they neither collide nor reach the legend."""
    full = [str(m) for m in mix["model"]]
    names = _short_unique(full)
    fig = go.Figure([go.Bar(name=name, y=names, x=mix[col], orientation="h", customdata=full,
                            hovertemplate="%{customdata}: %{x:.1%}<extra>" + name + "</extra>")
                     for name, col in (("recorded", "recorded"), ("counterfactual", "counterfactual"))])
    fig.update_layout(title=_title("Model mix: recorded vs counterfactual", label),
                      barmode="group", xaxis=dict(title="share of sampled steps", tickformat=".0%"),
                      yaxis=dict(autorange="reversed"), height=120 + 44 * max(1, len(names)))
    # every model's row keeps its name (the shared tick cap is for numeric axes)
    return _compact(fig).update_yaxes(tickmode="array", tickvals=names, ticktext=names, nticks=0)


def run_colours(run_names: dict[int, str]) -> dict[int, str]:
    """One colour per run, the same in every chart of a page (runs in the order given)."""
    return {run: PALETTE[i % len(PALETTE)] for i, run in enumerate(run_names)}


def quality_cost_hull(points: pd.DataFrame, hulls: dict[tuple[str, str], np.ndarray], label: str,
                      run_names: dict[int, str], colours: dict[int, str]) -> go.Figure:
    """Each run as a point (legend: router · run · label, its colour), each (router, kind)'s
    convex hull as a dotted line in the colour of its first run. Axes start at zero: cost and
    quality are never negative, and a single point does not autorange around itself."""
    fig = go.Figure()
    for r in points.to_dict("records"):
        name = run_names.get(int(r["run"]), f"run {r['run']}")
        fig.add_trace(go.Scatter(x=[r["cost per task"]], y=[r["quality"]], mode="markers",
                                 name=name, marker=dict(size=12, color=colours.get(int(r["run"]))),
                                 hovertemplate="quality %{y:.3f}<br>cost/task $%{x:.6f}<extra>"
                                               + name + "</extra>"))
    for (router, kind), h in hulls.items():
        if h is None or len(h) < 2:
            continue
        first = points[(points["router"] == router) & (points["kind"] == kind)]["run"].iloc[0]
        fig.add_trace(go.Scatter(x=h[:, 0], y=h[:, 1], mode="lines", showlegend=False,
                                 name=f"hull: {router} ({kind})", hoverinfo="name",
                                 line=dict(color=colours.get(int(first)), dash="dot")))
    x_max = float(points["cost per task"].max()) if len(points) else 0.0
    y_max = float(points["quality"].max()) if len(points) else 1.0
    fig.update_layout(title=_title("Quality vs cost per task, each router's hull per kind", label),
                      xaxis=dict(title="cost per task (USD)",
                                 range=[0, 1.15 * x_max if x_max > 0 else 1.0]),
                      yaxis=dict(title="quality (task success)", range=[0, max(1.0, 1.05 * y_max)]),
                      height=440)
    return _compact(fig)


#: At most this many points per curve figure: every step of a 100,000-record base is hundreds
#: of KB of plotly JSON for the browser to receive and draw, for a line no wider than ~1,000 px.
CURVE_POINTS = 2000
#: ... but never fewer than this many per run, however many runs are picked.
CURVE_POINTS_MIN_PER_RUN = 200


def thin_curves(curves: pd.DataFrame, max_points: int = CURVE_POINTS,
                min_per_run: int = CURVE_POINTS_MIN_PER_RUN) -> tuple[pd.DataFrame, int | None]:
    """The rows of ``curves`` (``run``, ``step``, ...) to draw: per run at most
    ``max(min_per_run, max_points // runs)`` evenly spaced steps, its first and last step always
    kept (a cumulative curve then ends at its true total, and a monotone one never leaves the
    band between the kept points). Returns the rows and the per-run cap (None: nothing thinned)."""
    n_runs = curves["run"].nunique()
    if len(curves) <= max_points or n_runs == 0:
        return curves, None
    cap = max(min_per_run, max_points // n_runs)
    keep = []
    for _, g in curves.groupby("run", sort=False):
        pos = np.unique(np.linspace(0, len(g) - 1, min(cap, len(g))).round().astype(int))
        keep.append(g.index.to_numpy()[pos])
    rows = np.concatenate(keep)
    return (curves, None) if len(rows) == len(curves) else (curves.loc[rows], cap)


def cumulative_curves(curves: pd.DataFrame, column: str, title: str, yaxis: str, label: str,
                      run_names: dict[int, str], colours: dict[int, str]) -> go.Figure:
    """One line per run (legend: router · run · label, the run's colour in every chart)."""
    fig = go.Figure()
    for run, g in curves.groupby("run", sort=False):
        g = g.dropna(subset=[column])
        if g.empty:
            continue
        fig.add_trace(go.Scatter(x=g["step"], y=g[column], mode="lines",
                                 name=run_names.get(int(run), f"run {run}"),
                                 line=dict(color=colours.get(int(run)))))
    fig.update_layout(title=_title(title, label), xaxis=dict(title="step", rangemode="tozero"),
                      yaxis=dict(title=yaxis, rangemode="tozero"), height=360)
    return _compact(fig)


def draws_box(draws: pd.DataFrame, metric: str, label: str) -> go.Figure:
    """One horizontal box per model, every row named (short names; the trace's ``meta`` keeps
    the full model name for code that reads the figure)."""
    sub = draws[draws["metric"] == metric]
    groups = list(sub.groupby("model"))
    rows = _short_unique([str(m) for m, _ in groups])
    fig = go.Figure()
    for row, (model, g) in zip(rows, groups):
        fig.add_trace(go.Box(x=g["draw"], name=row, orientation="h", boxpoints=False,
                             meta=str(model)))
    names = {"P": "performance θ_P", "C": "cost θ_C (USD)", "D": "duration θ_D (s)"}
    fig.update_layout(title=_title(f"Posterior draws of {names[metric]}", label),
                      height=120 + 36 * max(1, len(rows)), showlegend=False,
                      yaxis=dict(autorange="reversed"))
    return _compact(fig).update_yaxes(tickmode="array", tickvals=rows, ticktext=rows, nticks=0)
