"""Pins the private Keras methods that `ienet_tf.torch_form` overrides, against PyTorch's
formulas: a Keras upgrade that changes them fails here first."""

import numpy as np
import pytest
import tensorflow as tf

from ienet_tf.torch_form import TorchBatchNormalization, TorchSGD


def test_torch_sgd_reaches_keras_momentum_slots():
    variable = tf.Variable([1.0, 2.0])
    optimizer = TorchSGD(0.1, momentum=0.9)
    optimizer.apply_gradients([(tf.constant([1.0, 1.0]), variable)])
    optimizer.apply_gradients([(tf.constant([1.0, 1.0]), variable)])
    # m1 = g = 1; w1 = w0 - 0.1; m2 = 0.9 + 1 = 1.9; w2 = w1 - 0.19.
    np.testing.assert_allclose(variable.numpy(), [1.0 - 0.29, 2.0 - 0.29], rtol=1e-6)
    with pytest.raises(ValueError, match="no Nesterov form"):
        TorchSGD(0.1, momentum=0.9, nesterov=True)


def test_batchnorm_hooks_see_the_moments_and_the_moving_variance():
    bn = TorchBatchNormalization(momentum=0.0, epsilon=0.0, synchronized=True)
    x = np.arange(8, dtype=np.float32).reshape(4, 2)
    bn(x, training=True)
    # momentum 0: the moving variance IS the unbiased batch variance (n = 4).
    np.testing.assert_allclose(bn.moving_variance.numpy(), x.var(axis=0, ddof=1), rtol=1e-6)
    assert "fused" not in bn.get_config()
