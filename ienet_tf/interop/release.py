"""Load the IE-Net authors' PyTorch checkpoints into `compat="release"` models.

```python
from ienet_tf import models
from ienet_tf.interop import release

model = models.build("resnet20", "ienet", compat="release")
state_dict = release.read_checkpoint("IE-NEt_resnet20.th")  # .pth / .pth.tar / .th / .npz
release.load_state_dict(model, state_dict)
```

The release names its parameters after its PyTorch modules (`layer1.0.binary_conv1.weight`,
`layer1.0.binary_conv1.alpha`, `layer1.0.shift1`, `layer1.0.scale.w1`, BatchNorm running
statistics, `fc.weight`, ...). `release_names(model)` maps every weight of our networks
(`resnet20`, `resnet18_cifar`, `vgg_small`, `resnet18`, `resnet34`; the IE-Net variant,
K = 2) to its release key and converts the layouts:

| release (PyTorch)                         | ienet-tf                                     |
|-------------------------------------------|----------------------------------------------|
| conv weight (C_out, C_in, kh, kw)         | kernel (kh, kw, C_in, C_out)                 |
| `alpha` (C_out, 1, 1)                     | `alpha` (C_out,)                             |
| `shift1`, `shift2` (1, C_in, 1, 1)        | `thresholds` (2, C_in)                       |
| `scale.w1` (1, C_out, 1, 1) or (1,)       | `lambdas` (1, C_out) or (1, 1)               |
| BN weight / bias / running_mean / _var    | gamma / beta / moving_mean / moving_variance |
| `fc.weight` (classes, features)           | kernel (features, classes); VGG-Small's      |
|                                           | rows reordered from (C, H, W) to (H, W, C)   |

`num_batches_tracked` and the release's unused `bn3` (ImageNet) are read and ignored; the
IEE sharpness `q` is not in the checkpoint (the schedule sets it). Anything else that
does not fit is a `CheckpointImportError` naming every missing, unexpected and
mis-shaped key.
"""

from __future__ import annotations

import dataclasses
import os
import re
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import tensorflow as tf

from ienet_tf.errors import CheckpointImportError
from ienet_tf.io import one_line, require_file
from ienet_tf.ir2net import inference_model
from ienet_tf.layers import IEBinaryConv2D

__all__ = [
    "NETWORKS",
    "ImportReport",
    "load_state_dict",
    "read_checkpoint",
    "release_names",
]

#: The networks the IE-Net release has, by the name prefix of our models.
NETWORKS = ("resnet18_cifar", "resnet20", "vgg_small", "resnet18", "resnet34")
_IGNORED = re.compile(r"(^|\.)num_batches_tracked$|^bn3\.")
_BN = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}


@dataclasses.dataclass(frozen=True)
class _Entry:
    """One weight of the model: its release key and the layout conversion."""

    key: str | tuple[str, ...]  # a tuple: several release tensors stacked (thresholds)
    convert: Callable[[list[np.ndarray]], np.ndarray]


def _conv_kernel(arrays):
    return np.transpose(arrays[0], (2, 3, 1, 0))


def _channels(arrays):
    return np.reshape(arrays[0], (-1,))


def _stack_channels(arrays):
    return np.stack([np.reshape(a, (-1,)) for a in arrays])


def _lambdas(arrays):
    return np.reshape(arrays[0], (1, -1))


def _dense_kernel(arrays):
    return np.transpose(arrays[0])


def _identity(arrays):
    return arrays[0]


def _network(model: tf.keras.Model) -> str:
    for name in NETWORKS:  # resnet18_cifar before resnet18
        if model.name.startswith(f"{name}_"):
            return name
    raise CheckpointImportError(
        f"model {model.name!r} is not one of the release's networks {list(NETWORKS)}; build "
        "it with ienet_tf.models.build(name, 'ienet', compat='release')."
    )


