"""Model cost: parameters by bit width, memory, FP MACs, binary ops and FLOPs (Table 6).

Wraps larq's per-layer profiles (`larq.models.LayerProfile`, what `lq.models.summary`
prints) and corrects them where larq does not know IE-BC:

- an `IEBinaryConv2D` runs its shared binary kernel K times: K x (kernel MACs) binary ops,
  and its `alpha`/`thresholds`/`lambdas` are 32-bit parameters, not MACs;
- the IEE schedule value `q` is training state, not a parameter;
- an `ElasticLink` costs one float multiply per output value (gamma), which larq does not
  count; IR²Net's recovery head is ordinary Keras layers that larq counts (its 1x1 and
  depthwise convs are FP MACs), and a training wrapper is costed as its classifier.

Conventions (the IE-Net paper's Table 6):
- memory counts trainable parameters plus BatchNorm's two fused statistics (as larq does:
  the same count as gamma and beta), binary weights at 1 bit, the rest at 32 bits;
  1 Mbit = 10^6 bits;
- FLOPs = FP MACs + binary ops / 64; `flops_paper` counts the binary ops of ONE branch
  of each IE-BC layer, as the paper's table does (IE-Net and Bi-Real both 1.63e8).
- `int8_bytes`: the parameter bytes of the binary + int8 export (`ienet export --int8`)
  that are int8: every real-valued kernel at 1 byte per weight plus an int32 bias per
  output channel (BatchNorm folds into it), IE-BC thresholds at 1 byte each (the constants
  of the int8 threshold adds), PReLU slopes at 1 byte, and Elastic-Link's gamma and a
  BatchNorm with no convolution or dense layer to fold into as 1x1 depthwise convolutions
  (1 + 4 bytes per channel; the converter stores identical all-zero biases once, so the
  file can hold a little less). The binary kernels (1 bit) and LceBconv2d's float
  per-channel output transform are not int8.
"""

from __future__ import annotations

import dataclasses

import larq as lq
import tensorflow as tf
from larq.models import LayerProfile, OperationProfile

from ienet_tf.callbacks import iee_quantizers
from ienet_tf.compat import inbound_layers
from ienet_tf.ir2net import inference_model
from ienet_tf.layers import ElasticLink, IEBinaryConv2D

__all__ = ["LayerCost", "ModelCost", "model_cost"]

BINARY_OPS_PER_FLOP = 64


@dataclasses.dataclass(frozen=True)
class LayerCost:
    name: str
    type: str
    params_by_bits: dict[int, int]
    memory_bits: int
    fp_macs: int
    binary_ops: int
    binary_ops_one_branch: int
    int8_bytes: int = 0

    @property
    def params(self) -> int:
        return sum(self.params_by_bits.values())


@dataclasses.dataclass(frozen=True)
class ModelCost:
    name: str
    layers: tuple[LayerCost, ...]

    def _sum(self, field: str) -> int:
        return sum(getattr(layer, field) for layer in self.layers)

    @property
    def params_by_bits(self) -> dict[int, int]:
        totals: dict[int, int] = {}
        for layer in self.layers:
            for bits, count in layer.params_by_bits.items():
                totals[bits] = totals.get(bits, 0) + count
        return dict(sorted(totals.items()))

    @property
    def memory_mbit(self) -> float:
        return self._sum("memory_bits") / 1e6

    @property
    def memory_kib(self) -> float:
        """The memory in larq's unit (`lq.models.summary`'s "Memory", KiB = 8192 bits)."""
        return self._sum("memory_bits") / 8 / 1024

    @property
    def fp_macs(self) -> int:
        return self._sum("fp_macs")

    @property
    def binary_ops(self) -> int:
        return self._sum("binary_ops")

    @property
    def flops(self) -> float:
        return self.fp_macs + self.binary_ops / BINARY_OPS_PER_FLOP

    @property
    def int8_bytes(self) -> int:
        """Int8 parameter bytes of the binary + int8 export (see the module doc)."""
        return self._sum("int8_bytes")

    @property
    def flops_paper(self) -> float:
        return self.fp_macs + self._sum("binary_ops_one_branch") / BINARY_OPS_PER_FLOP

    def table(self) -> str:
        """The per-layer table and the totals, as `ienet cost` prints them."""
        from tabulate import tabulate

        def count(value: float) -> str:
            return f"{value:.3g}" if value >= 1e4 else f"{value:g}"

        rows = [
            [
                layer.name,
                layer.type,
                layer.params_by_bits.get(1, 0),
                sum(n for b, n in layer.params_by_bits.items() if b != 1),
                f"{layer.memory_bits / 1e3:.1f}",
                layer.int8_bytes,
                count(layer.fp_macs),
                count(layer.binary_ops),
            ]
            for layer in self.layers
            if layer.params or layer.fp_macs or layer.binary_ops
        ]
        header = [
            "layer",
            "type",
            "1-bit params",
            "32-bit params",
            "kbit",
            "int8 B",
            "FP MACs",
            "binary ops",
        ]
        table = tabulate(rows, header, tablefmt="simple", disable_numparse=True)
        return (
            f"{table}\n\n{self.name}: memory {self.memory_mbit:.2f} Mbit "
            f"({self.memory_kib:.2f} KiB, larq's unit), int8 export "
            f"{self.int8_bytes:,} B of int8 parameters, FP MACs {self.fp_macs:.3g}, binary ops "
            f"{self.binary_ops:.3g}, FLOPs {self.flops:.3g} (paper convention, one IE-BC "
            f"branch: {self.flops_paper:.3g})"
        )

    def as_dict(self) -> dict:
        return {
            "model": self.name,
            "params": sum(self.params_by_bits.values()),
            "params_by_bits": {str(b): n for b, n in self.params_by_bits.items()},
            "memory_mbit": self.memory_mbit,
            "memory_kib": self.memory_kib,
            "fp_macs": self.fp_macs,
            "binary_ops": self.binary_ops,
            "flops": self.flops,
            "flops_paper": self.flops_paper,
            "int8_bytes": self.int8_bytes,
            "layers": [
                {
                    **dataclasses.asdict(layer),
                    "params_by_bits": {str(b): n for b, n in layer.params_by_bits.items()},
                }
                for layer in self.layers
            ],
        }


