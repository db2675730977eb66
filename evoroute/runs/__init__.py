"""Runs: one run of a router over a backend's tasks, written step by step to the experience base.

Where each job lives:

- :mod:`~evoroute.runs.spec`: :class:`RunSpec`, everything that defines a run, validated;
- :mod:`~evoroute.runs.prepare`: :func:`prepare_run` resolves the backend, the router, the
  task phases of the protocol, training and embeddings into a :class:`RunPlan`;
- :mod:`~evoroute.runs.loop`: :class:`RunLoop`, the pure generator (decide, budget check,
  execute, escalate, learn) yielding one :class:`StepResult` per step; nothing is written;
- :mod:`~evoroute.runs.writer`: batches the loop's steps into fenced commits;
- :mod:`~evoroute.runs.signals`: SIGINT / SIGTERM handling, deferred inside a commit;
- :mod:`~evoroute.runs.lifecycle`: ownership (claim), heartbeat, stop, delete, finish and the
  stored steps a resumed run replays;
- :mod:`~evoroute.runs.execute`: :func:`create_run` / :func:`execute_run` / :func:`run_spec`,
  a run from pending to its final status;
- :mod:`~evoroute.runs.worker`: a run in a detached ``python -m evoroute worker`` process;
- :mod:`~evoroute.runs.feed`: the per-step dict the CLI and the live feed read;
- :mod:`~evoroute.runs.stages`: the stages a run stores as it goes (``Run.stage``), which
  the studio's live view shows.

The SQL of all of these is in :mod:`evoroute.storage.run_store`.
"""
