"""Input validation shared by the dataset constructors."""

from __future__ import annotations

import math
from collections.abc import Collection
from numbers import Integral, Real


def check_int(name: str, value: object, *, minimum: int = 1) -> int:
    """Return ``value`` as an int, or raise if it is not an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def check_fraction(name: str, value: object, *, high: float = 1.0, closed: bool = True) -> float:
    """Return ``value`` as a float in ``[0, high]`` (``[0, high)`` unless ``closed``), or raise."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}.")
    value = float(value)
    if not (0.0 <= value <= high) or (not closed and value == high):
        interval = f"[0, {high:g}]" if closed else f"[0, {high:g})"
        raise ValueError(f"{name} must lie in {interval}, got {value:g}.")
    return value


def check_choice(name: str, value: object, choices: Collection[str]) -> str:
    """Return ``value`` if it is one of ``choices``, or raise naming the valid ones."""
    if value not in choices:
        options = ", ".join(map(repr, choices))
        raise ValueError(f"Unknown {name} {value!r}: choose one of {options}.")
    return value  # type: ignore[return-value]


def check_number(name: str, value: object, *, minimum: float | None = None,
                 maximum: float | None = None) -> float:
    """Return ``value`` as a finite float within ``[minimum, maximum]``, or raise."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}.")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}.")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        low = "-inf" if minimum is None else f"{minimum:g}"
        high = "inf" if maximum is None else f"{maximum:g}"
        raise ValueError(f"{name} must lie in [{low}, {high}], got {value:g}.")
    return value
