"""`qat_model`: a trained binary model -> its int8 quantization-aware counterpart.

The QAT model is an ordinary Keras functional model, rebuilt layer by layer from the
trained model's graph (same layer names, same weights), in which everything real-valued is
int8-ready for the LCE converter:

- a fake-quant (`ActFakeQuant`, named `<layer>_fq`) on the model input and on the output
  of every op whose output range is not its input's: real-valued convolutions and the
  classifier (after the BatchNorm and activation that fold into them), every `Add` /
  `Subtract` / `Multiply` (or the activation right after it, which TFLite fuses into it),
  every activation, global average pooling;
- binary convolutions (`IEBinaryConv2D`) become `Int8IEBinaryConv2D`: the BatchNorm right
  after one is folded into its scales and bias, the threshold shifts `x + beta_k` and the
  branches are fake-quantized inside it and the K branches are summed by a chain of adds;
- every BatchNorm is folded: into the convolution or dense layer before it
  (`Int8Conv2D` / `Int8DepthwiseConv2D` / `Int8Dense`, whose weights are rounded to int8 in
  the forward pass), into the classifier after it (the GAP -> BN -> Dense head), or, where
  it stands alone on a feature map (after Elastic-Link's add, after a max-pool), turned
  into a 1x1 depthwise convolution (its per-channel affine, exact in int8);
- Elastic-Link becomes `Int8ElasticLink`;
- pooling, padding, reshapes, slices and concatenations pass their input's int8 scale on.

The BatchNorms are folded with their moving statistics: the fine-tune trains the folded
weights (BN "frozen"), which is what the converted model computes. A layer with no int8
rule (a custom layer, an activation TFLite has no int8 kernel for) is an `ExportError`
naming it.

```python
from ienet_tf import int8

qat = int8.qat_model(trained)  # + int8.calibrate(qat, train_images)
qat.compile(...)
qat.fit(train_data, epochs=2)  # the QAT fine-tune
export.to_tflite(qat, "model_int8.tflite", test_images, int8=True)
```
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from ienet_tf import errors
from ienet_tf.elastic_link import ElasticLink
from ienet_tf.int8.fake_quant import (
    DEFAULT_EMA_DECAY,
    HARD_TANH_RANGE,
    ActFakeQuant,
    calibrate,
    fake_quant_owners,
)
from ienet_tf.int8.layers import (
    Int8Conv2D,
    Int8Dense,
    Int8DepthwiseConv2D,
    Int8ElasticLink,
    Int8IEBinaryConv2D,
)
from ienet_tf.ir2net import inference_model
from ienet_tf.layers import IEBinaryConv2D
from ienet_tf.models.blocks import PadChannels, SliceChannels, SpatialPad, hard_tanh

__all__ = ["PASS_THROUGH", "is_qat_model", "qat_model"]

L = tf.keras.layers

#: Layers that pass their input's int8 scale on (no fake-quant after them).
PASS_THROUGH = (
    L.AveragePooling2D,
    L.MaxPooling2D,
    L.ZeroPadding2D,
    L.Flatten,
    L.Reshape,
    L.Concatenate,
    L.Dropout,
    PadChannels,
    SliceChannels,
    SpatialPad,
)
_MERGES = (L.Add, L.Subtract, L.Multiply)
# Activations with an int8 TFLite kernel that the converter fuses into the op before them.
_FUSABLE = {"hard_tanh", "relu", "relu6", "linear"}
_EXACT_FLOAT = (L.Conv2D, L.DepthwiseConv2D, L.Dense)


def _activation_name(layer) -> str | None:
    """The name of an `Activation` layer's function (or `relu` for a plain `ReLU` layer)."""
    if isinstance(layer, L.ReLU):
        config = layer.get_config()
        plain = not config.get("negative_slope") and not config.get("threshold")
        if plain and config.get("max_value") in (None, 6.0):
            return "relu" if config.get("max_value") is None else "relu6"
        return None
    if type(layer) is L.Activation:
        function = layer.activation
        if function is hard_tanh:
            return "hard_tanh"
        return getattr(function, "__name__", None)
    return None


