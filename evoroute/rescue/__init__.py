"""Atropos-style mid-run rescue, replayed: predict from a run's partial trajectory that it is going
to fail and hot-swap the rest of the run to a stronger model (docs/rescue.md).

- :mod:`.steps`: the multi-step tasks to rescue (composed RouterBench tasks, the agent-step
  dataset's trajectories) as dense per-step outcome arrays, with each model's parsed answer;
- :mod:`.plan`: the cheap base policy, the strong model and the second-opinion model per role;
- :mod:`.observe`: what a real system sees mid-run (no recorded correctness) and the features
  built from it;
- :mod:`.predictors`: the failure predictors (logistic regression, a small graph network);
- :mod:`.replay`: the swap decisions, their replayed outcomes, the threshold sweep, explanations;
- :mod:`.metrics`: what Atropos reports (quality kept, cost share, rescue and false-swap rates).
"""
