"""A real multi-step agent whose steps EvoRoute routes: planner -> solver -> verifier -> answerer.

``tools``: the calculator and the python tool the models drive, and how their output is read.
``sandbox``: the python tool's interpreter, child process and OS isolation.
``results``: what a tool call returns.
``workflow``: the roles, the prompts, how each step's output is read and checked.
``taskgen``: the seeded generator of the bundled tasks (``data/agent_tasks/tasks.jsonl``).
The live backend (``evoroute.backends.live``) runs this agent through litellm.
"""