def _is_float_weighted(layer) -> bool:
    """A Keras `Conv2D` / `DepthwiseConv2D` / `Dense` (not a larq layer, not a subclass)."""
    return type(layer) in _EXACT_FLOAT


def is_qat_model(model: tf.keras.Model) -> bool:
    """Whether `model` holds fake-quant ranges (an int8 QAT model)."""
    return bool(fake_quant_owners(inference_model(model)))


@dataclasses.dataclass
class _Graph:
    """The trained model's graph, read from its functional config (Keras' public
    serialization of it): every layer's inputs (producer names, in call order), who
    consumes whose output, the model's inputs and outputs."""

    model: tf.keras.Model
    order: list[str] = dataclasses.field(default_factory=list)  # layer names, topological
    inputs: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    consumers: dict[str, list] = dataclasses.field(default_factory=dict)
    input_names: list[str] = dataclasses.field(default_factory=list)
    outputs: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def of(cls, model: tf.keras.Model) -> _Graph:
        try:
            config = model.get_config()
        except NotImplementedError:
            config = {}
        if not isinstance(config, dict) or "input_layers" not in config or "layers" not in config:
            raise errors.UsageError(
                f"qat_model needs a functional Keras model (as `ienet_tf.models.build` makes); "
                f"{model.name} ({type(model).__name__}) has no functional graph."
            )
        graph = cls(model)
        for entry in config["layers"]:
            name = entry["name"]
            graph.order.append(name)
            graph.consumers.setdefault(name, [])
            nodes = entry.get("inbound_nodes") or []
            layer = model.get_layer(name)
            if isinstance(layer, tf.keras.Model):
                raise errors.ExportError(
                    f"int8: layer {name!r} is a nested model; build the model flat (one "
                    "functional graph) for its int8 QAT counterpart."
                )
            if isinstance(layer, L.InputLayer):
                continue
            if len(nodes) != 1:
                raise errors.ExportError(
                    f"int8: layer {name!r} is called {len(nodes)} times in {model.name}; an "
                    "int8 QAT model is rebuilt from a graph whose layers are used once."
                )
            producers = []
            for producer, _, tensor, kwargs in nodes[0]:
                if tensor != 0 or set(kwargs or {}) - {"training", "mask"}:
                    raise errors.ExportError(
                        f"int8: layer {name!r} is called with a layer's second output or "
                        f"with keyword arguments {sorted(kwargs or {})}; the int8 rebuild "
                        "carries neither over."
                    )
                producers.append(producer)
                graph.consumers.setdefault(producer, []).append(layer)
            graph.inputs[name] = producers
        graph.input_names = [entry[0] for entry in config["input_layers"]]
        graph.outputs = [entry[0] for entry in config["output_layers"]]
        graph.order = graph._topological(graph.order)
        return graph

    def _topological(self, names: list[str]) -> list[str]:
        """`names` reordered so that every layer comes after its producers."""
        done: set[str] = set()
        order: list[str] = []
        pending = list(names)
        while pending:
            ready = [n for n in pending if all(p in done for p in self.inputs.get(n, []))]
            if not ready:
                raise errors.ExportError(f"int8: the graph of {self.model.name} has a cycle.")
            for name in ready:
                done.add(name)
                order.append(name)
            pending = [n for n in pending if n not in done]
        return order

    def input_layers(self, layer) -> list:
        return [self.model.get_layer(name) for name in self.inputs[layer.name]]

    def sole_consumer(self, layer):
        """The one layer that consumes `layer`'s output, None if it has several, none, or
        the output is also a model output."""
        found = self.consumers.get(layer.name, [])
        if len(found) != 1 or layer.name in self.outputs:
            return None
        return found[0]


def _bn_affine(bn: L.BatchNormalization) -> tuple[np.ndarray, np.ndarray]:
    """`(a, c)` with `BN(x) = a * x + c` in inference (moving statistics)."""
    variance = bn.moving_variance.numpy().astype(np.float64)
    mean = bn.moving_mean.numpy().astype(np.float64)
    gamma = bn.gamma.numpy().astype(np.float64) if bn.scale else np.ones_like(mean)
    beta = bn.beta.numpy().astype(np.float64) if bn.center else np.zeros_like(mean)
    a = gamma / np.sqrt(variance + bn.epsilon)
    return a, beta - a * mean


