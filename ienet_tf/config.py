"""Typed experiment configs: YAML in, validated dataclasses out.

```yaml
model: {name: resnet20, variant: ienet, k: 2}
data: {name: cifar10}
train: {epochs: 400, batch_size: 128, learning_rate: 0.1, weight_decay: 1.0e-4}
iee: {t_min: -2.0, t_max: 1.0}
```

Unknown keys, wrong types and impossible values are `ConfigError`s naming the key path
(`train.epochs: expected a positive integer, got 0`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from ienet_tf import errors

__all__ = [
    "Config",
    "ConfigError",
    "TuneConfig",
    "TuneFileConfig",
    "DataConfig",
    "IEEConfig",
    "ModelConfig",
    "TrainConfig",
    "apply_overrides",
    "from_dict",
    "load",
    "to_dict",
    "dump",
]

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
TUNERS = ("random", "bayesian", "hyperband")
WEIGHT_DECAY_SCOPES = ("all", "conv_and_fc", "kernels_and_alpha")
LR_SCHEDULES = ("cosine", "constant")
OPTIMIZERS = ("sgd", "keras_sgd", "adam")


# An invalid config: the message names the key path and what is allowed.
ConfigError = errors.ConfigError


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    name: str = "resnet20"
    variant: str = "ienet"  # a base variant, optionally "+el" and/or "+ir2net"
    k: int | None = None  # default: 2 for iebc/ienet, 1 otherwise
    input_shape: tuple[int, int, int] | None = None  # default: the data set's
    # +ir2net: 1 = full recovery head, r >= 2 = Ghost ratio r; null: the release's ratio for
    # the network (ResNet-20 4, ResNet-18 CIFAR 20, VGG-Small 32, ImageNet ResNets 1)
    recovery_ratio: int | None = None
    erase_threshold: float = 0.15  # +ir2net: restriction erases attention <= this x mean
    attention_norm: str = "column"  # +ir2net: "column" (the release) or "map"
    compat: str = "lce"  # "lce" (deployment) or "release" (the authors' PyTorch networks)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    name: str = "cifar10"
    data_dir: str | None = None
    manual_dir: str | None = None  # ImageNet's manually downloaded archives
    subset: int | None = None  # keep the first N training examples (CPU-scale runs)
    test_subset: int | None = None
    # Hold out the first N training examples as the validation split: the per-epoch
    # monitor and best.keras use it, and training uses the examples after it. null: no
    # validation split, the test split is monitored (what the papers' releases do).
    validation_examples: int | None = None
    download: bool = False  # let tensorflow-datasets download CIFAR-10 / Fashion-MNIST


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = 400
    batch_size: int = 128
    optimizer: str = "sgd"  # PyTorch-form momentum (the release); "keras_sgd", "adam"
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    # "all" parameters (CIFAR), "conv_and_fc" (the ImageNet release: conv kernels and alpha
    # but not the 1x1 downsampling projections, and the classifier's kernel and bias) or
    # "kernels_and_alpha" (every conv/dense kernel and alpha; ienet-tf before 0.2)
    weight_decay_on: str = "all"
    lr_schedule: str = "cosine"  # per epoch, after the warm-up
    warmup_epochs: int = 0
    seed: int = 0
    strategy: str = "default"
    log_binary_stats: bool = False  # BinaryStatsLogger: q, r, entropy, flip ratio per epoch


@dataclasses.dataclass(frozen=True)
class IEEConfig:
    t_min: float = -2.0
    t_max: float = 1.0
    per_step: bool = False  # update q before every step instead of every epoch (the release)


@dataclasses.dataclass(frozen=True)
class Config:
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    iee: IEEConfig = dataclasses.field(default_factory=IEEConfig)


@dataclasses.dataclass(frozen=True)
class TuneConfig:
    """The keras-tuner search of `ienet tune`. T_min/T_max are searched as a centre and a
    width (`t_min = c - w/2`, `t_max = c + w/2`, w > 0), so every sampled pair is valid."""

    tuner: str = "random"  # random | bayesian | hyperband
    max_trials: int = 10  # random/bayesian; hyperband sizes itself from max_epochs
    executions_per_trial: int = 1
    objective: str = "val_accuracy"
    k: tuple[int, int] = (1, 5)
    t_center: tuple[float, float] = (-1.5, 0.5)
    t_width: tuple[float, float] = (1.0, 4.0)
    learning_rate: tuple[float, float] | None = None  # log-uniform when given
    validation_examples: int = 300  # held out from the training split, never the test set
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class TuneFileConfig(Config):
    """A training config plus the `tune` section: what `ienet tune` reads."""

    tune: TuneConfig = dataclasses.field(default_factory=TuneConfig)


def _describe(tp) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        return "a list of " + _describe(typing.get_args(tp)[0]) + "s"
    return {int: "an integer", float: "a number", str: "a string", bool: "a boolean"}.get(
        tp, "null" if tp is type(None) else str(tp)
    )


def _coerce(value: Any, tp, path: str):
    """`value` as type `tp`, or a ConfigError naming `path`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, path)
            except ConfigError:
                pass
    elif origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, (list, tuple)) and len(value) == len(args):
            pairs = enumerate(zip(value, args, strict=True))
            return tuple(_coerce(v, a, f"{path}[{i}]") for i, (v, a) in pairs)
    elif tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if math.isfinite(value):
            return float(value)
    elif tp in (int, str, bool) and type(value) is tp:
        return value
    raise ConfigError(f"{path}: expected {_describe(tp)}, got {value!r}.")


