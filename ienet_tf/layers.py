r"""IE-Net layers.

`IEBinaryConv2D` is the information-enhanced binary convolution (IE-BC): ONE shared
binary kernel applied to K copies of the input, each binarized with its own learnable
threshold, the K results summed with per-channel compensation factors:

\\[
Y = \sum_{k=1}^{K} \lambda_k \odot \operatorname{BConv}\left(B_W,
    \operatorname{sign}(X + \beta_k)\right) \odot \alpha, \qquad \lambda_1 = 1
\\]

```python
from ienet_tf import layers

y = layers.IEBinaryConv2D(64, 3, k=2)(x)  # IE-BC with IEE weights, same-one padding
```

With `k=1, learnable_thresholds=False, kernel_quantizer="ste_sign",
input_quantizer="approx_sign"` it is the Bi-Real baseline convolution.
"""

from __future__ import annotations

from collections.abc import Callable

import larq as lq
import tensorflow as tf

from ienet_tf import compat, quantizers
from ienet_tf.checks import is_positive_int
from ienet_tf.elastic_link import ElasticLink
from ienet_tf.registration import register

__all__ = ["LAMBDA_MODES", "ElasticLink", "IEBinaryConv2D"]

#: `"channel"`: one lambda per output channel and branch (the ImageNet release);
#: `"scalar"`: one lambda per branch (the release's CIFAR ResNet-18 and VGG-Small).
LAMBDA_MODES = ("channel", "scalar")


def _check_k(k) -> int:
    if not is_positive_int(k):
        raise ValueError(f"`k` (the number of IE-BC branches) must be an integer >= 1, got {k!r}.")
    return int(k)


