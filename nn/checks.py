"""Argument checks shared by the library: one rule each, one message shape.

Every check raises :class:`ArgumentError`, a ``ValueError`` whose message reads
``"<Owner>: <argument> must ..., got <value>"`` and which carries ``owner`` and ``argument``, so a
caller that knows which setting fed an argument can name it (the pipeline turns these into one line
naming the ``params.yaml`` key).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ArgumentError", "positive_int", "number"]


class ArgumentError(ValueError):
    """An argument out of its range: ``"<owner>: <argument> <problem>"``."""

    def __init__(self, owner: str, argument: str, problem: str):
        super().__init__(f"{owner}: {argument} {problem}")
        self.owner, self.argument = owner, argument


def positive_int(owner: str, name: str, value) -> int:
    """``value`` as an int if it is an integer >= 1 (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ArgumentError(owner, name, f"must be a positive integer, got {value!r}")
    return int(value)


def number(owner, name, value, *, low=0.0, high=math.inf, low_open=False, high_open=False):
    """``value`` as a float if it is a finite number in the interval (default ``[0, inf]``)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ArgumentError(owner, name, f"must be a number, got {value!r}")
    value = float(value)
    below = value <= low if low_open else value < low
    above = value >= high if high_open else value > high
    if not math.isfinite(value) or below or above:
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ArgumentError(owner, name, f"must be in {lo}{low}, {high}{hi}, got {value!r}")
    return value
