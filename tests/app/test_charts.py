"""Issue 11 item 13 (charts): every studio figure stays readable at 400 px wide — the legend
in rows under the plot (not a column taking half the width), few ticks, margins that grow with
the tick labels, a thin colour bar."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ui import charts

NAMES = {1: "evoroute · run 1 · replayed · latency modelled",
         2: "single:gpt-4 · run 2 · replayed · latency modelled"}


def _figures():
    share = pd.DataFrame({"model": ["a", "a", "b", "b"], "step": [1, 2, 1, 2],
                          "share": [0.5, 0.4, 0.5, 0.6]})
    points = pd.DataFrame({"name": ["a", "b", "evoroute (run 1)"], "kind": ["model", "model", "router"],
                           "source": "replayed", "n": [10, 10, 20], "quality": [0.5, 0.8, 0.7],
                           "cost": [0.001, 0.01, 0.004], "latency": [1.0, 2.0, 1.5],
                           "run": [None, None, 1], "label": ["", "", "replayed"],
                           "pareto": [True, True, False]})
    mix = pd.DataFrame({"model": ["a", "b"], "recorded": [0.5, 0.5], "counterfactual": [0.2, 0.8]})
    cmp_points = pd.DataFrame({"run": [1, 2], "router": ["evoroute", "single:gpt-4"],
                               "cost per task": [0.002, 0.005], "quality": [0.7, 0.8],
                               "label": "replayed", "kind": "replayed"})
    curves = pd.DataFrame({"run": [1, 1, 2, 2], "step": [1, 2, 1, 2],
                           "cum_cost": [0.1, 0.2, 0.3, 0.6], "regret": [0.0, 1.0, 0.0, 0.0]})
    draws = pd.DataFrame({"metric": "P", "model": ["a", "a", "b", "b"], "draw": [0.1, 0.2, 0.6, 0.7]})
    colours = charts.run_colours(NAMES)
    return {
        "share": charts.model_share_area(share, "replayed"),
        "pareto": charts.pareto_scatter(points, "b", "replayed", "modelled"),
        "mix": charts.mix_bars(mix, "counterfactual"),
        "hull": charts.quality_cost_hull(cmp_points, {("evoroute", "replayed"): np.array([[0.002, 0.7]])},
                                         "replayed", NAMES, colours),
        "cumulative": charts.cumulative_curves(curves, "cum_cost", "Cumulative cost", "USD",
                                               "replayed", NAMES, colours),
        "draws": charts.draws_box(draws, "P", "posterior"),
    }


@pytest.mark.parametrize("name", list(_figures()))
def test_charts_are_readable_at_400_px(name):
    fig = _figures()[name]
    legend = fig.layout.legend
    assert legend.orientation == "h" and legend.y is not None and legend.y < 0, name
    for axis in (fig.layout.xaxis, fig.layout.yaxis):
        assert axis.automargin is True, name
        assert axis.nticks is not None and axis.nticks <= 6, name
        assert axis.tickfont.size is not None and axis.tickfont.size <= 11, name
        if axis.type == "log":      # "D1"/"D2" label 2, 5 (and more) in every decade
            assert axis.dtick == 1, name
    for trace in fig.data:
        bar = getattr(trace, "marker", None)
        if bar is not None and getattr(bar, "showscale", None):
            assert bar.colorbar.thickness <= 12, name


def test_legend_entries_name_router_run_and_label():
    fig = _figures()["cumulative"]
    assert [t.name for t in fig.data] == list(NAMES.values())


def test_share_legend_fits_several_models_per_row_at_400_px():
    """The live share chart: short legend names in fixed-width entries (two per row at 400 px,
    not one per row squeezing the plot); the full model name stays in the hover and ``meta``,
    and a redraw with the same models updates the figure in place."""
    models = ["mistralai/mixtral-8x7b-chat", "meta/code-llama-instruct-34b-chat", "gpt-4-1106-preview"]
    share = pd.DataFrame({"model": np.repeat(models, 2), "step": [1, 2] * 3, "share": [1 / 3] * 6})
    fig = charts.model_share_area(share, "replayed")
    assert fig.layout.legend.entrywidthmode == "pixels" and 2 * (fig.layout.legend.entrywidth + 40) <= 330
    assert [t.name for t in fig.data] == ["mixtral-8x7b-chat", "code-llama-instr…", "gpt-4-1106-previ…"]
    assert [t.meta for t in fig.data] == models
    assert all(m in t.hovertemplate for m, t in zip(models, fig.data))
    again = charts.update_model_share(fig, share.assign(step=share["step"] + 1), "replayed")
    assert again is fig and list(fig.data[0].x) == [2, 3]


def test_quality_axes_stay_within_zero_and_one():
    """'with one run picked ... up to quality 1.9': quality axes never autorange past [0, 1.05]."""
    figs = _figures()
    opts = figs["pareto"].layout.yaxis.autorangeoptions
    assert (opts.minallowed, opts.maxallowed) == (0, 1.05)
    assert tuple(figs["hull"].layout.yaxis.range) == (0, 1.0)


# ----------------------------------------------------------------------------- issue 11 item 15
def _long_curves(n_runs: int, n_steps: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.concat([pd.DataFrame({"run": r, "step": np.arange(1, n_steps + 1),
                                    "cum_cost": np.cumsum(rng.random(n_steps)),
                                    "regret": np.cumsum(rng.random(n_steps))})
                      for r in range(1, n_runs + 1)], ignore_index=True)


def test_thin_curves_caps_the_points_and_keeps_every_runs_ends():
    """Compare's curves over 100,000 records: at most CURVE_POINTS drawn per figure, each run's
    first and last step kept (a cumulative curve ends at its true total), evenly spaced steps
    in order; the band between kept points holds the dropped ones (monotone curves)."""
    curves = _long_curves(4, 5000)
    drawn, per_run = charts.thin_curves(curves)
    assert per_run == charts.CURVE_POINTS // 4 and len(drawn) <= charts.CURVE_POINTS
    for run, g in curves.groupby("run"):
        d = drawn[drawn["run"] == run]
        assert len(d) == per_run
        assert d["step"].iloc[0] == 1 and d["step"].iloc[-1] == 5000
        assert d["cum_cost"].iloc[-1] == g["cum_cost"].iloc[-1]
        assert (np.diff(d["step"]) > 0).all() and np.diff(d["step"]).max() <= np.ceil(4999 / (per_run - 1))
        # every dropped point lies between its kept neighbours
        kept = np.searchsorted(d["step"].to_numpy(), g["step"].to_numpy())
        lo = d["cum_cost"].to_numpy()[np.maximum(kept - 1, 0)]
        hi = d["cum_cost"].to_numpy()[np.minimum(kept, len(d) - 1)]
        assert ((g["cum_cost"].to_numpy() >= lo - 1e-12) & (g["cum_cost"].to_numpy() <= hi + 1e-12)).all()
    names = {r: f"run {r}" for r in range(1, 5)}
    fig = charts.cumulative_curves(drawn, "cum_cost", "Cumulative cost", "USD", "replayed", names,
                                   charts.run_colours(names))
    assert sum(len(t.x) for t in fig.data) <= charts.CURVE_POINTS


def test_thin_curves_leaves_short_curves_and_many_runs_readable():
    short = _long_curves(2, 300)
    drawn, per_run = charts.thin_curves(short)
    assert per_run is None and drawn is short          # nothing to thin: every step drawn
    many = _long_curves(40, 1000)                        # 40 runs: never fewer than the floor
    drawn, per_run = charts.thin_curves(many)
    assert per_run == charts.CURVE_POINTS_MIN_PER_RUN
    assert drawn.groupby("run").size().eq(per_run).all()


def test_the_model_mix_names_every_model_upright():
    """Horizontal bars: each model's row is labelled (ten models, ten names, not the tick cap's
    six) with its short name, never rotated; the hover keeps the full name."""
    models = [f"vendor/model-number-{i}-with-a-long-name" for i in range(10)]
    mix = pd.DataFrame({"model": models, "recorded": 0.1, "counterfactual": 0.1})
    fig = charts.mix_bars(mix, "counterfactual")
    assert all(t.orientation == "h" for t in fig.data)
    # cut to 14 characters they would all read "model-number-…": so each keeps its whole name
    assert list(fig.layout.yaxis.tickvals) == [m.split("/")[-1] for m in models]
    short = charts.mix_bars(pd.DataFrame({"model": ["a/claude-v1", "openai/gpt-4-1106-preview"],
                                          "recorded": 0.5, "counterfactual": 0.5}), "c")
    assert list(short.layout.yaxis.tickvals) == ["claude-v1", "gpt-4-1106-pr…"]
    assert list(fig.data[0].customdata) == models