def _build(cls, raw: Any, path: str):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {raw!r}.")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - fields)
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(f"{where}{unknown[0]}: unknown key; allowed: {sorted(fields)}.")
    values = {}
    for name in fields & set(raw):
        key = f"{path}.{name}" if path else name
        if dataclasses.is_dataclass(hints[name]):
            values[name] = _build(hints[name], raw[name], key)
        else:
            values[name] = _coerce(raw[name], hints[name], key)
    return cls(**values)


def _check(condition: bool, path: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{path}: {message}")


def validate(config: Config) -> Config:
    """Check the values that the types alone cannot."""
    from ienet_tf import data, ir2net, models

    m, d, t = config.model, config.data, config.train
    _check(
        m.name in models.available(),
        "model.name",
        f"unknown model {m.name!r}; available: {list(models.available())}.",
    )
    base = m.variant.split("+")[0]
    _check(
        base in models.VARIANTS,
        "model.variant",
        f"unknown variant {base!r}; allowed: {sorted(models.VARIANTS)}, optionally with "
        f"modifiers {['+' + modifier for modifier in models.MODIFIERS]}.",
    )
    try:
        models.parse_variant(m.variant)
    except ValueError as error:
        raise ConfigError(f"model.variant: {error}") from None
    try:
        models.get_variant(m.variant, m.k)
    except ValueError as error:
        raise ConfigError(f"model.k: {error}") from None
    _check(
        m.recovery_ratio is None or m.recovery_ratio >= 1,
        "model.recovery_ratio",
        f"must be >= 1, got {m.recovery_ratio}.",
    )
    _check(
        m.erase_threshold >= 0, "model.erase_threshold", f"must be >= 0, got {m.erase_threshold}."
    )
    _check(
        m.attention_norm in ir2net.ATTENTION_NORMS,
        "model.attention_norm",
        f"{m.attention_norm!r} is not one of {list(ir2net.ATTENTION_NORMS)}.",
    )
    _check(
        m.compat in models.COMPATS,
        "model.compat",
        f"{m.compat!r} is not one of {list(models.COMPATS)}.",
    )
    if m.input_shape is not None:
        _check(all(s > 0 for s in m.input_shape), "model.input_shape", "sizes must be > 0.")
    _check(
        d.name in data.available(),
        "data.name",
        f"unknown data set {d.name!r}; available: {list(data.available())}.",
    )
    for key in ("subset", "test_subset", "validation_examples"):
        value = getattr(d, key)
        _check(value is None or value > 0, f"data.{key}", f"must be > 0 or null, got {value}.")
    if d.validation_examples is not None:
        train_size = data.info(d.name).train_size
        needed = d.validation_examples + (d.subset or 1)
        _check(
            train_size is None or needed <= train_size,
            "data.validation_examples",
            f"{d.validation_examples} held-out examples"
            + (f" + data.subset {d.subset}" if d.subset else "")
            + f" exceed the {train_size} examples of {d.name}'s training split; lower it"
            + (" or data.subset." if d.subset else "."),
        )
    _check(t.epochs > 0, "train.epochs", f"must be > 0, got {t.epochs}.")
    _check(t.batch_size > 0, "train.batch_size", f"must be > 0, got {t.batch_size}.")
    _check(t.learning_rate > 0, "train.learning_rate", f"must be > 0, got {t.learning_rate}.")
    _check(0 <= t.momentum < 1, "train.momentum", f"must be in [0, 1), got {t.momentum}.")
    _check(t.weight_decay >= 0, "train.weight_decay", f"must be >= 0, got {t.weight_decay}.")
    _check(
        0 <= t.warmup_epochs < t.epochs,
        "train.warmup_epochs",
        f"must be in [0, epochs), got {t.warmup_epochs}.",
    )
    for key, value, allowed in (
        ("optimizer", t.optimizer, OPTIMIZERS),
        ("weight_decay_on", t.weight_decay_on, WEIGHT_DECAY_SCOPES),
        ("lr_schedule", t.lr_schedule, LR_SCHEDULES),
        ("strategy", t.strategy, STRATEGIES),
    ):
        _check(value in allowed, f"train.{key}", f"{value!r} is not one of {list(allowed)}.")
    _check(
        config.iee.t_min < config.iee.t_max,
        "iee.t_min",
        f"must be smaller than iee.t_max, got {config.iee.t_min} >= {config.iee.t_max}.",
    )
    if isinstance(config, TuneFileConfig):
        _validate_tune(config)
    return config


def _validate_tune(config: TuneFileConfig) -> None:
    from ienet_tf import models

    tune = config.tune
    _check(tune.tuner in TUNERS, "tune.tuner", f"{tune.tuner!r} is not one of {list(TUNERS)}.")
    for key in ("max_trials", "executions_per_trial", "validation_examples"):
        value = getattr(tune, key)
        _check(value > 0, f"tune.{key}", f"must be > 0, got {value}.")
    for key in ("k", "t_center", "t_width", "learning_rate"):
        bounds = getattr(tune, key)
        if bounds is not None:
            _check(
                bounds[0] <= bounds[1],
                f"tune.{key}",
                f"expected [low, high] with low <= high, got {list(bounds)}.",
            )
    _check(tune.k[0] >= 1, "tune.k", f"K must be >= 1, got {list(tune.k)}.")
    if tune.k[1] > 1:
        _check(
            models.get_variant(config.model.variant).multi_branch,
            "tune.k",
            f"K > 1 needs a multi-branch model.variant ('iebc' or 'ienet', optionally with "
            f"modifiers), got {config.model.variant!r}.",
        )
    _check(
        tune.t_width[0] > 0,
        "tune.t_width",
        f"widths must be > 0 so that t_min < t_max, got {list(tune.t_width)}.",
    )
    if tune.learning_rate is not None:
        _check(
            tune.learning_rate[0] > 0,
            "tune.learning_rate",
            f"must be > 0 (log-uniform), got {list(tune.learning_rate)}.",
        )
    _check(
        tune.objective in ("val_accuracy", "val_loss"),
        "tune.objective",
        f"{tune.objective!r} is not one of ['val_accuracy', 'val_loss'].",
    )


def from_dict(raw: Any, schema: type[Config] = Config) -> Config:
    return validate(_build(schema, raw, ""))


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `key.path=value` overrides (values parsed as YAML) to a raw config dict."""
    raw = dict(raw or {})
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {override!r}: expected KEY.PATH=VALUE, e.g. train.epochs=5.")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"--set {override!r}: value is not valid YAML ({error}).") from None
        parts = key.split(".")
        node = raw
        for part in parts[:-1]:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, dict) else {}
            node = node[part]
        node[parts[-1]] = value
    return raw


def load(
    path: str | Path, overrides: list[str] | None = None, schema: type[Config] = Config
) -> Config:
    """Read, override and validate a YAML config file (a `Config`, or a `TuneFileConfig`)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level.")
    try:
        return from_dict(apply_overrides(raw or {}, overrides or []), schema)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def to_dict(config: Config) -> dict:
    def plain(value):
        return list(value) if isinstance(value, tuple) else value

    return {
        section.name: {
            key: plain(value)
            for key, value in dataclasses.asdict(getattr(config, section.name)).items()
        }
        for section in dataclasses.fields(config)
    }


def dump(config: Config) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
