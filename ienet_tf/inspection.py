r"""Model inspection, the one home of "what is binary in this model" and of the
statistics of binary layers: which quantizers and layers are binary (`is_binary`,
`binary_layers`, `is_binary_conv`), the IEE quantizers a schedule drives
(`iee_quantizers`), and the standardized latent weights, entropy, quantization error and
flips of binary kernels. Every other module (callbacks, cost, export rules, reports) asks
here; this module imports nothing of the package but the quantizers.

The statistics work on numpy arrays of kernels laid out with the output channel LAST
(`(kh, kw, C_in, C_out)` for a convolution, `(C_in, C_out)` for a dense layer); the few
functions that take a layer only read its weights. Binary kernels are +-1 arrays.

```python
from ienet_tf import inspection as stats

for layer in stats.binary_kernel_layers(model):
    b = stats.binary_kernel(layer)
    print(layer.name, stats.binary_weight_entropy(b), stats.quantization_error(
        stats.latent_standardized(layer), b))
```
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator

import larq as lq
import numpy as np
import tensorflow as tf

from ienet_tf import quantizers

__all__ = [
    "binary_kernel",
    "binary_kernel_layers",
    "binary_layers",
    "binary_weight_entropy",
    "binarization_disagreement",
    "branch_diversity",
    "branched_convs",
    "channel_weight_entropy",
    "entropy_bits",
    "flip_ratio",
    "gradient_norms",
    "iee_quantizers",
    "is_binary",
    "is_binary_conv",
    "latent_kernel",
    "latent_standardized",
    "layer_k",
    "layer_thresholds",
    "optimal_alpha",
    "quantization_error",
    "state_restored",
]

#: Layers whose kernel has the output channel on the last axis (depthwise layers do not).
_QUANT_LAYERS = (
    lq.layers.QuantConv1D,
    lq.layers.QuantConv2D,
    lq.layers.QuantConv3D,
    lq.layers.QuantDense,
)
#: larq's sign-type quantizers: their binary value is sign(latent) (sign(0) = +1), scaled.
_SIGN_QUANTIZERS = (
    lq.quantizers.SteSign,
    lq.quantizers.ApproxSign,
    lq.quantizers.SwishSign,
    lq.quantizers.MagnitudeAwareSign,
)


def is_binary(quantizer) -> bool:
    """A binary (precision 1) larq quantizer; `None` (no quantizer) is not."""
    return quantizer is not None and getattr(quantizer, "precision", None) == 1


def is_binary_conv(layer) -> bool:
    """A larq conv layer whose input and kernel are both binarized (IE-BC included)."""
    return (
        isinstance(layer, lq.layers.QuantConv2D)
        and is_binary(layer.input_quantizer)
        and is_binary(layer.kernel_quantizer)
    )


def _walk(model: tf.keras.layers.Layer | Iterable) -> Iterator[tf.keras.layers.Layer]:
    """Every layer of `model` in model order, nested models expanded."""
    layers = [model] if isinstance(model, tf.keras.layers.Layer) else model
    for layer in layers:
        if hasattr(layer, "layers") and not isinstance(layer, _QUANT_LAYERS):
            yield from _walk(layer.layers)
        else:
            yield layer


def binary_layers(model: tf.keras.layers.Layer | Iterable) -> list[tf.keras.layers.Layer]:
    """The larq quant conv/dense layers with a binary input OR kernel quantizer, in model
    order, nested models included (what the LCE converter must turn into binary ops)."""
    return [
        layer
        for layer in _walk(model)
        if isinstance(layer, _QUANT_LAYERS)
        and (
            is_binary(getattr(layer, "input_quantizer", None))
            or is_binary(getattr(layer, "kernel_quantizer", None))
        )
    ]


def binary_kernel_layers(model: tf.keras.layers.Layer | Iterable) -> list[tf.keras.layers.Layer]:
    """The layers with a binary kernel (a larq quant conv/dense layer whose
    `kernel_quantizer` has precision 1, e.g. `IEBinaryConv2D`), in model order, nested
    models included. `model` may also be an iterable of layers (kept if binary)."""
    return [layer for layer in binary_layers(model) if is_binary(layer.kernel_quantizer)]


def iee_quantizers(model: tf.Module) -> Iterator[quantizers.IEEQuantizer]:
    """Every IEE quantizer inside `model`: in its layers, nested layers and sub-models."""
    if isinstance(model, quantizers.IEEQuantizer):
        yield model
    for module in model.submodules:
        if isinstance(module, quantizers.IEEQuantizer):
            yield module


def _check_binary_layer(layer) -> None:
    if not isinstance(layer, _QUANT_LAYERS) or not is_binary(layer.kernel_quantizer):
        raise ValueError(
            f"layer {getattr(layer, 'name', layer)!r} is not a binary layer (a larq "
            "QuantConv/QuantDense layer with a binary kernel_quantizer)."
        )
    if not layer.built:
        raise ValueError(f"layer {layer.name!r} is not built: it has no kernel yet.")


def latent_kernel(layer) -> np.ndarray:
    """The float latent kernel of a binary layer, float64, as stored (no quantizer)."""
    _check_binary_layer(layer)
    kernel = layer.kernel
    return np.asarray(getattr(kernel, "latent_variable", kernel).numpy(), np.float64)


def latent_standardized(layer) -> np.ndarray:
    r"""The latent kernel as the sign sees it, float64, same shape as the kernel.

    For an `IEESign` kernel quantizer with `standardize=True` (IE-Net's IEE), the balanced
    and standardized kernel per output channel (mean and unbiased variance over all other
    axes, `quantizers.standardize`):

    \\[ \hat{W} = (W - \operatorname{mean}(W)) / \sqrt{\operatorname{var}(W) + 10^{-5}} \\]

    For every other binary quantizer (`ste_sign`, `magnitude_aware_sign`, IEE without
    standardization, ...) the raw latent kernel `W`.
    """
    latent = latent_kernel(layer)
    quantizer = layer.kernel_quantizer
    if isinstance(quantizer, quantizers.IEESign) and quantizer.standardize:
        axes = list(range(latent.ndim - 1))
        return quantizers.standardize(tf.constant(latent), axes=axes).numpy()
    return latent


def binary_kernel(layer) -> np.ndarray:
    """The layer's binarized kernel as a +-1 float64 array (scales such as the
    magnitude-aware factor or the layer's alpha removed).

    For larq's sign quantizers and `IEESign` (all of them `lq.math.sign`, sign(0) = +1)
    this is `sign(latent_standardized(layer))`, numpy only. Any other binary quantizer is
    run on the latent kernel and its output mapped to +1 where > 0, -1 elsewhere.
    """
    quantizer = layer.kernel_quantizer
    latent = latent_standardized(layer)
    if isinstance(quantizer, (quantizers.IEEQuantizer, *_SIGN_QUANTIZERS)):
        return np.where(latent >= 0, 1.0, -1.0)
    outputs = np.asarray(quantizer(tf.constant(latent, tf.float32)))
    return np.where(outputs > 0, 1.0, -1.0)


def layer_thresholds(layer) -> np.ndarray:
    """The (K, C_in) input thresholds beta_k of an `IEBinaryConv2D` layer; zeros (1, C_in)
    for a binary layer without thresholds (Bi-Real, plain larq `QuantConv2D`)."""
    _check_binary_layer(layer)
    thresholds = getattr(layer, "thresholds", None)
    if thresholds is not None:
        return np.asarray(thresholds.numpy(), np.float64)
    return np.zeros((1, int(layer.kernel.shape[-2])))


def layer_k(layer) -> int:
    """The number K of IE-BC branches (1 for any other binary layer)."""
    return int(getattr(layer, "k", 1))


def entropy_bits(p) -> np.ndarray | float:
    """Binary entropy `-p log2 p - (1-p) log2(1-p)` in bits, 0 at p = 0 and p = 1."""
    p = np.asarray(p, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -p * np.log2(p) - (1.0 - p) * np.log2(1.0 - p)
    h = np.where((p <= 0.0) | (p >= 1.0), 0.0, h)
    return float(h) if h.ndim == 0 else h


def _check_binary(binary: np.ndarray, argument: str) -> np.ndarray:
    binary = np.asarray(binary, np.float64)
    if binary.size == 0:
        raise ValueError(f"`{argument}` is empty.")
    if not np.all(np.abs(binary) == 1.0):
        raise ValueError(f"`{argument}` must hold only +1 and -1 (a binarized kernel).")
    return binary


def binary_weight_entropy(binary_kernel: np.ndarray) -> float:
    r"""Information entropy of a layer's binary weights, in bits (OUR definition).

    \\[ H = -p \log_2 p - (1 - p) \log_2 (1 - p), \qquad
        p = \frac{\#\{B_W = +1\}}{\#B_W} \\]

    over all entries of the layer's binarized kernel, `H = 0` when `p` is 0 or 1; at most
    1 bit, reached by a balanced kernel (`p = 1/2`). The IE-Net paper (Table 2) sums an
    "information entropy of binary weights" over layers without defining it; this
    per-layer Bernoulli entropy of the sign distribution is our definition, and the
    report's totals sum it over layers.
    """
    binary = _check_binary(binary_kernel, "binary_kernel")
    return entropy_bits(np.mean(binary > 0))


def channel_weight_entropy(binary_kernel: np.ndarray) -> float:
    r"""Mean over output channels (the last axis) of the per-channel entropy, in bits.

    \\[ \bar{H} = \frac{1}{C_{out}} \sum_{c} H(p_c), \qquad
        p_c = \text{fraction of } +1 \text{ in output channel } c \\]

    with `H` as in `binary_weight_entropy`. IEE balances each output channel before the
    sign, so it drives `p_c` towards 1/2 in every channel, not only on average: this is
    never larger than `binary_weight_entropy` (entropy is concave).
    """
    binary = _check_binary(binary_kernel, "binary_kernel")
    p = np.mean(binary.reshape(-1, binary.shape[-1]) > 0, axis=0)
    return float(np.mean(entropy_bits(p)))


def optimal_alpha(latent: np.ndarray) -> np.ndarray:
    """`alpha_c = mean |latent|` per output channel (over all axes but the last): the
    scale minimising `||latent - alpha * sign(latent)||^2` per channel (XNOR-Net)."""
    latent = np.asarray(latent, np.float64)
    return np.mean(np.abs(latent), axis=tuple(range(latent.ndim - 1)))


def quantization_error(
    latent: np.ndarray, binary: np.ndarray, alpha: np.ndarray | None = None
) -> float:
    r"""Mean squared error between the (standardized) latent weights and their scaled
    binarization.

    \\[ \mathrm{QE} = \frac{1}{N} \sum_{i} \left(\hat{W}_i - \alpha_{c(i)} B_i\right)^2,
        \qquad \alpha_c = \frac{1}{|c|} \sum_{i \in c} |\hat{W}_i| \\]

    `latent` is `latent_standardized(layer)` (the values the sign sees), `binary` the +-1
    kernel, `c(i)` the output channel (last axis) of entry `i` and `N` the number of
    entries. `alpha` defaults to `optimal_alpha(latent)`; pass another (C_out,) or scalar
    scale to measure against it. With standardized weights QE is scale-free: it measures
    how far the distribution is from two spikes at +-alpha: 0 for a kernel of +-a, about
    `1 - 2/pi ~ 0.36` for Gaussian weights.
    """
    latent = np.asarray(latent, np.float64)
    binary = _check_binary(binary, "binary")
    if latent.shape != binary.shape:
        raise ValueError(
            f"`latent` {latent.shape} and `binary` {binary.shape} must have the same shape."
        )
    alpha = optimal_alpha(latent) if alpha is None else np.asarray(alpha, np.float64)
    return float(np.mean(np.square(latent - alpha * binary)))


def flip_ratio(previous_binary: np.ndarray, current_binary: np.ndarray) -> float:
    """Fraction of kernel entries whose sign changed: `mean(sign(prev) != sign(cur))`,
    with sign(0) = +1 (any arrays of the same shape, e.g. two +-1 kernels)."""
    previous = np.asarray(previous_binary)
    current = np.asarray(current_binary)
    if previous.shape != current.shape:
        raise ValueError(
            f"`previous_binary` {previous.shape} and `current_binary` {current.shape} "
            "must have the same shape."
        )
    if previous.size == 0:
        raise ValueError("`previous_binary` is empty.")
    return float(np.mean((previous >= 0) != (current >= 0)))


@contextlib.contextmanager
def state_restored(model: tf.Module) -> Iterator[None]:
    """Run the block, then put back every non-trainable variable of `model` (BatchNorm
    moving statistics, IEE `q`): a training-mode call measures without changing the model."""
    saved = [variable.numpy() for variable in model.non_trainable_variables]
    try:
        yield
    finally:
        for variable, value in zip(model.non_trainable_variables, saved, strict=True):
            variable.assign(value)


#: The parameter groups of `gradient_norms`.
GRADIENT_GROUPS = ("binary kernels", "thresholds", "lambdas", "alpha", "batch norm", "float")


def _gradient_groups(model: tf.keras.Model) -> dict:
    """`variable.ref() -> group` for every trainable variable of `model`."""
    groups = {}
    for layer in _walk(model):
        named = {}
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            named = {"batch norm": [layer.gamma, layer.beta]}
        elif layer in binary_kernel_layers([layer]):
            named = {
                "binary kernels": [layer.kernel],
                **{
                    name: [getattr(layer, name)]
                    for name in ("thresholds", "lambdas", "alpha")
                    if getattr(layer, name, None) is not None
                },
            }
        for group, variables in named.items():
            for variable in variables:
                if variable is not None:
                    groups[variable.ref()] = group
    return groups


def gradient_norms(
    model: tf.keras.Model,
    batches: Iterable,
    q_values: Iterable[float],
    loss: Callable | None = None,
) -> list[dict]:
    r"""The L2 norm of the training gradient at each IEE sharpness `q`, in total and per
    parameter group (`GRADIENT_GROUPS`), averaged over `batches` of `(x, y)`.

    For every `q`, every IEE quantizer of the model is set to `q` and the gradient of
    `loss(y, model(x, training=True))` (default: sparse cross-entropy on logits) is taken
    for each batch. The forward pass does not depend on `q`, only the surrogate gradient
    does, so this isolates what the schedule alone does to the step size. The model's
    non-trainable state (`q`, BatchNorm statistics) is restored afterwards.

    Returns `[{"q", "global", "global_max", "groups": {group: mean norm}}]`, where
    `global` is the mean over batches of \(\lVert g \rVert_2\) and `global_max` its maximum.

    ```python
    rows = stats.gradient_norms(model, dataset.take(4), [1.0, 3.0, 10.0])
    ```
    """
    loss = loss or tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    batches = list(batches)
    if not batches:
        raise ValueError("`batches` is empty: give at least one (x, y) batch.")
    quantizers_ = list(iee_quantizers(model))
    if not quantizers_:
        raise ValueError("the model has no IEE quantizer: q changes nothing.")
    groups = _gradient_groups(model)
    rows = []
    with state_restored(model):
        for q in q_values:
            for quantizer in quantizers_:
                quantizer.q.assign(q)
            totals, by_group = [], {}
            for x, y in batches:
                with tf.GradientTape() as tape:
                    value = loss(y, model(x, training=True))
                gradients = tape.gradient(value, model.trainable_variables)
                squares = {}
                for variable, gradient in zip(model.trainable_variables, gradients, strict=True):
                    if gradient is not None:
                        group = groups.get(variable.ref(), "float")
                        square = float(tf.reduce_sum(tf.square(gradient)))
                        squares[group] = squares.get(group, 0.0) + square
                totals.append(math.sqrt(sum(squares.values())))
                for group, square in squares.items():
                    by_group.setdefault(group, []).append(math.sqrt(square))
            rows.append(
                {
                    "q": float(q),
                    "global": float(np.mean(totals)),
                    "global_max": float(np.max(totals)),
                    "groups": {
                        group: float(np.mean(by_group[group]))
                        for group in GRADIENT_GROUPS
                        if group in by_group
                    },
                }
            )
    return rows


def _binary_convs(model: tf.keras.Model) -> list[tf.keras.layers.Layer]:
    """The binary conv layers among `model`'s own layers."""
    return [layer for layer in binary_kernel_layers(model.layers) if is_binary_conv(layer)]


def _layer_inputs(model: tf.keras.Model, layers, images, training: bool) -> list[np.ndarray]:
    """The inputs of `layers` (layers of the functional `model`) for `images`."""
    try:
        probe = tf.keras.Model(model.inputs, [layer.input for layer in layers])
    except (AttributeError, ValueError) as error:
        raise ValueError(
            "this inspection needs a functional model whose binary convs are called once on "
            f"its graph ({error})."
        ) from error
    outputs = probe(images, training=training)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return [np.asarray(output) for output in outputs]


def binarization_disagreement(model: tf.keras.Model, images) -> list[dict]:
    r"""Per binary conv layer (binary input and kernel, model order): the fraction of its
    binarized input values that differ between a training-mode forward pass (every
    BatchNorm normalizes with the statistics of `images`) and the inference-mode pass (the
    moving statistics) of the same `images`.

    A layer with thresholds \(\beta_k\) (IE-BC) binarizes \(x + \beta_k \ge 0\) for each
    of its K branches, any other binary layer \(x \ge 0\); the fraction is over all
    branches, positions and channels. A network whose disagreement grows with depth turns
    small differences in BatchNorm statistics into different binary codes: its inference
    accuracy hinges on how well the moving statistics were estimated. `model` must be a
    functional model whose binary convs are its own layers (not in nested models); its
    state (moving statistics) is left unchanged.

    Returns `[{"layer", "k", "disagreement"}]`.

    ```python
    rows = stats.binarization_disagreement(model, x_validation[:128])
    ```
    """
    convs = _binary_convs(model)
    if not convs:
        raise ValueError("the model has no binary conv layer among its own layers.")
    with state_restored(model):
        training = _layer_inputs(model, convs, images, training=True)
    inference = _layer_inputs(model, convs, images, training=False)
    rows = []
    for layer, a, b in zip(convs, training, inference, strict=True):
        thresholds = layer_thresholds(layer)  # (K, C_in), added before the sign
        bits_a = (a[..., None, :] + thresholds) >= 0
        bits_b = (b[..., None, :] + thresholds) >= 0
        rows.append(
            {
                "layer": layer.name,
                "k": layer_k(layer),
                "disagreement": float(np.mean(bits_a != bits_b)),
            }
        )
    return rows


def branched_convs(model: tf.keras.Model) -> list[tf.keras.layers.Layer]:
    """The IE-BC layers of `model` (its own layers) with K >= 2 branches."""
    return [
        layer
        for layer in _binary_convs(model)
        if layer_k(layer) >= 2 and getattr(layer, "lambdas", None) is not None
    ]


def branch_diversity(model: tf.keras.Model, images) -> list[dict]:
    r"""How different the K branches of each IE-BC layer (K >= 2) of `model` are, on the
    inputs those layers get from `images` in an inference-mode pass.

    IE-BC sums \(\lambda_k \odot \operatorname{BConv}(B_W, \operatorname{sign}(X +
    \beta_k))\) with \(\lambda_1 = 1\). The release starts every \(\beta_k\) at 0 and
    \(\lambda_k\) (k >= 2) at U[0, 0.001), so at initialisation the branches are one
    branch, and they only become K different binarizations as training moves them apart.
    For every branch k >= 2: `differ`, the fraction of the layer's binary input values
    (positions x channels) where \(\operatorname{sign}(x + \beta_k) \ne
    \operatorname{sign}(x + \beta_1)\) (0: the branch repeats branch 1); `threshold_gap`,
    the mean over input channels of \(|\beta_k - \beta_1|\); `lambda`, the mean
    \(|\lambda_k|\) (the branch's weight next to branch 1's 1). `model` must be
    functional with its IE-BC layers as its own layers; its state is not changed.

    Returns `[{"layer", "k", "branch", "differ", "threshold_gap", "lambda"}]` in model
    order (an empty list when no layer has two branches).

    ```python
    rows = stats.branch_diversity(model, x_validation[:256])
    ```
    """
    convs = branched_convs(model)
    if not convs:
        return []
    rows = []
    for layer, x in zip(convs, _layer_inputs(model, convs, images, training=False), strict=True):
        thresholds = layer_thresholds(layer)  # (K, C_in)
        lambdas = np.abs(np.asarray(layer.lambdas.numpy(), np.float64))  # (K - 1, C_out | 1)
        first = (x + thresholds[0]) >= 0
        for branch in range(1, thresholds.shape[0]):
            rows.append(
                {
                    "layer": layer.name,
                    "k": int(thresholds.shape[0]),
                    "branch": branch + 1,
                    "differ": float(np.mean(((x + thresholds[branch]) >= 0) != first)),
                    "threshold_gap": float(np.mean(np.abs(thresholds[branch] - thresholds[0]))),
                    "lambda": float(np.mean(lambdas[branch - 1])),
                }
            )
    return rows
