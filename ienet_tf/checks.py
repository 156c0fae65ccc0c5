"""Argument checks shared across the package: when a value counts as an integer (the
layers, models, schedule, callbacks, data pipeline, benchmark settings, configs), and when
an array is a batch a model can take (export parity inputs, int8 calibration data)."""

from __future__ import annotations

import numbers

import numpy as np

from ienet_tf.errors import UsageError
from ienet_tf.io import one_line

__all__ = ["input_batch", "is_int", "is_positive_int"]


def is_int(value, minimum: int | None = None, maximum: int | None = None) -> bool:
    """An integer (`True`/`False` are not counts, numpy integers are), within the bounds."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        return False
    return (minimum is None or value >= minimum) and (maximum is None or value <= maximum)


def is_positive_int(value) -> bool:
    """An integer >= 1."""
    return is_int(value, 1)


def _format_shape(dims) -> str:
    return "(N, " + ", ".join("?" if d is None else str(d) for d in dims) + ")"


def input_batch(values, input_shape, model_name: str, what: str = "inputs") -> np.ndarray:
    """`values` as a float32 batch for a model whose Keras `input_shape` is
    `(None, *dims)`, or a `UsageError` naming `what` and what is wrong with it: not one
    array, a dtype that is not a number, one input without the batch axis, a shape the model
    does not take, an empty batch, NaN or infinite values (as float32)."""
    dims = tuple(input_shape[1:]) if isinstance(input_shape, tuple) else None
    expected = _format_shape(dims) if dims is not None else None
    takes = f"{model_name} takes batches of shape {expected}" if expected else ""
    try:
        array = np.asarray(values)
    except (ValueError, TypeError) as error:
        raise UsageError(
            f"{what} cannot be read as one array ({one_line(error, 120)}); pass a float "
            f"array{' of shape ' + expected if expected else ''}."
        ) from None
    if array.dtype.kind == "O":
        try:
            array = array.astype(np.float32)
        except (ValueError, TypeError):
            pass
    if array.dtype.kind not in "biuf":
        raise UsageError(
            f"{what} has dtype {array.dtype}, which does not convert to float32; pass "
            f"float (or integer) images{' of shape ' + expected if expected else ''}."
        )
    if dims is not None:

        def fits(shape) -> bool:
            return len(shape) == len(dims) and all(
                d is None or d == s for s, d in zip(shape, dims, strict=True)
            )

        if fits(array.shape):
            raise UsageError(
                f"{what} has shape {array.shape}: one input without the batch axis, but "
                f"{takes}; add the axis (inputs[None] for a single input)."
            )
        if array.ndim >= 1 and array.shape[0] == 0:
            raise UsageError(
                f"{what} is an empty batch (shape {array.shape}); pass at least one input."
            )
        if not fits(array.shape[1:]):
            raise UsageError(
                f"{what} has shape {array.shape}, but {takes}; pass inputs of the data set "
                "the model was built for."
            )
    elif array.ndim == 0 or array.shape[0] == 0:
        raise UsageError(f"{what} has shape {array.shape}; pass a non-empty batch.")
    with np.errstate(over="ignore", invalid="ignore"):
        array = array.astype(np.float32)
    finite = np.isfinite(array).reshape(len(array), -1).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise UsageError(
            f"{what} has NaN or infinite values (as float32) in {len(bad)} of {len(array)} "
            f"inputs (first: index {bad[0]}); pass finite inputs (check the data's "
            "normalization)."
        )
    return array