def _layer_prefixes(network: str, layer_name: str) -> tuple[str, str] | None:
    """(release module prefix, role) of one of our layers, or None if it has no weights
    in the release. Roles: conv (IE-BC with shifts/scale), single (one-branch binary conv),
    float (float conv), bn, dense."""
    fixed = {
        "stem_conv": ("conv0" if network == "vgg_small" else "conv1", "float"),
        "stem_bn": ("bn0" if network == "vgg_small" else "bn1", "bn"),
        "head_bn": ({"resnet20": "bn"}.get(network, "bn2"), "bn"),
        "logits": ("linear" if network == "resnet18_cifar" else "fc", "dense"),
    }
    if layer_name in fixed:
        return fixed[layer_name]
    if network == "vgg_small":
        match = re.fullmatch(r"conv(\d)(_bn)?", layer_name)
        if match:
            index, bn = match.groups()
            return (f"bn{index}", "bn") if bn else (f"conv{index}", "conv")
        return None
    if network == "resnet20":
        match = re.fullmatch(r"stage(\d)_unit(\d+)_(conv|bn)", layer_name)
        if match:
            stage, unit, what = match.groups()
            block = f"layer{stage}.{int(unit) - 1}"
            return (f"{block}.binary_conv1", "conv") if what == "conv" else (f"{block}.bn1", "bn")
        return None
    if network == "resnet18_cifar":
        pattern = r"stage(\d)_block(\d)_(conv1|conv2|bn1|bn2|down_conv|down_bn)"
        match = re.fullmatch(pattern, layer_name)
        if match:
            stage, block, what = match.groups()
            prefix = f"layer{stage}.{int(block) - 1}"
            return {
                "conv1": (f"{prefix}.conv1", "conv"),
                "conv2": (f"{prefix}.conv2", "conv"),
                "bn1": (f"{prefix}.bn1", "bn"),
                "bn2": (f"{prefix}.bn2", "bn"),
                "down_conv": (f"{prefix}.shortcut.0", "single"),
                "down_bn": (f"{prefix}.shortcut.1", "bn"),
            }[what]
        return None
    # ImageNet ResNet-18/34: unit u of a stage is conv (u - 1) % 2 + 1 of block (u - 1) // 2
    match = re.fullmatch(r"stage(\d)_unit(\d+)_(conv|bn|down_conv|down_bn)", layer_name)
    if match:
        stage, unit, what = match.groups()
        block, index = divmod(int(unit) - 1, 2)
        prefix = f"layer{stage}.{block}"
        return {
            "conv": (
                f"{prefix}.conv{index + 1}|{prefix}.shift{index + 1}|{prefix}.scale{index + 1}",
                "conv",
            ),
            "bn": (f"{prefix}.bn{index + 1}", "bn"),
            "down_conv": (f"{prefix}.downsample.0", "float"),
            "down_bn": (f"{prefix}.downsample.1", "bn"),
        }[what]
    return None


def _conv_entries(network: str, prefix: str, layer, role: str) -> dict[str, _Entry]:
    if role == "single":  # a plain BinarizeConv2d: weight and alpha only
        conv, shifts, lambdas = prefix, (), ""
    elif network in ("resnet18", "resnet34"):  # conv, shifts and scale are siblings
        conv, shift, scale = prefix.split("|")
        shifts = (f"{shift}1.bias", f"{shift}2.bias")
        lambdas = f"{scale}.w1"
    elif network == "resnet20":
        conv = prefix
        block = prefix.rsplit(".", 1)[0]
        shifts, lambdas = (f"{block}.shift1", f"{block}.shift2"), f"{block}.scale.w1"
    else:  # OwnBinaryConv: shifts and scale beside the inner `conv`
        conv = f"{prefix}.conv"
        shifts, lambdas = (f"{prefix}.shift1", f"{prefix}.shift2"), f"{prefix}.scale.w1"
    entries = {
        "kernel": _Entry(f"{conv}.weight", _conv_kernel),
        "alpha": _Entry(f"{conv}.alpha", _channels),
        "bias": _Entry(f"{conv}.bias", _channels),
    }
    if layer.thresholds is not None:
        entries["thresholds"] = _Entry(shifts, _stack_channels)
    if layer.lambdas is not None:
        entries["lambdas"] = _Entry(lambdas, _lambdas)
    return entries


