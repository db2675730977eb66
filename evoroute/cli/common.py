"""Helpers every subcommand uses: the experience base of ``--db`` and comma-separated lists."""

from __future__ import annotations

import argparse

from evoroute.core.errors import EvoRouteError
from evoroute.settings import DEFAULTS

#: ``--weights`` default as typed on the command line: "1,0.1,0.05".
DEFAULT_WEIGHTS = ",".join(f"{w:g}" for w in DEFAULTS.weights)


def engine(args: argparse.Namespace):
    from evoroute.storage.db import get_engine

    try:
        return get_engine(args.db)
    except ImportError as exc:   # a URL whose driver is not installed (postgresql://, mysql://)
        raise EvoRouteError(f"cannot use the experience base (the database driver "
                            f"'{exc.name or exc}' is not installed); check --db / "
                            f"EVOROUTE_DB_URL") from exc


def split_csv(text: str | None) -> list[str] | None:
    return None if not text else [t.strip() for t in text.split(",") if t.strip()]


def parse_ids(text: str | None, flag: str = "--runs") -> list[int] | None:
    """Comma-separated run ids; ``abc`` is a one-line error naming the flag, not a traceback."""
    out = []
    for t in split_csv(text) or []:
        if not t.isdigit():
            raise EvoRouteError(f"{flag} takes comma-separated run ids (whole numbers), got {t!r}")
        out.append(int(t))
    return out or None