@register
class IEBinaryConv2D(lq.layers.QuantConv2D):
    r"""Information-enhanced binary 2D convolution (IE-BC), a larq `QuantConv2D`.

    \\[
    Y = \sum_{k=1}^{K} \lambda_k \odot \operatorname{BConv}\left(B_W,
        \operatorname{sign}(X + \beta_k)\right) \odot \alpha + b
    \\]

    The kernel is binarized ONCE per call (`kernel_quantizer`, IEE by default) and shared
    by all K branches. Each branch adds its threshold `beta_k` (one per input channel) to
    the input, binarizes it with `input_quantizer`, pads with `pad_values` and
    convolves. The per-channel factors `lambda_k * alpha` multiply each branch's output
    after its convolution, where the LCE converter fuses them into `LceBconv2d`; a model
    with IE-BC layers converts into K `LceBconv2d` per layer sharing one bitpacked kernel.

    Weights: `kernel` (kh, kw, C_in, C_out); `alpha` (C_out,), initialised once to the
    mean |W| per output channel of the initial kernel; `thresholds` (K, C_in), zeros by
    default (the release); `lambdas` (K-1, C_out) or (K-1, 1) with `lambda_mode="scalar"`,
    initialised U[0, 0.001). lambda_1 = 1 is not a weight.

    # Arguments
        filters: number of output channels.
        kernel_size: an integer or a tuple of 2 integers.
        k: number of branches (thresholds) sharing the kernel; K = 1 is Bi-Real + RSign.
        strides, dilation_rate: as for `tf.keras.layers.Conv2D`.
        padding: `"same"` or `"valid"`.
        pad_values: value of the padded binary input under `"same"`. `1.0` (default) is
            LCE's fast "same-one" path; `0.0` reproduces the release exactly (a third
            value, which LCE corrects at a cost).
        symmetric_padding: under `"same"`, pad `(k_eff - 1) // 2` on every side (PyTorch's
            `padding=k // 2`) instead of TensorFlow's split, which at stride 2 puts the
            extra row and column at the end (`(0, 1)`) where PyTorch reads a padded row
            and column at the start. Identical at stride 1; at stride 2 every output sits
            on a grid shifted by one pixel. The release's convolution is
            `symmetric_padding=True, pad_values=0.0`.
        kernel_quantizer: a binary larq quantizer or the name larq registers it under:
            `"iee_sign"` (default, `IEESign`), `"ste_sign"`, `"magnitude_aware_sign"`, ...
        input_quantizer: the same for the inputs (larq's argument; the activations'
            estimator): `"iee_act_sign"` (default, `IEEActivationSign`), `"approx_sign"`,
            `"ste_sign"`, ... Unlike `QuantConv2D` (default None) it must be binary: the
            branches' thresholds are defined on binarized inputs.
        learnable_thresholds: learn the K thresholds (RSign). `False` requires `k=1` and
            gives the Bi-Real baseline (plain sign of the input).
        thresholds_initializer: initializer of `thresholds`.
        lambda_mode: `"channel"` (default) or `"scalar"`, see `LAMBDA_MODES`.
        lambdas_initializer: initializer of `lambdas`.
        thresholds_constraint: constraint of `thresholds`, applied after every optimizer
            step (e.g. `"weight_clip"`, larq's clip to [-1, 1], where the hardtanh inputs of
            the papers' networks lie; a threshold beyond them gives constant codes).
        alpha_regularizer, thresholds_regularizer, lambdas_regularizer: regularizers of the
            extra weights (the kernel's is `kernel_regularizer`).
        use_bias: add a bias after the sum (off by default: BatchNorm follows).
        bias_in_branches: with `use_bias`, add the bias to every branch's convolution
            before its scale, `sum_k lambda_k alpha (BConv_k + b)`, as the release's CIFAR
            ResNet-18 and VGG-Small do (a conv bias, then alpha).
        alpha_initializer: initializer of `alpha`; `None` (default) is the mean |W| per
            output channel of the initial kernel.

    Other arguments are those of `lq.layers.QuantConv2D`.
    """

    #: Arguments that set up the learnable thresholds (nothing to set up without them) and
    #: lambda_2..lambda_K (nothing with one branch); `BRANCH_OPTIONS`, all that a K = 1
    #: layer without thresholds (the release's shortcut convolutions) has no use for.
    THRESHOLD_OPTIONS = (
        "thresholds_initializer",
        "thresholds_regularizer",
        "thresholds_constraint",
    )
    LAMBDA_OPTIONS = ("lambda_mode", "lambdas_initializer", "lambdas_regularizer")
    BRANCH_OPTIONS = ("learnable_thresholds", *THRESHOLD_OPTIONS, *LAMBDA_OPTIONS)

    def __init__(
        self,
        filters: int,
        kernel_size,
        k: int = 2,
        strides=(1, 1),
        padding: str = "same",
        pad_values: float = 1.0,
        symmetric_padding: bool = False,
        data_format: str | None = None,
        dilation_rate=(1, 1),
        activation=None,
        use_bias: bool = False,
        bias_in_branches: bool = False,
        kernel_quantizer="iee_sign",
        input_quantizer="iee_act_sign",
        learnable_thresholds: bool = True,
        thresholds_initializer="zeros",
        lambda_mode: str = "channel",
        lambdas_initializer=None,
        alpha_initializer=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        alpha_regularizer=None,
        thresholds_regularizer=None,
        thresholds_constraint=None,
        lambdas_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        self.k = _check_k(k)
        if kwargs.get("groups", 1) != 1:
            raise ValueError(
                f"`groups`={kwargs['groups']!r}: IEBinaryConv2D has no grouped form (its "
                "branches share one dense kernel); use groups=1."
            )
        self.learnable_thresholds = bool(learnable_thresholds)
        if self.k > 1 and not self.learnable_thresholds:
            raise ValueError(
                f"`learnable_thresholds=False` requires `k=1` (got k={k}): without "
                "thresholds all branches binarize the input identically."
            )
        if lambda_mode not in LAMBDA_MODES:
            raise ValueError(
                f"Unknown `lambda_mode` {lambda_mode!r}; allowed: {list(LAMBDA_MODES)}."
            )
        if data_format not in (None, "channels_last"):
            raise ValueError(
                f"`data_format` must be 'channels_last' (NHWC, what LCE converts), "
                f"got {data_format!r}."
            )
        if not isinstance(padding, str) or padding.lower() not in ("same", "valid"):
            raise ValueError(f"`padding` must be 'same' or 'valid', got {padding!r}.")
        self.lambda_mode = lambda_mode
        self.symmetric_padding = bool(symmetric_padding)
        self.bias_in_branches = bool(bias_in_branches)
        self.alpha_initializer = (
            None if alpha_initializer is None else tf.keras.initializers.get(alpha_initializer)
        )
        self.thresholds_initializer = tf.keras.initializers.get(thresholds_initializer)
        self.lambdas_initializer = tf.keras.initializers.get(
            lambdas_initializer or tf.keras.initializers.RandomUniform(0.0, 1e-3)
        )
        self.alpha_regularizer = tf.keras.regularizers.get(alpha_regularizer)
        self.thresholds_regularizer = tf.keras.regularizers.get(thresholds_regularizer)
        self.thresholds_constraint = tf.keras.constraints.get(thresholds_constraint)
        self.lambdas_regularizer = tf.keras.regularizers.get(lambdas_regularizer)
        super().__init__(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            pad_values=pad_values,
            data_format="channels_last",
            dilation_rate=dilation_rate,
            activation=activation,
            use_bias=use_bias,
            input_quantizer=quantizers.get_input_quantizer(input_quantizer),
            kernel_quantizer=quantizers.get_kernel_quantizer(kernel_quantizer),
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
            **kwargs,
        )

    def build(self, input_shape):
        super().build(input_shape)
        input_channels = int(tf.TensorShape(input_shape)[-1])
        # By default alpha starts at mean|W| per output channel of the initial kernel (its
        # float32 value: under a mixed policy Keras would hand the initializer float16).
        initial_kernel = compat.full_precision_value(self.kernel.latent_variable)
        self.alpha = self.add_weight(
            name="alpha",
            shape=(self.filters,),
            initializer=self.alpha_initializer
            or (lambda shape, dtype=None: tf.reduce_mean(tf.abs(initial_kernel), axis=[0, 1, 2])),
            regularizer=self.alpha_regularizer,
            trainable=True,
        )
        self.thresholds = None
        if self.learnable_thresholds:
            self.thresholds = self.add_weight(
                name="thresholds",
                shape=(self.k, input_channels),
                initializer=self.thresholds_initializer,
                regularizer=self.thresholds_regularizer,
                constraint=self.thresholds_constraint,
                trainable=True,
            )
        self.lambdas = None
        if self.k > 1:
            self.lambdas = self.add_weight(
                name="lambdas",
                shape=(self.k - 1, self.filters if self.lambda_mode == "channel" else 1),
                initializer=self.lambdas_initializer,
                regularizer=self.lambdas_regularizer,
                trainable=True,
            )

    def branch_scales(self) -> list[tf.Tensor]:
        """The per-output-channel multiplier of each branch: alpha, lambda_k * alpha."""
        alpha = tf.convert_to_tensor(self.alpha)
        return [alpha] + [alpha * self.lambdas[i] for i in range(self.k - 1)]

    def _symmetric_padding(self) -> list[list[int]]:
        pads = [
            ((size - 1) * rate) // 2
            for size, rate in zip(self.kernel_size, self.dilation_rate, strict=True)
        ]
        return [[0, 0], *([pad, pad] for pad in pads), [0, 0]]

    def _binary_conv(self, binary_inputs: tf.Tensor, binary_kernel: tf.Tensor):
        symmetric = self.symmetric_padding and self.padding == "same"
        if compat.larq_pads_natively(self) and not symmetric:
            return self.convolution_op(binary_inputs, binary_kernel)
        # Same as larq's QuantConv2D: pad the binarized input with `pad_values`, then a
        # "valid" convolution (LCE fuses this into its same-one padding).
        if symmetric:
            padding = self._symmetric_padding()
        else:
            padding = compat.larq_same_padding(self, binary_inputs)
        padded = tf.pad(binary_inputs, padding, constant_values=self.pad_values)
        with compat.valid_padding(self):
            return self.convolution_op(padded, binary_kernel)

    def branch_outputs(
        self,
        inputs: tf.Tensor,
        shift: Callable[[tf.Tensor, tf.Tensor, int], tf.Tensor] | None = None,
        branch: Callable[[tf.Tensor, int], tf.Tensor] | None = None,
    ) -> list[tf.Tensor]:
        """`lambda_k * alpha * BConv(B_W, sign(x + beta_k))` for every branch k, the kernel
        binarized once for all. The hooks are where the int8 twin fake-quantizes:
        `shift(x, beta_k, k)` computes the shifted input (default `x + beta_k`), `branch(y,
        k)` finishes a branch's output (default: as it is)."""
        with lq.context.quantized_scope(True):
            binary_kernel = tf.convert_to_tensor(self.kernel)
        outputs = []
        for k, scale in enumerate(self.branch_scales()):
            x = inputs
            if self.thresholds is not None:
                threshold = self.thresholds[k]
                x = x + threshold if shift is None else shift(x, threshold, k)
            y = self._binary_conv(self.input_quantizer(x), binary_kernel) * scale
            outputs.append(y if branch is None else branch(y, k))
        return outputs

    def call(self, inputs, training=None):
        in_branches = self.use_bias and self.bias_in_branches
        scales = self.branch_scales() if in_branches else None

        def with_bias(y, k):
            # (conv + b) * s written as conv * s + b * s: the form LCE fuses into LceBconv2d
            return y + self.bias * scales[k]

        branches = self.branch_outputs(inputs, branch=with_bias if in_branches else None)
        outputs = branches[0] if len(branches) == 1 else tf.add_n(branches)
        if self.use_bias and not in_branches:
            outputs = tf.nn.bias_add(outputs, self.bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def get_config(self):
        config = super().get_config()
        config.pop("groups", None)  # QuantConv2D's `groups` is not supported (always 1)
        return {
            **config,
            "k": self.k,
            "symmetric_padding": self.symmetric_padding,
            "bias_in_branches": self.bias_in_branches,
            "alpha_initializer": None
            if self.alpha_initializer is None
            else tf.keras.initializers.serialize(self.alpha_initializer),
            "learnable_thresholds": self.learnable_thresholds,
            "thresholds_initializer": tf.keras.initializers.serialize(self.thresholds_initializer),
            "lambda_mode": self.lambda_mode,
            "lambdas_initializer": tf.keras.initializers.serialize(self.lambdas_initializer),
            "alpha_regularizer": tf.keras.regularizers.serialize(self.alpha_regularizer),
            "thresholds_regularizer": tf.keras.regularizers.serialize(self.thresholds_regularizer),
            "thresholds_constraint": tf.keras.constraints.serialize(self.thresholds_constraint),
            "lambdas_regularizer": tf.keras.regularizers.serialize(self.lambdas_regularizer),
        }