def _vgg_dense_kernel(flatten_shape) -> Callable[[list[np.ndarray]], np.ndarray]:
    height, width, channels = flatten_shape

    def convert(arrays):
        weight = arrays[0]  # (classes, C * H * W), PyTorch flattens NCHW
        classes = weight.shape[0]
        if weight.size != classes * height * width * channels:
            return np.transpose(weight)  # the shape check reports the mismatch
        nchw = weight.reshape(classes, channels, height, width)
        return np.transpose(nchw, (0, 2, 3, 1)).reshape(classes, -1).T

    return convert


def _weight_kind(weight: tf.Variable) -> str:
    return weight.name.split("/")[-1].split(":")[0]


def release_names(model: tf.keras.Model) -> dict[str, _Entry]:
    """Every weight of `model` (by its variable name) -> its release key and conversion.
    The IEE quantizers' `q` is left out (not in the release's checkpoints)."""
    model = inference_model(model)
    network = _network(model)
    entries: dict[str, _Entry] = {}
    for layer in model.layers:
        found = _layer_prefixes(network, layer.name)
        if not layer.weights:
            continue
        if found is None:
            raise CheckpointImportError(
                f"layer {layer.name!r} of {model.name!r} has no counterpart in the release's "
                f"{network} (only the IE-Net networks of the release can be imported)."
            )
        prefix, role = found
        if role in ("conv", "single"):
            if not isinstance(layer, IEBinaryConv2D):
                raise CheckpointImportError(
                    f"layer {layer.name!r} is not a binary IE-BC convolution; the release has "
                    "IE-Net checkpoints only: build the model with variant 'ienet'."
                )
            if role == "conv" and layer.k != 2:
                raise CheckpointImportError(
                    f"layer {layer.name!r} has K={layer.k} branches; the release's IE-Net "
                    "has K=2: build the model with k=2."
                )
            by_kind = _conv_entries(network, prefix, layer, role)
        elif role == "bn":
            by_kind = {
                ours: _Entry(f"{prefix}.{theirs}", _identity) for ours, theirs in _BN.items()
            }
        elif role == "float":
            by_kind = {
                "kernel": _Entry(f"{prefix}.weight", _conv_kernel),
                "bias": _Entry(f"{prefix}.bias", _channels),
            }
        else:  # dense
            convert = _dense_kernel
            if network == "vgg_small":
                convert = _vgg_dense_kernel(model.get_layer("flatten").input_shape[1:])
            by_kind = {
                "kernel": _Entry(f"{prefix}.weight", convert),
                "bias": _Entry(f"{prefix}.bias", _identity),
            }
        for weight in layer.weights:
            kind = _weight_kind(weight)
            if kind == "q":
                continue
            if kind not in by_kind:
                raise CheckpointImportError(
                    f"weight {weight.name!r} has no counterpart in the release's {network}."
                )
            entries[weight.name] = by_kind[kind]
    return entries


@dataclasses.dataclass(frozen=True)
class ImportReport:
    """What `load_state_dict` did: weights set, release keys consumed and ignored."""

    weights_set: int
    keys_consumed: int
    keys_ignored: tuple[str, ...]


def _as_array(value, key: str) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except Exception as error:
        raise CheckpointImportError(f"{key}: not an array ({type(value).__name__}).") from error
    if array.dtype == object or not np.issubdtype(array.dtype, np.number):
        raise CheckpointImportError(f"{key}: not a numeric tensor ({type(value).__name__}).")
    return array


def _summary(keys, limit: int = 8) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _check_compat(model: tf.keras.Model) -> None:
    convs = [layer for layer in model.layers if isinstance(layer, IEBinaryConv2D)]
    if convs and not all(c.symmetric_padding and c.pad_values == 0.0 for c in convs):
        raise CheckpointImportError(
            f"model {model.name!r} is built with compat='lce' (same-one padding): it would not "
            "compute what the release computes; build it with compat='release' (config key "
            "model.compat: release), or pass require_release=False to load the weights anyway."
        )


