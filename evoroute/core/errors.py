"""Typed errors a user can cause. The CLI and the studio show their message, never a traceback."""

from __future__ import annotations


class EvoRouteError(Exception):
    """Base class for every error caused by user input or configuration."""


class ValidationError(EvoRouteError, ValueError):
    """A value given by the user is invalid (bad price, empty name, bad weight...).

    ``field`` names the offending field so a form can show the message next to it.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UnknownModelError(EvoRouteError, KeyError):
    """A model name that is not registered."""

    def __init__(self, name: str, known: list[str] | None = None) -> None:
        hint = f" (registered: {', '.join(sorted(known))})" if known else ""
        super().__init__(f"unknown model {name!r}{hint}")
        self.name = name

    def __str__(self) -> str:  # KeyError would add quotes around the message
        return self.args[0]


class DuplicateModelError(ValidationError):
    """A model with that name is already registered."""


class DatasetError(EvoRouteError):
    """A dataset file (or row) is malformed. Names file, line and column when known."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 column: str | None = None) -> None:
        where = ", ".join(p for p in (
            f"file {file}" if file else "",
            f"line {line}" if line is not None else "",
            f"column {column!r}" if column else "") if p)
        super().__init__(f"{where}: {message}" if where else message)
        self.file, self.line, self.column = file, line, column


class EmptyDatasetError(DatasetError):
    """A dataset with no usable rows."""


class BackendError(EvoRouteError):
    """A backend could not execute a step (e.g. a model call failed after retries)."""
