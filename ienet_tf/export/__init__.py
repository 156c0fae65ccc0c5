"""Export to TFLite with the Larq Compute Engine, verified."""

from ienet_tf.export.tflite import (
    ExportError,
    Parity,
    convert,
    expected_binary_convs,
    lce_predict,
    op_histogram,
    parity,
    verify_ops,
)

__all__ = [
    "ExportError",
    "Parity",
    "convert",
    "expected_binary_convs",
    "lce_predict",
    "op_histogram",
    "parity",
    "verify_ops",
]