class _IEBCProfile(LayerProfile):
    """larq's profile of an IE-BC layer, with its K branches as binary MACs."""

    def __init__(self, layer: IEBinaryConv2D):
        super().__init__(layer)
        kernel_macs = layer.kernel.shape.num_elements() * (self.output_pixels or 0)
        self.op_profiles = [OperationProfile(n=kernel_macs * layer.k, precision=1, op_type="mac")]
        self.one_branch_macs = kernel_macs


_FOLDS_BATCHNORM = (tf.keras.layers.Conv2D, tf.keras.layers.DepthwiseConv2D, tf.keras.layers.Dense)


def _is_real_valued(layer) -> bool:
    """A convolution or dense layer whose kernel is not binarized (int8 in the export)."""
    if isinstance(layer, IEBinaryConv2D) or not isinstance(layer, _FOLDS_BATCHNORM):
        return False
    return getattr(layer, "kernel_quantizer", None) is None


def _int8_bytes(layer: tf.keras.layers.Layer) -> int:
    """The layer's int8 parameter bytes in a binary + int8 export (module doc)."""
    if _is_real_valued(layer):
        if isinstance(layer, tf.keras.layers.DepthwiseConv2D):
            kernel = layer.depthwise_kernel
            channels = kernel.shape[-2] * kernel.shape[-1]
        else:
            kernel = layer.kernel
            channels = kernel.shape[-1]
        return kernel.shape.num_elements() + 4 * channels
    if isinstance(layer, IEBinaryConv2D):
        return 0 if layer.thresholds is None else layer.thresholds.shape.num_elements()
    if isinstance(layer, ElasticLink):
        return 5 * layer.filters  # gamma as a 1x1 depthwise conv: int8 weights, int32 bias
    if isinstance(layer, tf.keras.layers.PReLU):
        return layer.alpha.shape.num_elements()
    if isinstance(layer, tf.keras.layers.BatchNormalization):
        sources = inbound_layers(layer)
        if len(sources) == 1 and isinstance(sources[0], _FOLDS_BATCHNORM):
            return 0  # folded into the convolution (binary or not) before it
        if len(layer.input_shape) == 2:
            return 0  # folded into the classifier after it
        return 5 * int(layer.moving_mean.shape[0])
    return 0


def _layer_cost(layer: tf.keras.layers.Layer, schedule_state: set[int]) -> LayerCost:
    profile = _IEBCProfile(layer) if isinstance(layer, IEBinaryConv2D) else LayerProfile(layer)
    params: dict[int, int] = {}
    memory = 0
    for weight in profile.weight_profiles:
        if id(weight._weight) in schedule_state:
            continue
        params[weight.bitwidth] = params.get(weight.bitwidth, 0) + weight.count
        memory += weight.memory
    fp_macs = binary_ops = 0
    if profile.output_pixels and isinstance(layer, lq.models.op_count_supported_layer_types):
        binary_ops = profile.op_count("mac", precision=1) or 0
        fp_macs = (profile.op_count("mac") or 0) - binary_ops
        # larq counts one MAC per output pixel for every non-bias weight of the layer, the
        # IEE quantizers' `q` (a float schedule setting, no weight) included: not a MAC.
        if not isinstance(profile, _IEBCProfile):  # (whose MACs are its kernel's alone)
            for weight in profile.weight_profiles:
                if id(weight._weight) in schedule_state and not weight.is_bias():
                    fp_macs -= weight.count * profile.output_pixels
    elif isinstance(layer, ElasticLink):
        # gamma * SE(x): one float multiply per output value (pooling is not a MAC).
        fp_macs = tf.TensorShape(layer.output_shape)[1:].num_elements()
    one_branch = getattr(profile, "one_branch_macs", binary_ops)
    return LayerCost(
        layer.name,
        type(layer).__name__,
        params,
        memory,
        fp_macs,
        binary_ops,
        one_branch,
        _int8_bytes(layer),
    )


def model_cost(model: tf.keras.Model) -> ModelCost:
    """Per-layer and total cost of `model` (per image, at the model's input size); of the
    classifier inside a training wrapper (IR²Net's restriction costs nothing at inference)."""
    model = inference_model(model)
    schedule_state = {id(quantizer.q) for quantizer in iee_quantizers(model)}
    layers = tuple(_layer_cost(layer, schedule_state) for layer in model.layers)
    return ModelCost(model.name, layers)
