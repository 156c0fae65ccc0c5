"""The one door to private APIs of larq and Keras.

Everything ienet-tf needs from larq or Keras that is not public API goes through this
module, and `tests/test_compat.py` pins the behaviour we rely on, so that an upgrade of
either library fails there first, with a clear message, instead of deep inside a layer.
(`ienet_tf.torch_form`'s PyTorch-form BatchNorm and SGD override private Keras methods
by design; `tests/test_torch_form.py` pins those.)
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator

import tensorflow as tf
from larq import utils as lq_utils
from larq.quantizers import _BaseQuantizer

__all__ = [
    "BaseQuantizer",
    "forget_custom_gradients",
    "full_precision_value",
    "inbound_layers",
    "is_functional",
    "larq_pads_natively",
    "larq_same_padding",
    "profiled_variable",
    "record_inputs",
    "skip_inapplicable_starved_weights_warnings",
    "valid_padding",
]

#: larq's base class of quantizers that are Keras layers with metrics (`larq.quantizers.
#: _BaseQuantizer`): `precision`, `get_config` and larq's flip-ratio metric come with it.
BaseQuantizer = _BaseQuantizer


def forget_custom_gradients() -> int:
    """Drop the gradient functions TensorFlow registered for `tf.custom_gradient` calls in
    graph mode; returns how many.

    Every graph-mode call of a `tf.custom_gradient` function (larq's quantizers and ours, each
    time a Keras functional model is built or a function traced) registers a new gradient
    function in TF's global gradient registry (private `ops._gradient_registry`) and nothing
    ever removes it. Each keeps the graph it was traced in alive, and with it every variable
    that graph captured: building a ResNet-18 with binary layers 10 times in one process keeps
    10 copies of its kernels (measured: +60 MB per build, never freed). Call this after
    `tf.keras.backend.clear_session()`, when no model built before is trained any more (a
    traced training step has its gradients already; a new trace registers new functions).
    """
    from tensorflow.python.framework import ops

    registry = ops._gradient_registry._registry
    stale = [name for name in registry if name.startswith("CustomGradient-")]
    for name in stale:
        del registry[name]
    return len(stale)


def full_precision_value(variable) -> tf.Tensor:
    """`variable`'s value in its own dtype (float32 under a mixed policy), also where Keras
    would cast it to the compute dtype (inside a layer's `build` and `call`; Keras'
    private `enable_auto_cast_variables`)."""
    from keras.src.mixed_precision import autocast_variable

    with autocast_variable.enable_auto_cast_variables(None):
        return tf.convert_to_tensor(variable)


def larq_pads_natively(layer) -> bool:
    """Whether a larq quantized conv pads with TensorFlow's own "same"/"valid" (zero
    padding) rather than padding its binarized input with `pad_values` itself (larq keeps
    this in the private `_is_native_padding`)."""
    return bool(layer._is_native_padding)


def larq_same_padding(layer, inputs: tf.Tensor) -> list[list[int]]:
    """The `tf.pad` paddings of TensorFlow's "same" for a larq conv and these inputs
    (larq's private `_get_padding_same`)."""
    return layer._get_padding_same(inputs)


@contextlib.contextmanager
def valid_padding(layer) -> Iterator[None]:
    """Run a larq conv's convolution with "valid" padding (after padding its input
    ourselves), as larq does with its `utils.patch_object`."""
    with lq_utils.patch_object(layer, "padding", "valid"):
        yield


def profiled_variable(weight_profile) -> tf.Variable:
    """The variable behind one of larq's `WeightProfile`s (its private `_weight`)."""
    return weight_profile._weight


def is_functional(model) -> bool:
    """A Keras functional model (a graph of layers; Keras' private `_is_graph_network`)."""
    return bool(getattr(model, "_is_graph_network", False))


def record_inputs(layer, run: Callable[[], object]) -> list:
    """The inputs `layer` receives while `run()` runs: its `call` is wrapped for the
    duration (an instance attribute shadowing the class method), then restored."""
    recorded = []
    original = layer.call

    def recording_call(inputs, *args, **kwargs):
        recorded.append(inputs)
        return original(inputs, *args, **kwargs)

    layer.call = recording_call
    try:
        run()
    finally:
        del layer.call
    return recorded


def inbound_layers(layer: tf.keras.layers.Layer) -> list[tf.keras.layers.Layer]:
    """The layers whose outputs `layer` consumes in the functional model(s) it belongs to
    (Keras 2.15 keeps them on the private `_inbound_nodes`)."""
    found = []
    for node in getattr(layer, "_inbound_nodes", []):
        inbound = node.inbound_layers
        found.extend(inbound if isinstance(inbound, (list, tuple)) else [inbound])
    return found


#: larq's logger of its layers' construction warnings, and the warning this module filters.
_LARQ_LAYERS_LOG = "larq.layers_base"
_STARVED = "may result in starved weights"


def _quantizer_of_layer_being_built(record: logging.LogRecord):
    """The weight quantizer that larq's warning `record` is about, read from the frame of
    the larq constructor that logs it (the record itself does not carry the layer)."""
    attribute = "kernel_quantizer"
    for name in ("depthwise", "pointwise"):
        if f"`{name}_" in record.getMessage():
            attribute = f"{name}_quantizer"
    frame = sys._getframe()
    while frame is not None:
        layer = frame.f_locals.get("self")
        if frame.f_code.co_name == "__init__" and hasattr(layer, attribute):
            return getattr(layer, attribute)
        frame = frame.f_back
    return None


class _ApplicableStarvedWeightsWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _STARVED not in record.getMessage():
            return True
        quantizer = _quantizer_of_layer_being_built(record)
        return getattr(quantizer, "starves_without_constraint", True)


def skip_inapplicable_starved_weights_warnings() -> None:
    """Keep larq's "may result in starved weights" warning (logged once per layer with a
    binary weight quantizer and no weight constraint) only for quantizers it applies to: a
    quantizer whose `starves_without_constraint` is False (`IEESign`, which standardizes
    the weights before the sign) does not log it. Idempotent."""
    log = logging.getLogger(_LARQ_LAYERS_LOG)
    if not any(isinstance(f, _ApplicableStarvedWeightsWarnings) for f in log.filters):
        log.addFilter(_ApplicableStarvedWeightsWarnings())
