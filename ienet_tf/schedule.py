"""The IEE schedule: the pure functions behind `callbacks.IEESchedule`.

IE-Net sharpens its surrogate gradient over training. For epoch `e` of `E`:

\\[
q_e = 10^{T_{min} + (T_{max} - T_{min}) \\cdot e / E}, \\qquad r_e = \\max(1 / q_e, 1)
\\]

The release updates `q` once per epoch, before the epoch trains, for `e = 0 .. E-1`, so
the last epoch has `q = 10^(T_max - (T_max - T_min)/E)`, not exactly `10^T_max`.
"""

from __future__ import annotations

import math
import numbers

from ienet_tf.checks import is_int, is_positive_int

__all__ = ["DEFAULT_T_MAX", "DEFAULT_T_MIN", "iee_q", "iee_r", "validate_schedule"]

DEFAULT_T_MIN = -2.0
DEFAULT_T_MAX = 1.0


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def validate_schedule(epochs: int, t_min: float, t_max: float) -> None:
    """Raise `ValueError` naming the argument unless `epochs`, `t_min`, `t_max` are valid."""
    if not is_positive_int(epochs):
        raise ValueError(
            f"`epochs` must be a positive integer (the length of the IEE schedule), got {epochs!r}."
        )
    for name, value in (("t_min", t_min), ("t_max", t_max)):
        if not _is_real(value) or not math.isfinite(value):
            raise ValueError(f"`{name}` must be a finite number, got {value!r}.")
    if t_min >= t_max:
        raise ValueError(
            f"`t_min` must be smaller than `t_max` (q grows from 10^t_min to 10^t_max), "
            f"got t_min={t_min!r}, t_max={t_max!r}."
        )


def iee_q(
    epoch: int,
    epochs: int,
    t_min: float = DEFAULT_T_MIN,
    t_max: float = DEFAULT_T_MAX,
) -> float:
    """The IEE sharpness `q` for 0-based `epoch` of a schedule of `epochs` epochs.

    Epochs past the end of the schedule (a `fit` longer than the schedule) keep
    `q = 10^t_max` rather than extrapolating.
    """
    validate_schedule(epochs, t_min, t_max)
    if not is_int(epoch, 0):
        raise ValueError(f"`epoch` must be a non-negative integer, got {epoch!r}.")
    progress = min(epoch / epochs, 1.0)
    return float(10.0 ** (t_min + (t_max - t_min) * progress))


def iee_r(q: float) -> float:
    """The IEE gradient scale `r = max(1/q, 1)`: keeps the peak gradient at `sqrt(3)`
    while `q < 1`, so early training sees a wide, STE-like estimator."""
    if not _is_real(q) or not q > 0:
        raise ValueError(f"`q` must be a positive number, got {q!r}.")
    return max(1.0 / q, 1.0)