def _check_bn(bn) -> None:
    axis = bn.axis if isinstance(bn.axis, (list, tuple)) else [bn.axis]
    rank = len(bn.input_shape)
    if [a % rank for a in axis] != [rank - 1]:
        raise errors.ExportError(
            f"int8: BatchNormalization {bn.name!r} normalizes axis {bn.axis}; only the "
            "channel (last) axis folds into int8 layers."
        )


class _Rebuild:
    def __init__(self, model: tf.keras.Model, ema_decay: float):
        self.graph = _Graph.of(model)
        self.ema_decay = ema_decay
        self.tensors: dict[str, object] = {}  # old layer name -> its new output tensor
        self.inputs: dict[str, object] = {}  # input layer name -> the new Input
        self.folded_into: dict[str, L.Layer] = {}  # BN name -> the layer that absorbs it
        self.folded_from: dict[str, L.BatchNormalization] = {}  # layer name -> its BN
        self.head_bn: dict[str, L.BatchNormalization] = {}  # Dense name -> BN before it
        self._plan()

    # --- what folds into what -------------------------------------------------------

    def _plan(self) -> None:
        graph = self.graph
        for layer in graph.model.layers:
            if not isinstance(layer, L.BatchNormalization):
                continue
            _check_bn(layer)
            (source,) = graph.input_layers(layer)
            foldable = _is_float_weighted(source) or isinstance(source, IEBinaryConv2D)
            if foldable and graph.sole_consumer(source) is layer:
                self.folded_into[layer.name] = source
                self.folded_from[source.name] = layer
                continue
            consumer = graph.sole_consumer(layer)
            if len(layer.input_shape) == 2:
                if consumer is None or type(consumer) is not L.Dense:
                    raise errors.ExportError(
                        f"int8: BatchNormalization {layer.name!r} on a vector is not followed "
                        "by a dense layer it could fold into; it would stay a float MUL+ADD."
                    )
                self.folded_into[layer.name] = consumer
                self.head_bn[consumer.name] = layer

    def _after(self, layer):
        """The layer whose output stands for `layer`'s (its BN when the BN folds into it)."""
        bn = self.folded_from.get(layer.name)
        return layer if bn is None else bn

    def _fuses_activation(self, layer) -> bool:
        """Whether the (possibly BN-folded) output of `layer` feeds only an activation that
        TFLite fuses into the op: then the fake-quant goes after that activation."""
        consumer = self.graph.sole_consumer(self._after(layer))
        return consumer is not None and _activation_name(consumer) in _FUSABLE

    def _fq(self, tensor, layer_name: str, fixed_range=None):
        return ActFakeQuant(self.ema_decay, fixed_range, name=f"{layer_name}_fq")(tensor)

    # --- the rebuild ----------------------------------------------------------------

    def run(self, name: str) -> tf.keras.Model:
        graph = self.graph
        for layer_name in graph.order:
            layer = graph.model.get_layer(layer_name)
            if isinstance(layer, L.InputLayer):
                shape = layer.get_config()["batch_input_shape"][1:]
                new = tf.keras.Input(shape=shape, dtype=layer.dtype, name=layer_name)
                self.inputs[layer_name] = new
                self.tensors[layer_name] = self._fq(new, layer_name)
                continue
            args = [self.tensors[producer] for producer in graph.inputs[layer_name]]
            self.tensors[layer_name] = self._layer(layer, args[0] if len(args) == 1 else args)
        inputs = [self.inputs[n] for n in graph.input_names]
        outputs = [self.tensors[n] for n in graph.outputs]
        return tf.keras.Model(
            inputs[0] if len(inputs) == 1 else inputs,
            outputs[0] if len(outputs) == 1 else outputs,
            name=name,
        )

    def _layer(self, layer, x):
        if isinstance(layer, L.BatchNormalization):
            if layer.name in self.folded_into:
                return x  # computed by the layer it folds into
            return self._standalone_bn(layer, x)
        if _is_float_weighted(layer):
            return self._float_weighted(layer, x)
        if isinstance(layer, IEBinaryConv2D):
            return self._binary_conv(layer, x)
        if isinstance(layer, ElasticLink):
            return self._elastic_link(layer, x)
        if isinstance(layer, _MERGES):
            y = _clone(layer, x)
            return y if self._fuses_activation(layer) else self._fq(y, layer.name)
        if isinstance(layer, L.GlobalAveragePooling2D):
            return self._fq(_clone(layer, x), layer.name)
        if isinstance(layer, L.PReLU) or _activation_name(layer) in _FUSABLE:
            fixed = HARD_TANH_RANGE if _activation_name(layer) == "hard_tanh" else None
            return self._fq(_clone(layer, x), layer.name, fixed)
        if isinstance(layer, PASS_THROUGH):
            return _clone(layer, x)
        detail = ""
        if isinstance(layer, L.Activation):
            detail = f" (activation {_activation_name(layer)!r})"
        raise errors.ExportError(
            f"int8: no int8 rule for layer {layer.name!r} of type {type(layer).__name__}"
            f"{detail}; it would stay a float op. Supported: convolutions, dense, "
            "IEBinaryConv2D, ElasticLink, BatchNormalization, Add/Subtract/Multiply, "
            "hard_tanh/ReLU/ReLU6/PReLU, pooling, padding, reshapes and concatenation."
        )

    def _float_weighted(self, layer, x):
        config = layer.get_config()
        kernel, *rest = layer.get_weights()
        bias = rest[0] if layer.use_bias else None
        depthwise = type(layer) is L.DepthwiseConv2D
        channels = kernel.shape[-2] * kernel.shape[-1] if depthwise else kernel.shape[-1]
        scale = np.ones(channels)
        shift = np.zeros(channels) if bias is None else bias.astype(np.float64)
        bn = self.folded_from.get(layer.name)
        if bn is not None:
            a, c = _bn_affine(bn)
            scale, shift = a, a * shift + c
        head = self.head_bn.get(layer.name)
        if head is not None:  # Dense(BN(x)) = x (diag(a) W) + (c W + b)
            a, c = _bn_affine(head)
            shift = shift + c @ kernel.astype(np.float64)
            kernel = kernel * a[:, None]
        if type(layer) is L.DepthwiseConv2D:
            kernel = kernel * scale.reshape(kernel.shape[-2:])
            cls = Int8DepthwiseConv2D
        else:
            kernel = kernel * scale
            cls = Int8Conv2D if type(layer) is L.Conv2D else Int8Dense
        use_bias = bias is not None or bn is not None or head is not None
        new = cls.from_config({**config, "use_bias": use_bias})
        y = new(x)
        new.set_weights([kernel.astype(np.float32), *([shift.astype(np.float32)] * use_bias)])
        return y if self._fuses_activation(layer) else self._fq(y, self._after(layer).name)

    def _binary_conv(self, layer: IEBinaryConv2D, x):
        if float(layer.pad_values) != 1.0 or layer.symmetric_padding:
            raise errors.ExportError(
                f"int8: binary convolution {layer.name!r} pads its binarized input with "
                f"{layer.pad_values:g}{' symmetrically' if layer.symmetric_padding else ''} "
                "(a compat='release' model); LceBconv2d has an int8 output only with +1 "
                "padding: train the compat='lce' model for int8 deployment."
            )
        config = layer.get_config()
        a, c = np.ones(layer.filters), np.zeros(layer.filters)
        bn = self.folded_from.get(layer.name)
        if bn is not None:
            a, c = _bn_affine(bn)
        alpha = layer.alpha.numpy().astype(np.float64)
        bias = c.copy()
        if layer.use_bias:
            old_bias = layer.bias.numpy().astype(np.float64)
            if layer.bias_in_branches:  # sum_k s_k (conv_k + b) = sum_k s_k conv_k + b sum_k s_k
                total = sum(s.numpy().astype(np.float64) for s in layer.branch_scales())
                old_bias = old_bias * total
            bias = bias + a * old_bias
        new = Int8IEBinaryConv2D.from_config(
            {**config, "use_bias": True, "ema_decay": self.ema_decay, "name": layer.name}
        )
        y = new(x)
        new.kernel.latent_variable.assign(layer.kernel.latent_variable)
        new.alpha.assign((alpha * a).astype(np.float32))
        new.bias.assign(bias.astype(np.float32))
        if layer.thresholds is not None:
            new.thresholds.assign(layer.thresholds)
        if layer.lambdas is not None:
            new.lambdas.assign(layer.lambdas)
        for quantizer in ("kernel_quantizer", "input_quantizer"):
            old_q = getattr(getattr(layer, quantizer), "q", None)
            if old_q is not None:
                getattr(new, quantizer).q.assign(old_q)
        return y

    def _elastic_link(self, layer: ElasticLink, x):
        new = Int8ElasticLink.from_config({**layer.get_config(), "ema_decay": self.ema_decay})
        y = new(x)
        new.gamma.assign(layer.gamma)
        return y

    def _standalone_bn(self, bn, x):
        """A BatchNorm on a feature map with nothing to fold into: its per-channel affine
        as a 1x1 depthwise convolution (per-channel int8 weights: exact)."""
        if len(bn.input_shape) != 4:
            raise errors.ExportError(
                f"int8: BatchNormalization {bn.name!r} on a rank-{len(bn.input_shape)} "
                "tensor has nothing to fold into; it would stay a float MUL+ADD."
            )
        a, c = _bn_affine(bn)
        new = Int8DepthwiseConv2D(1, use_bias=True, name=bn.name)
        y = new(x)
        new.set_weights([a.reshape(1, 1, -1, 1).astype(np.float32), c.astype(np.float32)])
        return y if self._fuses_activation(bn) else self._fq(y, bn.name)


