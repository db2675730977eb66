"""A real multi-step agent whose steps EvoRoute routes: planner -> solver -> verifier -> answerer.

``tools``: the calculator and the sandboxed Python expression evaluator the models drive.
``workflow``: the roles, the prompts, how each step's output is read and checked.
``taskgen``: the seeded generator of the bundled tasks (``data/agent_tasks/tasks.jsonl``).
The live backend (``evoroute.backends.live``) runs this agent through litellm.
"""
