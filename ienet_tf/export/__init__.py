"""Export to TFLite with the Larq Compute Engine, verified."""

from ienet_tf.export import tflite
from ienet_tf.export.tflite import *  # noqa: F403

__all__ = tflite.__all__