def load_state_dict(
    model: tf.keras.Model, state_dict: Mapping, *, require_release: bool = True
) -> ImportReport:
    """Set every weight of `model` (built with `compat="release"`) from the release's
    `state_dict` (PyTorch tensors or numpy arrays; a `module.` prefix from DataParallel is
    dropped). Every key must be consumed and every weight set, else a
    `CheckpointImportError` names the missing, unexpected and mis-shaped keys and the
    model is left unchanged."""
    if not isinstance(state_dict, Mapping) or not all(isinstance(k, str) for k in state_dict):
        raise CheckpointImportError(
            f"expected a state_dict (a mapping of parameter names to tensors), got "
            f"{type(state_dict).__name__}."
        )
    inner = inference_model(model)
    _network(inner)
    if require_release:
        _check_compat(inner)
    tensors = {key.removeprefix("module."): value for key, value in state_dict.items()}
    ignored = tuple(sorted(key for key in tensors if _IGNORED.search(key)))
    entries = release_names(inner)
    wanted = set()
    for entry in entries.values():
        wanted.update(entry.key if isinstance(entry.key, tuple) else (entry.key,))
    missing = wanted - set(tensors)
    unexpected = set(tensors) - wanted - set(ignored)
    values, misshaped = [], []
    weights = {weight.name: weight for weight in inner.weights}
    if not missing:
        for name, entry in entries.items():
            keys = entry.key if isinstance(entry.key, tuple) else (entry.key,)
            value = entry.convert([_as_array(tensors[key], key) for key in keys])
            weight = weights[name]
            if tuple(value.shape) != tuple(weight.shape):
                shapes = ", ".join(str(tuple(np.shape(tensors[key]))) for key in keys)
                misshaped.append(f"{'+'.join(keys)} {shapes} for {name} {tuple(weight.shape)}")
            values.append((weight, value))
    problems = []
    if missing:
        problems.append(f"missing keys: {_summary(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_summary(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped: {_summary(misshaped, 4)}")
    if problems:
        raise CheckpointImportError(
            f"the checkpoint does not fit {inner.name!r}: {'; '.join(problems)}."
        )
    for weight, value in values:
        weight.assign(value.astype(weight.dtype.as_numpy_dtype))
    return ImportReport(len(values), len(wanted), ignored)


def _unwrap(loaded, path: Path) -> Mapping:
    if isinstance(loaded, Mapping) and "state_dict" in loaded:
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not loaded:
        raise CheckpointImportError(
            f"{path} holds a {type(loaded).__name__}, not a state_dict (or a dict with a "
            "'state_dict' entry) of parameter tensors."
        )
    return loaded


def read_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The state_dict in a release checkpoint file, as numpy arrays.

    `.pth`, `.pth.tar`, `.th`: PyTorch files (a bare state_dict or `{"state_dict": ...}`),
    read with `torch.load(weights_only=True)`, which never runs code from the file (needs
    the `torch` extra: `pip install "ienet-tf[torch]"`). `.npz`: numpy archives, read
    without pickle.
    """
    path = require_file(path, "checkpoint file", CheckpointImportError)
    if path.name.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as archive:
                loaded = {key: archive[key] for key in archive.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
            raise CheckpointImportError(
                f"{path} is not a readable .npz archive ({one_line(error, 120)})."
            ) from None
    elif path.name.endswith((".pth", ".pth.tar", ".th", ".pt")):
        try:
            import torch
        except ImportError:
            raise CheckpointImportError(
                f"reading {path.name} needs PyTorch: pip install 'ienet-tf[torch]' (or convert "
                "the state_dict to .npz with numpy.savez)."
            ) from None
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many kinds for corrupt or unsafe files
            raise CheckpointImportError(
                f"{path} is not a readable PyTorch checkpoint of tensors "
                f"({type(error).__name__}: {one_line(error, 160)})."
            ) from None
    else:
        raise CheckpointImportError(
            f"{path.name}: unknown checkpoint format; use .pth, .pth.tar, .th or .npz."
        )
    state_dict = _unwrap(loaded, path)
    return {str(key): _as_array(value, str(key)) for key, value in state_dict.items()}
