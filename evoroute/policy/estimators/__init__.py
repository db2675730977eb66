"""Query-aware estimates of P, C, D per model for the step being routed (spec §3, "Query-aware
estimates"). Two designs, both feeding the same Pareto filter, NIG Thompson sampling and utility:

- :func:`~evoroute.policy.estimators.knn.knn_estimates` (``estimator="knn"``):
  similarity-weighted evidence of the k past steps most similar to this one, shrunk toward the
  model's role estimate (itself shrunk toward the model's global estimate) by an
  empirical-Bayes prior worth ``prior_strength`` observations.
  Weights: w_i = exp((s_i − s_max) / τ) · (1 if same role else ``cross_role``), with
  τ = ``kernel_tau`` · (s_max − s_min) over the k neighbours — a temperature relative to the
  neighbours' own similarity spread, so no raw cosine scale is baked in. Each weight is in
  (0, 1], the nearest neighbour of the step's role has weight 1; the weights are not
  normalised, their sum Σw is the local evidence's mass. The evidence enters the posterior
  with Kish's effective sample size n_eff = (Σw)² / Σw², so k far, equally weighted records
  count as k, one dominant record as 1; the prior's weight is κ_m = min(κ, n_m) with n_m the
  model's records of the role (a prior is never worth more than the observations behind it):

      μ = (κ·μ₀ + n_eff·x̄_w) / (κ + n_eff),  λ = κ + n_eff,
      v = (κ·v₀ + n_eff·s²_w + κ·n_eff/λ·(x̄_w − μ₀)²) / λ

  With no neighbour the estimate is the prior (the role estimate); with many identical
  neighbours it converges to their mean; the Thompson draw θ ~ N(μ, σ²/λ) is wider the less
  local evidence there is.
- :class:`~evoroute.policy.estimators.linear.LinearEstimator` (``estimator="linear"``): per
  model a Bayesian ridge regression of P, C and D on the step's embedding, a one-hot of its role
  (nearly unpenalised: the role means) and its tool bits — the LinTS posterior
  N(xᵀβ, s²·xᵀA⁻¹x), trained incrementally as records arrive (Woodbury updates of A⁻¹). Its
  effective sample size at x is 1 / xᵀA⁻¹x.

Both return :class:`~evoroute.policy.estimators.prior.QueryEstimates` (the paper's
:class:`Estimates` plus λ per metric and the evidence per model for the explanation). "Explored"
(n ≥ n_min) counts a model's records of the step's role (or, when the role has none, of the
whole base), exactly as the paper's role channel does, so cold start and unexplored-first
behave the same in every design.

Modules: ``prior`` (the role prior and the pooling both designs share), ``neighbours`` (kernel
weights, effective sample sizes, the records of each text), ``prior_strength`` (empirical-Bayes
κ), ``knn`` and ``linear`` (the two designs).
"""

#: the estimator designs of ``EvoRouteConfig.estimator`` ("paper": the literal union)
ESTIMATORS = ("paper", "knn", "linear")
