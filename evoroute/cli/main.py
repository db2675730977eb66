"""The parser and ``main``: errors a user can cause print one line (``error: ...``) and exit
with status 2; heavy libraries are imported only by the commands that need them so ``--help``
is instant."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from evoroute.cli import bench, data, decide, demo, local, models, runs
from evoroute.cli.common import engine
from evoroute.core.errors import EvoRouteError
from evoroute.settings import offline_env

#: Subcommand groups, in the order ``--help`` lists them.
GROUPS = (models, decide, runs, bench, local, demo, data)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the field and the problem), exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m evoroute",
                description="EvoRoute Studio: experience-driven per-step LLM routing.")
    p.add_argument("--db", help="SQLAlchemy URL of the experience base (default: EVOROUTE_DB_URL "
                                "or var/evoroute.db)")
    sub = p.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    offline_env()  # before anything can import litellm or sentence-transformers
    args = build_parser().parse_args(argv)
    if args.command == "runs" and args.action != "list" and args.run_id is None:
        print(f"error: runs {args.action} needs a run id", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except EvoRouteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:   # a path given by the user: missing, a directory, not writable
        where = f" {exc.filename}" if exc.filename else ""
        print(f"error: cannot use{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bad database URL or an unreachable database: one line, no traceback
        from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError, OperationalError

        # a CSV or any other file given as the base: DatabaseError "file is not a database"
        not_a_base = isinstance(exc, DatabaseError) and "not a database" in str(exc)
        if not (isinstance(exc, (ArgumentError, NoSuchModuleError, OperationalError)) or not_a_base):
            raise
        if isinstance(exc, OperationalError) and _is_lock_error(exc):
            print(f"error: {_lock_message(args)}", file=sys.stderr)
            return 2
        print(f"error: cannot use the experience base ({type(exc).__name__}: "
              f"{str(exc).splitlines()[0]}); check --db / EVOROUTE_DB_URL", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _is_lock_error(exc: BaseException) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return "database is locked" in text or "database is busy" in text or "sqlite_busy" in text


def _lock_message(args: argparse.Namespace) -> str:
    """Who holds the write lock, as far as the base says (a read works while another writes)."""
    from evoroute.csvio.importer import active_writers

    try:
        writers = active_writers(engine=engine(args))
    except Exception:  # the base cannot even be read now: say what is known
        writers = []
    who = "; ".join(writers) if writers else "another process"
    return (f"the database is locked by another writer ({who}) and stayed locked longer than "
            "the busy timeout; try again when it has finished")
