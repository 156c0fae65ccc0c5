"""Export to TFLite with the Larq Compute Engine, verified (rules, ops, parity)."""

from ienet_tf.export import tflite
from ienet_tf.export.flatbuffer import Graph, read_graph
from ienet_tf.export.rules import Violation, check_model
from ienet_tf.export.tflite import *  # noqa: F403

__all__ = [*tflite.__all__, "Graph", "Violation", "check_model", "read_graph"]
