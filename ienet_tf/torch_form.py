"""Keras layers and optimizers that compute what their PyTorch namesakes compute.

The authors trained in PyTorch; where Keras' BatchNormalization and SGD differ from
PyTorch's in ways that change a trained network, these subclasses follow PyTorch. Both
override private Keras 2.15 methods (named in each docstring); `tests/test_torch_form.py`
pins them against PyTorch's formulas, so a Keras upgrade fails there first.
"""

from __future__ import annotations

import tensorflow as tf

from ienet_tf.registration import register

__all__ = ["TorchBatchNormalization", "TorchSGD"]


@register
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


@register
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
