"""Argument checks shared by the layers and model builders."""

from __future__ import annotations

import numbers

__all__ = ["is_positive_int"]


def is_positive_int(value) -> bool:
    """An integer >= 1 (`True`/`False` are not counts, numpy integers are)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1
