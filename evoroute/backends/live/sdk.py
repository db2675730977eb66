"""litellm, imported on first use: it is heavy, and the CLI and the studio start without it."""

from __future__ import annotations

import logging
from typing import Any

from evoroute import settings as config

_LITELLM: Any = None


def load_litellm() -> Any:
    """litellm, quiet, with the bundled cost map (the offline switches are set first)."""
    global _LITELLM
    if _LITELLM is None:
        config.offline_env()
        import litellm

        litellm.suppress_debug_info = True
        litellm.set_verbose = False
        # litellm logs a traceback for a malformed stream before raising; the error is returned
        # (redacted) in the call's result, so its logger stays quiet
        logging.getLogger("LiteLLM").setLevel(logging.CRITICAL)
        _LITELLM = litellm
    return _LITELLM
