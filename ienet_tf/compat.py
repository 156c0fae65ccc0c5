"""The one door to private APIs of larq and Keras.

Everything ienet-tf needs from larq or Keras that is not public API goes through this
module, and `tests/test_compat.py` pins the behaviour we rely on, so that an upgrade of
either library fails there first, with a clear message, instead of deep inside a layer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import tensorflow as tf
from larq import utils as lq_utils
from larq.quantizers import _BaseQuantizer

__all__ = [
    "BaseQuantizer",
    "TorchBatchNormalization",
    "forget_custom_gradients",
    "TorchSGD",
    "inbound_layers",
    "is_functional",
    "larq_pads_natively",
    "larq_same_padding",
    "profiled_variable",
    "record_inputs",
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


@lq_utils.register_keras_custom_object
class TorchBatchNormalization(tf.keras.layers.BatchNormalization):
    """`tf.keras.layers.BatchNormalization` whose moving variance follows PyTorch.

    Both normalise a training batch with its biased variance. PyTorch's running variance
    then takes the *unbiased* batch variance, `var * n / (n - 1)` with `n` the number of
    values per channel (batch x height x width, over all replicas); Keras' takes the
    biased one. With `momentum = 0.9` (PyTorch's 0.1) and `epsilon = 1e-5` this layer is
    PyTorch's `BatchNorm2d` / `BatchNorm1d` in training and in evaluation.

    ```python
    bn = TorchBatchNormalization(momentum=0.9, epsilon=1e-5)
    ```

    Implementation: Keras computes the batch statistics in `_moments` and folds them into
    the moving averages in `_assign_moving_average` (both private, Keras 2.15); the first
    records `n`, the second corrects the variance it is given. The fused kernel (which
    already applies this correction) is never used: `fused=False`.
    """

    def __init__(self, **kwargs):
        kwargs["fused"] = False
        super().__init__(**kwargs)
        self._count = None

    def _moments(self, inputs, reduction_axes, keep_dims, mask=None):
        shape = tf.shape(inputs)
        count = tf.reduce_prod(tf.gather(shape, reduction_axes))
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if self.synchronized and replicas > 1:
            count = count * replicas
        self._count = tf.cast(count, self._param_dtype)
        return super()._moments(inputs, reduction_axes, keep_dims, mask=mask)

    def _assign_moving_average(self, variable, value, momentum, inputs_size):
        if variable is self.moving_variance and self._count is not None:
            value = value * self._count / tf.maximum(self._count - 1.0, 1.0)
        return super()._assign_moving_average(variable, value, momentum, inputs_size)

    def get_config(self):
        config = super().get_config()
        config.pop("fused", None)
        return config


@lq_utils.register_keras_custom_object
class TorchSGD(tf.keras.optimizers.SGD):
    """SGD with momentum in PyTorch's form (the IE-Net release's optimizer).

    PyTorch: `m = mu * m + g; w -= lr * m`. Keras' SGD: `m = mu * m - lr * g; w += m`.
    The two agree while the learning rate is constant; when it changes (a per-epoch
    cosine), Keras' momentum still carries the old learning rate for ~1/(1 - mu) steps and
    PyTorch's does not. Dense gradients only (what these networks produce); no Nesterov.

    ```python
    optimizer = TorchSGD(learning_rate=0.1, momentum=0.9)
    ```

    Implementation: overrides Keras 2.15's `update_step` and reads its per-variable
    momentum slots through the private `_var_key` / `_index_dict`.
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, name="TorchSGD", **kwargs):
        if kwargs.get("nesterov"):
            raise ValueError("TorchSGD has no Nesterov form; use tf.keras.optimizers.SGD.")
        super().__init__(learning_rate=learning_rate, momentum=momentum, name=name, **kwargs)

    def update_step(self, gradient, variable):
        if isinstance(gradient, tf.IndexedSlices):
            gradient = tf.convert_to_tensor(gradient)
        lr = tf.cast(self.learning_rate, variable.dtype)
        if not self.momentum:
            variable.assign_sub(lr * gradient)
            return
        m = self.momentums[self._index_dict[self._var_key(variable)]]
        m.assign(m * tf.cast(self.momentum, variable.dtype) + gradient)
        variable.assign_sub(lr * m)
