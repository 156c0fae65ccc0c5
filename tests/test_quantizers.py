import math

import larq as lq
import numpy as np
import numpy_reference as ref
import pytest
import tensorflow as tf

from ienet_tf import quantizers

SCHEDULE_QS = [0.01, 0.316, 1.0, 9.83]


def _points_around_support(q):
    """Inputs inside, exactly at and outside the support |x| < 2 sqrt3 / (3q), both signs."""
    edge = 2 * math.sqrt(3) / (3 * q)
    xs = np.array([0.0, 0.1, 0.5, 0.9, 1.0, 1.1, 3.0]) * edge
    return np.concatenate([xs, -xs[1:]]).astype(np.float32)


def _value_and_grad(quantizer, x, training=None, cotangent=None):
    x = tf.Variable(x)
    cotangent = np.ones(x.shape, np.float32) if cotangent is None else cotangent
    with tf.GradientTape() as tape:
        kwargs = {} if training is None else {"training": training}
        y = quantizer(x, **kwargs)
        loss = tf.reduce_sum(y * cotangent)
    return y.numpy(), tape.gradient(loss, x).numpy()


@pytest.mark.parametrize("q", SCHEDULE_QS)
def test_iee_sign_backward_matches_spec_inside_at_and_outside_support(q):
    x = _points_around_support(q)
    quantizer = quantizers.IEESign(standardize=False, q=q)
    y, grad = _value_and_grad(quantizer, x)
    r = ref.schedule_r(q)
    np.testing.assert_allclose(grad, ref.iee_derivative(x, q, r), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(y, ref.sign(x))
    edge = 2 * math.sqrt(3) / (3 * q)
    assert np.all(grad[np.abs(x) >= edge * (1 - 1e-6)] == 0)  # at and outside: zero
    assert grad[0] == pytest.approx(r * math.sqrt(3) * q, rel=1e-5)  # peak at x = 0


@pytest.mark.parametrize("q", SCHEDULE_QS)
def test_iee_derivative_is_the_derivative_of_the_continuous_surrogate(q):
    r = ref.schedule_r(q)
    edge = 2 * math.sqrt(3) / (3 * q)
    x = np.linspace(-0.95 * edge, 0.95 * edge, 41)
    x = x[np.abs(x) > 1e-3 * edge]  # F has a kink-free but sign-switching x^2 term at 0
    h = 1e-6 * edge
    numeric = (ref.iee_surrogate(x + h, q, r) - ref.iee_surrogate(x - h, q, r)) / (2 * h)
    tensor = quantizers.iee_derivative(tf.constant(x), tf.constant(q, tf.float64), r)
    np.testing.assert_allclose(tensor.numpy(), numeric, rtol=1e-5, atol=1e-8)
    # F is continuous at the edge and reaches +-r there.
    assert ref.iee_surrogate(edge * (1 - 1e-9), q, r) == pytest.approx(r, rel=1e-6)


def test_forward_is_exactly_plus_minus_one_with_sign_of_zero_positive():
    x = np.array([-2.0, -1e-7, 0.0, 1e-7, 3.0], np.float32)
    for quantizer in (
        quantizers.IEESign(standardize=False),
        quantizers.IEEActivationSign(normalize=False),
        quantizers.IEEActivationSign(),
    ):
        y, _ = _value_and_grad(quantizer, x[None], training=True)
        np.testing.assert_array_equal(y[0], [-1.0, -1.0, 1.0, 1.0, 1.0])


def test_standardized_weights_are_binary_per_output_channel(rng):
    w = rng.normal(2.0, 3.0, size=(3, 3, 4, 6)).astype(np.float32)
    y, _ = _value_and_grad(quantizers.IEESign(), w)
    np.testing.assert_array_equal(y, ref.sign(ref.standardize_per_output_channel(w)))


@pytest.mark.parametrize("q", [0.01, 1.0, 9.83])
def test_gradient_through_balance_and_standardize_matches_finite_differences(q, rng):
    w = rng.normal(0.3, 0.5, size=(3, 3, 2, 4))
    cotangent = rng.normal(size=w.shape)
    quantizer = quantizers.IEESign(q=q)
    _, grad = _value_and_grad(quantizer, w.astype(np.float32), cotangent=cotangent)
    # Chain rule: dL/dW = J_standardize(W)^T (g * IEE'(W_hat)); the inner factor is
    # constant in W, the outer Jacobian is taken by finite differences in float64.
    w_hat = ref.standardize_per_output_channel(w)
    inner = cotangent * ref.iee_derivative(w_hat, q, ref.schedule_r(q))
    expected = ref.finite_difference_vjp(ref.standardize_per_output_channel, w, inner)
    np.testing.assert_allclose(grad, expected, rtol=2e-3, atol=2e-4 * np.abs(expected).max())
    # Nothing is stopped: the gradient is not just the elementwise IEE term.
    naive = inner / np.sqrt(w.var(axis=(0, 1, 2), ddof=1) + 1e-5)
    assert np.abs(grad - naive).max() > 1e-3 * np.abs(naive).max()


@pytest.mark.parametrize("q", [0.01, 0.316, 9.83])
def test_iee_activation_sign_in_training_uses_per_sample_scaling(q, rng):
    x = rng.normal(0.1, 2.0, size=(3, 4, 4, 2))
    cotangent = rng.normal(size=x.shape)
    quantizer = quantizers.IEEActivationSign(q=q)
    y, grad = _value_and_grad(quantizer, x.astype(np.float32), True, cotangent)
    q_a = max(q, 1.0)
    x_tilde = ref.scale_per_sample(x)
    inner = cotangent * ref.iee_derivative(x_tilde, q_a, 1.0)
    expected = ref.finite_difference_vjp(ref.scale_per_sample, x, inner)
    np.testing.assert_allclose(grad, expected, rtol=2e-3, atol=2e-4 * np.abs(expected).max())
    np.testing.assert_array_equal(y, ref.sign(x))


@pytest.mark.parametrize("q", [0.01, 9.83])
def test_iee_activation_sign_at_inference_has_no_scaling(q, rng):
    x = rng.normal(size=(2, 3, 3, 2)).astype(np.float32)
    _, grad = _value_and_grad(quantizers.IEEActivationSign(q=q), x, training=False)
    np.testing.assert_allclose(grad, ref.iee_derivative(x, max(q, 1.0), 1.0), rtol=1e-5)
    _, grad = _value_and_grad(quantizers.IEEActivationSign(q=q, normalize=False), x, True)
    np.testing.assert_allclose(grad, ref.iee_derivative(x, max(q, 1.0), 1.0), rtol=1e-5)


def test_q_is_a_non_trainable_variable_and_r_derives_from_it():
    quantizer = quantizers.IEESign()
    assert isinstance(quantizer.q, tf.Variable) and not quantizer.q.trainable
    assert quantizer.q.numpy() == pytest.approx(0.01)
    assert quantizer.r.numpy() == pytest.approx(100.0)
    quantizer.q.assign(3.0)
    assert quantizer.r.numpy() == pytest.approx(1.0)
    assert quantizer.non_trainable_weights == [quantizer.q]
    assert quantizer.trainable_weights == []


@pytest.mark.parametrize(
    "alias, cls",
    [("iee_sign", quantizers.IEESign), ("iee_act_sign", quantizers.IEEActivationSign)],
)
def test_aliases_and_config_round_trip(alias, cls):
    assert isinstance(lq.quantizers.get(alias), cls)
    quantizer = cls(q=0.5)
    restored = lq.quantizers.get(lq.quantizers.serialize(quantizer))
    assert type(restored) is cls
    assert restored.get_config() == quantizer.get_config()
    assert restored.q.numpy() == pytest.approx(0.5)


def test_quantizers_plug_into_larq_layers():
    layer = lq.layers.QuantConv2D(
        8, 3, input_quantizer="iee_act_sign", kernel_quantizer="iee_sign", use_bias=False
    )
    y = layer(tf.random.normal((2, 5, 5, 3))).numpy()
    assert isinstance(layer.kernel_quantizer, quantizers.IEESign)
    assert isinstance(layer.input_quantizer, quantizers.IEEActivationSign)
    # +-1 inputs times +-1 weights over 3*3*3 = 27 terms: odd integers in [-27, 27].
    np.testing.assert_array_equal(y, np.round(y))
    assert np.all(np.abs(y) <= 27) and np.all(np.abs(y) % 2 == 1)


@pytest.mark.parametrize("q", [0.0, -1.0, float("inf")])
def test_invalid_q(q):
    with pytest.raises(ValueError, match="`q`"):
        quantizers.IEESign(q=q)


@pytest.mark.parametrize(
    "resolver, argument, bad",
    [
        (quantizers.get_kernel_quantizer, "kernel_quantizer", "iee"),
        (quantizers.get_kernel_quantizer, "kernel_quantizer", lq.quantizers.DoReFa(2)),
        (quantizers.get_input_quantizer, "input_quantizer", "ste_tern"),
        (quantizers.get_input_quantizer, "input_quantizer", "iee"),
        (quantizers.get_input_quantizer, "input_quantizer", 3),
    ],
)
def test_unknown_estimators_name_argument_value_and_allowed(resolver, argument, bad):
    with pytest.raises(ValueError, match=f"`{argument}`") as error:
        resolver(bad)
    assert "e.g. 'ste_sign'" in str(error.value)  # says what would be accepted


@pytest.mark.parametrize(
    "identifier, cls",
    [
        ("iee_act_sign", quantizers.IEEActivationSign),
        ("approx_sign", lq.quantizers.ApproxSign),
        ("ste_sign", lq.quantizers.SteSign),
        ("swish_sign", lq.quantizers.SwishSign),
        ("iee_sign", quantizers.IEESign),  # larq's names, whatever role they were made for
    ],
)
def test_input_quantizer_names(identifier, cls):
    assert type(quantizers.get_input_quantizer(identifier)) is cls
