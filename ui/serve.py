"""Start the studio: ``python -m ui.serve [streamlit run options]`` (what ``make run`` does).

It is ``streamlit run app.py`` bound to 127.0.0.1 (the project's .streamlit/config.toml holds
the rest), with one difference: the libraries every page needs (pandas, SQLModel, plotly, the
studio's own modules) are imported *before* the server starts listening. Under a plain
``streamlit run`` the first page a browser opens pays those imports inside its script run
(opening the studio 2.0–2.7 s → 1.2–1.4 s here: ``python -m benchmarks.studio_open`` and
``studio_pages --launcher``, docs/studio.md);
here they are paid while the server starts, before anyone can be waiting for it. Compare's
per-step oracle of the bundled RouterBench data is read in a background thread meanwhile.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: what the pages import at their top (the modules, not the pages: nothing runs)
PRELOAD = ("pandas", "sqlmodel", "plotly.graph_objects", "ui.state", "ui.widgets", "ui.charts",
           "evoroute.studio.launch", "evoroute.studio.overview", "evoroute.studio.feed",
           "evoroute.studio.explain", "evoroute.studio.models", "evoroute.studio.compare")


def preload() -> float:
    """Import :data:`PRELOAD`; returns the seconds it took."""
    from evoroute.settings import offline_env

    offline_env()                       # as app.py does, before anything imports litellm
    t0 = time.perf_counter()
    for name in PRELOAD:
        importlib.import_module(name)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    took = preload()
    print(f"EvoRoute Studio: libraries loaded in {took:.1f} s; starting the server", flush=True)
    from evoroute.backends.names import DEFAULT_DATASET
    from evoroute.studio.compare import prefetch_oracle

    prefetch_oracle(DEFAULT_DATASET["replay"])    # Compare's per-step oracle of the bundled data, meanwhile
    from streamlit.web import cli as stcli

    sys.argv = ["streamlit", "run", str(ROOT / "app.py"), "--server.address", "127.0.0.1", *args]
    return stcli.main()


if __name__ == "__main__":
    raise SystemExit(main())
