"""Input checks shared by every metric (one place, so every metric rejects the same things
the same way): a user's bad sweep raises :class:`~evoroute.core.errors.ValidationError` naming the
argument."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from evoroute.core.errors import ValidationError

FloatArray = NDArray[np.float64]


def _vector(values: ArrayLike, field: str, *, nonnegative: bool = False,
            allow_empty: bool = False) -> FloatArray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{field} must be numbers ({exc})", field=field) from exc
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValidationError(f"{field} must be one-dimensional, got shape {arr.shape}",
                              field=field)
    if arr.size == 0 and not allow_empty:
        raise ValidationError(f"{field} is empty", field=field)
    if not np.all(np.isfinite(arr)):
        raise ValidationError(f"{field} contains NaN or infinite values", field=field)
    if nonnegative and np.any(arr < 0):
        raise ValidationError(f"{field} must be >= 0", field=field)
    return arr


def _scalar(value: float, field: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{field} must be a number ({exc})", field=field) from exc
    if not np.isfinite(out):
        raise ValidationError(f"{field} must be finite", field=field)
    return out


def _points(points: ArrayLike, field: str = "points") -> FloatArray:
    """(n, 2) float array of (total cost, quality); costs >= 0, everything finite."""
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{field} must be (cost, quality) pairs ({exc})",
                              field=field) from exc
    if arr.ndim == 1 and arr.size == 2:
        arr = arr.reshape(1, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValidationError(f"{field} must have shape (n, 2) of (cost, quality), "
                              f"got {arr.shape}", field=field)
    if arr.shape[0] == 0:
        raise ValidationError(f"{field} is empty: a sweep needs at least one point",
                              field=field)
    if not np.all(np.isfinite(arr)):
        raise ValidationError(f"{field} contains NaN or infinite values", field=field)
    if np.any(arr[:, 0] < 0):
        raise ValidationError(f"{field}: costs must be >= 0", field=field)
    return arr


def _same_length(a: FloatArray, b: FloatArray, field_a: str, field_b: str) -> None:
    if a.shape != b.shape:
        raise ValidationError(f"{field_a} and {field_b} differ in length "
                              f"({a.size} vs {b.size})", field=field_b)


def _gap(weak_q: float, strong_q: float) -> tuple[float, float]:
    weak = _scalar(weak_q, "weak_quality")
    strong = _scalar(strong_q, "strong_quality")
    if not strong > weak:
        raise ValidationError(
            f"performance gap recovered needs strong_quality > weak_quality "
            f"(got strong={strong:g}, weak={weak:g}): there is no gap to recover",
            field="strong_quality")
    return weak, strong
