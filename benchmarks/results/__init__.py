"""docs/results.md and its plots, written by ``python benchmarks/make_results.py``."""
