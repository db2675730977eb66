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


def _title(text: str, label: str) -> dict:
    return dict(text=f"{text}<br><sup>{label}</sup>", x=0, xanchor="left")


def model_share_area(share: pd.DataFrame, label: str) -> go.Figure:
    """Share of steps per model over the run (stacked, one window per point)."""
    fig = go.Figure()
    for i, (model, g) in enumerate(share.groupby("model", sort=False)):
        fig.add_trace(go.Scatter(x=g["step"], y=g["share"], name=model, mode="lines",
                                 stackgroup="share", line=dict(width=0.5, color=PALETTE[i % len(PALETTE)])))
    fig.update_layout(title=_title("Share of steps per model over the run", label),
                      xaxis_title="step", yaxis=dict(title="share of steps", range=[0, 1],
                                                     tickformat=".0%"),
                      height=320, margin=MARGIN, legend=dict(font=dict(size=10)))
    return fig


def update_model_share(fig: go.Figure | None, share: pd.DataFrame, label: str) -> go.Figure:
    """The live chart, updated in place when its models are unchanged.

    Building a plotly figure validates every property (tens of ms); assigning new x / y
    arrays to existing traces costs a fraction of that, which keeps the live fragment cheap.
    """
    groups = list(share.groupby("model", sort=False))
    if fig is None or [t.name for t in fig.data] != [m for m, _ in groups]:
        return model_share_area(share, label)
    with fig.batch_update():
        for trace, (_, g) in zip(fig.data, groups):
            trace.x = g["step"].to_numpy()
            trace.y = g["share"].to_numpy()
    return fig


def pareto_scatter(points: pd.DataFrame, optimal: str | None, label: str,
                   latency_label: str = "modelled") -> go.Figure:
    """Models and routers on quality vs cost; latency as colour; the Pareto front as a line."""
    fig = go.Figure()
    lat = points["latency"].astype(float)
    cmin, cmax = (float(lat.min()), float(lat.max())) if len(lat.dropna()) else (0.0, 1.0)
    for kind, symbol, size in (("model", "circle", 13), ("router", "diamond", 15)):
        sub = points[points["kind"] == kind]
        if sub.empty:
            continue
        fig.add_trace(go.Scatter(
            x=sub["cost"], y=sub["quality"], mode="markers+text", name=f"{kind}s",
            text=[n.split("/")[-1] for n in sub["name"]], textposition="top center",
            textfont=dict(size=10),
            marker=dict(symbol=symbol, size=size, color=sub["latency"], cmin=cmin, cmax=cmax,
                        colorscale="Viridis", showscale=kind == "model",
                        colorbar=dict(title=f"latency (s,<br>{latency_label})", len=0.8),
                        line=dict(width=1, color="#333")),
            customdata=np.stack([sub["n"], sub["latency"]], axis=1),
            hovertext=sub["name"],
            hovertemplate="%{hovertext}<br>quality %{y:.3f}<br>cost $%{x:.6f}<br>latency "
                          "%{customdata[1]:.2f} s<br>n %{customdata[0]}<extra></extra>"))
    front = points[points["pareto"]].sort_values("cost")
    if len(front) > 1:
        fig.add_trace(go.Scatter(x=front["cost"], y=front["quality"], mode="lines",
                                 name="Pareto front", line=dict(dash="dash", color="#E45756")))
    if optimal is not None and optimal in set(points["name"]):
        p = points[points["name"] == optimal].iloc[0]
        fig.add_trace(go.Scatter(x=[p["cost"]], y=[p["quality"]], mode="markers",
                                 name=f"utility-optimal: {optimal}",
                                 marker=dict(symbol="star", size=26, color="gold",
                                             line=dict(width=2, color="black"))))
    fig.update_layout(title=_title("Quality vs cost per step", label),
                      xaxis=dict(title="mean cost per step (USD, log scale)", type="log",
                                 dtick="D2", tickformat="$.1~e"),
                      yaxis=dict(title="mean quality (task success)"), height=520, margin=MARGIN,
                      legend=dict(orientation="h", y=-0.15))
    return fig


def mix_bars(mix: pd.DataFrame, label: str) -> go.Figure:
    fig = go.Figure([go.Bar(name="recorded", x=mix["model"], y=mix["recorded"]),
                     go.Bar(name="counterfactual", x=mix["model"], y=mix["counterfactual"])])
    fig.update_layout(title=_title("Model mix: recorded vs counterfactual", label),
                      barmode="group", yaxis=dict(title="share of sampled steps", tickformat=".0%"),
                      height=360, margin=MARGIN)
    return fig


def quality_cost_hull(points: pd.DataFrame, hulls: dict[str, np.ndarray], label: str) -> go.Figure:
    fig = go.Figure()
    for i, (router, g) in enumerate(points.groupby("router")):
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(x=g["cost per task"], y=g["quality"], mode="markers",
                                 name=router, marker=dict(size=12, color=color),
                                 text=[f"run {r}" for r in g["run"]],
                                 hovertemplate="%{text}<br>quality %{y:.3f}<br>cost/task "
                                               "$%{x:.6f}<extra>" + router + "</extra>"))
        h = hulls.get(router)
        if h is not None and len(h) > 1:
            fig.add_trace(go.Scatter(x=h[:, 0], y=h[:, 1], mode="lines", showlegend=False,
                                     line=dict(color=color, dash="dot"), hoverinfo="skip"))
    fig.update_layout(title=_title("Quality vs cost per task, with each router's convex hull", label),
                      xaxis_title="cost per task (USD)", yaxis_title="quality (task success)",
                      height=440, margin=MARGIN)
    return fig


def cumulative_curves(curves: pd.DataFrame, column: str, title: str, yaxis: str,
                      label: str) -> go.Figure:
    fig = go.Figure()
    for i, (run, g) in enumerate(curves.groupby("run")):
        g = g.dropna(subset=[column])
        if g.empty:
            continue
        fig.add_trace(go.Scatter(x=g["step"], y=g[column], mode="lines", name=f"run {run}",
                                 line=dict(color=PALETTE[i % len(PALETTE)])))
    fig.update_layout(title=_title(title, label), xaxis_title="step", yaxis_title=yaxis,
                      height=360, margin=MARGIN)
    return fig


def draws_box(draws: pd.DataFrame, metric: str, label: str) -> go.Figure:
    sub = draws[draws["metric"] == metric]
    fig = go.Figure()
    for model, g in sub.groupby("model"):
        fig.add_trace(go.Box(y=g["draw"], name=model, boxpoints=False))
    names = {"P": "performance θ_P", "C": "cost θ_C (USD)", "D": "duration θ_D (s)"}
    fig.update_layout(title=_title(f"Posterior draws of {names[metric]}", label), height=340,
                      margin=MARGIN, showlegend=False)
    return fig
