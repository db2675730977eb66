"""The live backend: real model calls through litellm (spec §4).

- :mod:`.backend`: :class:`LiveBackend`, the agent's steps on the chosen models, with fallback
  and the budget estimate.
- :mod:`.client`: the one streaming client (measurement, retry budget, budget cap), also used
  to time the local models.
- :mod:`.retry`: which failures are retried and how long a server asked to wait.
- :mod:`.tokens`: token counts and costs.
- :mod:`.fallback`: the next-best candidate of a decision after a failed call.
"""

from evoroute.backends.live.backend import LiveBackend

__all__ = ["LiveBackend"]