def _clone(layer, x):
    """`layer`'s copy (config and weights) applied to `x`."""
    new = type(layer).from_config(layer.get_config())
    y = new(x)
    if layer.weights:
        new.set_weights(layer.get_weights())
    return y


def qat_model(
    model: tf.keras.Model,
    calibration_data=None,
    *,
    ema_decay: float = DEFAULT_EMA_DECAY,
    calibration_batches: int | None = 8,
) -> tf.keras.Model:
    """The int8 quantization-aware counterpart of a trained binary (or float) `model`.

    A new functional Keras model (named `<model>_int8`, same layer names, weights copied,
    BatchNorms folded: see the module doc) that computes what the binary + int8 `.tflite`
    computes. A training wrapper (IR²Net's `InformationRestriction`) gives the QAT model
    of its classifier. With `calibration_data` (see `calibrate`) the fake-quant ranges are
    calibrated on it; otherwise call `calibrate` before fine-tuning or exporting.
    Fine-tune it with `model.fit` (a few epochs at a small learning rate), then export with
    `export.to_tflite(qat, path, inputs, int8=True)`.

    Raises `ExportError` naming a layer that has no int8 form (see the module doc), and
    `UsageError` for a model that is not a functional Keras model or is already a QAT
    model.
    """
    model = inference_model(model)
    if not isinstance(model, tf.keras.Model):
        raise errors.UsageError(
            f"qat_model needs a functional Keras model (as `ienet_tf.models.build` makes), "
            f"got {type(model).__name__}."
        )
    if fake_quant_owners(model):
        raise errors.UsageError(
            f"{model.name} is already an int8 QAT model (it has fake-quant layers); "
            "fine-tune or export it as it is."
        )
    ema_decay = float(ema_decay)
    if not 0.0 <= ema_decay < 1.0:
        raise errors.UsageError(f"ema_decay must be in [0, 1), got {ema_decay!r}.")
    qat = _Rebuild(model, ema_decay).run(f"{model.name}_int8")
    if calibration_data is not None:
        calibrate(qat, calibration_data, calibration_batches)
    return qat
