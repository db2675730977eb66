"""Replay benchmark: every router on the same data and seeds, with the metrics of spec §6.

:mod:`.run` plans and runs the benchmark (``run_bench``), :mod:`.worker` runs one replay in a
worker process, :mod:`.report` builds the JSON report and its text table (``format_table``).
"""
