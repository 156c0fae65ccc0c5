"""Typed experiment configs: YAML in, validated dataclasses out.

```yaml
model: {name: resnet20, variant: ienet, k: 2}
data: {name: cifar10}
train: {epochs: 400, batch_size: 128, learning_rate: 0.1, weight_decay: 1.0e-4}
iee: {t_min: -2.0, t_max: 1.0}
```

Unknown keys, wrong types and impossible values are `ConfigError`s naming the key path
(`train.epochs: must be > 0, got 0.`) and where it came from: the file, or the `--set`
override (`--set train.epochs=0: train.epochs: must be > 0, got 0.`). Files are read as
UTF-8, at most `MAX_FILE_BYTES`; empty files, nesting deeper than `MAX_DEPTH` and documents
that expand (through anchors and aliases) to more than `MAX_NODES` values are refused before
any Python object is built. Number fields also take `1e-3`, which YAML 1.1 reads as a string.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import reprlib
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from ienet_tf import errors

__all__ = [
    "Config",
    "ExportConfig",
    "ConfigError",
    "TuneConfig",
    "TuneFileConfig",
    "DataConfig",
    "IEEConfig",
    "ModelConfig",
    "TrainConfig",
    "apply_overrides",
    "from_dict",
    "settings",
    "load",
    "to_dict",
    "dump",
]

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
TUNERS = ("random", "bayesian", "hyperband")
WEIGHT_DECAY_SCOPES = ("all", "conv_and_fc", "kernels_and_alpha")
LR_SCHEDULES = ("cosine", "constant")
OPTIMIZERS = ("sgd", "keras_sgd", "adam")

# The largest model.k (and tune.k). The paper explores K = 1-5; every branch is one more
# binary convolution per layer (one LceBconv2d per branch in the LCE model), so compute,
# parameters and the exported model grow linearly with K: K = 1000 is a typo, not a run.
MAX_K = 16
# What a config file may be: configs/ holds files of about 1 KB with ~60 values, 3 levels deep.
MAX_FILE_BYTES = 1 << 20
MAX_NODES = 10_000  # YAML nodes once anchors/aliases are expanded (a "billion laughs" guard)
MAX_DEPTH = 20
_MAX_INT_DIGITS = 100  # longer integer literals are refused before int() parses them
_MAX_SHOWN = 200  # the most characters of a value that an error message echoes


# An invalid config: the message names the key path and what is allowed.
ConfigError = errors.ConfigError


@dataclasses.dataclass(frozen=True)
class Rule:
    """What a setting's value must satisfy (besides its type), and the message otherwise
    (`{value}` is the offending value, shown bounded). `None` always passes where the
    setting's type allows it."""

    test: typing.Callable[[Any], bool]
    message: str

    def check(self, value: Any, path: str) -> None:
        if value is not None and not self.test(value):
            _fail(
                path, self.message.format(value=_show(value) if isinstance(value, str) else value)
            )


def positive(null: bool = False) -> Rule:
    return Rule(lambda v: v > 0, "must be > 0" + (" or null" if null else "") + ", got {value}.")


def at_least(low: float) -> Rule:
    return Rule(lambda v: v >= low, f"must be >= {low}, got {{value}}.")


@dataclasses.dataclass(frozen=True)
class OneOf(Rule):
    """A value from `choices` (a sequence, or a function giving it: registries are read
    lazily, so that this module imports nothing of the package)."""

    choices: typing.Any = ()

    def check(self, value: Any, path: str) -> None:
        allowed = list(self.choices() if callable(self.choices) else self.choices)
        if value not in allowed:
            _fail(path, self.message.format(value=_show(value), allowed=allowed))


def one_of(choices, message: str = "{value} is not one of {allowed}.") -> Rule:
    return OneOf(lambda v: True, message, choices)


def setting(default: Any, help: str, rule: Rule | None = None):
    """A config setting, declared once: its default, its help text and its rule. The type
    is the annotation; parsing (files and `--set`), validation and the error's key path are
    derived from these."""
    return dataclasses.field(default=default, metadata={"help": help, "rule": rule})


def _models():
    from ienet_tf import models

    return models


def _quantizers():
    from ienet_tf import quantizers

    return quantizers


def _ir2net():
    from ienet_tf import ir2net

    return ir2net


def _data():
    from ienet_tf import data

    return data


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    name: str = setting(
        "resnet20",
        "the network (ienet_tf.models.available())",
        one_of(lambda: _models().available(), "unknown model {value}; available: {allowed}."),
    )
    variant: str = setting("ienet", "a base variant, optionally with +el and/or +ir2net")
    k: int | None = setting(
        None,
        "IE-BC branches; null: 2 for iebc/ienet, 1 otherwise",
        Rule(
            lambda v: v <= MAX_K,
            f"must be <= {MAX_K} (the paper explores K = 1-5; each branch is one more binary "
            "convolution per layer), got {value}.",
        ),
    )
    input_shape: tuple[int, int, int] | None = setting(
        None,
        "null: the data set's",
        Rule(lambda v: all(s > 0 for s in v), "sizes must be > 0."),
    )
    recovery_ratio: int | None = setting(
        None,
        "+ir2net: 1 = the full recovery head, r >= 2 = the Ghost head of ratio r; null: the "
        "release's ratio for the network (ResNet-20 4, ResNet-18 CIFAR 20, VGG-Small 32, "
        "ImageNet ResNets 1)",
        at_least(1),
    )
    erase_threshold: float = setting(
        0.15, "+ir2net: the restriction erases attention <= this x its mean", at_least(0)
    )
    attention_norm: str = setting(
        "column",
        '+ir2net: "column" (the release) or "map"',
        one_of(lambda: _ir2net().ATTENTION_NORMS),
    )
    compat: str = setting(
        "lce",
        '"lce" (deployment) or "release" (the authors\' PyTorch networks)',
        one_of(lambda: _models().COMPATS),
    )
    activation_estimator: str | None = setting(
        None,
        'the backward pass of the activation sign: "iee", "approx_sign" or "ste"; null: the '
        "variant's (iee for ienet, approx_sign for the others): an ablation knob",
        one_of(lambda: [None, *_quantizers().ACTIVATION_ESTIMATORS]),
    )
    threshold_spread: float = setting(
        0.0,
        "IE-BC (iebc/ienet): start the K thresholds evenly spaced in [-w, w]; 0: all at 0 "
        "(the release's: the branches start as one)",
        at_least(0),
    )
    lambda_init: float | None = setting(
        None,
        "IE-BC: start every lambda_k (k >= 2) at this value; null: U[0, 0.001) (the release's)",
    )


@dataclasses.dataclass(frozen=True)
class DataConfig:
    name: str = setting(
        "cifar10",
        "the data set (ienet_tf.data.available())",
        one_of(lambda: _data().available(), "unknown data set {value}; available: {allowed}."),
    )
    data_dir: str | None = setting(None, "where the data is (IDX files or tfds's data_dir)")
    manual_dir: str | None = setting(None, "ImageNet's manually downloaded archives")
    subset: int | None = setting(
        None, "keep the first N training examples (CPU-scale runs)", positive(null=True)
    )
    test_subset: int | None = setting(None, "keep the first N test examples", positive(null=True))
    validation_examples: int | None = setting(
        None,
        "hold out the first N training examples as the validation split: the per-epoch "
        "monitor and best.keras use it, training the examples after it; null: no validation "
        "split, the test split is monitored (what the papers' releases do)",
        positive(null=True),
    )
    download: bool = setting(False, "let tensorflow-datasets download CIFAR-10 / Fashion-MNIST")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = setting(400, "training epochs", positive())
    batch_size: int = setting(128, "examples per step", positive())
    optimizer: str = setting(
        "sgd", "sgd (PyTorch-form momentum, the release's), keras_sgd or adam", one_of(OPTIMIZERS)
    )
    learning_rate: float = setting(0.1, "the base learning rate", positive())
    momentum: float = setting(
        0.9, "SGD momentum", Rule(lambda v: 0 <= v < 1, "must be in [0, 1), got {value}.")
    )
    weight_decay: float = setting(1e-4, "coupled (PyTorch-style) weight decay", at_least(0))
    weight_decay_on: str = setting(
        "all",
        '"all" parameters (CIFAR), "conv_and_fc" (the ImageNet release: conv kernels and '
        "alpha but not the 1x1 downsampling projections, and the classifier's kernel and bias) "
        'or "kernels_and_alpha" (every conv/dense kernel and alpha; ienet-tf before 0.2)',
        one_of(WEIGHT_DECAY_SCOPES),
    )
    lr_schedule: str = setting("cosine", "after the warm-up", one_of(LR_SCHEDULES))
    warmup_epochs: int = setting(0, "linear warm-up epochs")
    lr_per_step: bool = setting(
        False,
        "set the learning rate before every step (warm-up and cosine over steps) instead of "
        "once per epoch (the release's); pair it with iee.per_step on short budgets",
    )
    clip_norm: float | None = setting(
        None,
        "clip the gradient to this global L2 norm before each step (Keras' global_clipnorm); "
        "null: no clipping (the release's)",
        positive(True),
    )
    bn_reestimation_batches: int = setting(
        0,
        "after the last epoch, set every BatchNorm's moving statistics of the final model to "
        "the mean of its batch statistics over this many un-augmented training batches "
        "(train.reestimate_batch_norm) before it is tested and saved; best.keras keeps the "
        "statistics it was chosen with (`ienet tune` validates every epoch of a trial with "
        "statistics so re-estimated: N extra forward passes per epoch); 0: the moving "
        "statistics of training (the release's)",
        at_least(0),
    )
    seed: int = setting(0, "the random seed (initialisation, data order, augmentation)")
    strategy: str = setting("default", "the tf.distribute strategy", one_of(STRATEGIES))
    log_binary_stats: bool = setting(
        False, "BinaryStatsLogger: q, r, entropy and flip ratio per epoch in TensorBoard"
    )


@dataclasses.dataclass(frozen=True)
class IEEConfig:
    t_min: float = setting(-2.0, "log10(q) at the start of the IEE schedule")
    t_max: float = setting(1.0, "log10(q) the schedule approaches at the end")
    per_step: bool = setting(
        False, "update q before every step instead of before every epoch (the release's)"
    )


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    int8: bool = setting(
        False,
        "after the float epochs, fine-tune the int8 QAT model (model_int8.keras) that "
        "`ienet export --int8` converts (binary + int8)",
    )
    int8_epochs: int = setting(2, "QAT fine-tune epochs (0: calibration only)", at_least(0))
    int8_optimizer: str = setting(
        "adam",
        "QAT fine-tune optimizer: adam (default: BatchNorm folded into the binary convs' "
        "scales gives those ~100x the others' gradients, which SGD cannot follow), sgd or "
        "keras_sgd",
        one_of(OPTIMIZERS),
    )
    int8_learning_rate: float | None = setting(
        None,
        "QAT learning rate, cosine to 0 over the fine-tune's steps; null: 1e-5 with adam, "
        "train.learning_rate / 100 with SGD",
        positive(True),
    )
    int8_calibration_batches: int = setting(
        8, "training batches that calibrate the int8 ranges", positive()
    )
    int8_io: bool = setting(False, "`ienet export --int8` writes int8 input/output tensors")


@dataclasses.dataclass(frozen=True)
class Config:
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    iee: IEEConfig = dataclasses.field(default_factory=IEEConfig)
    # How the run is exported; not part of the training (a finished run takes a new one).
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)


@dataclasses.dataclass(frozen=True)
class TuneConfig:
    """The keras-tuner search of `ienet tune`. T_min/T_max are searched as a centre and a
    width (`t_min = c - w/2`, `t_max = c + w/2`, w > 0), so every sampled pair is valid."""

    tuner: str = setting("random", "random | bayesian | hyperband", one_of(TUNERS))
    max_trials: int = setting(
        10, "random/bayesian; hyperband sizes itself from max_epochs", positive()
    )
    executions_per_trial: int = setting(1, "trainings per trial", positive())
    objective: str = setting(
        "val_accuracy", "what the search optimises", one_of(("val_accuracy", "val_loss"))
    )
    k: tuple[int, int] = setting((1, 5), "the range of K")
    t_center: tuple[float, float] = setting((-1.5, 0.5), "the range of (t_min + t_max) / 2")
    t_width: tuple[float, float] = setting((1.0, 4.0), "the range of t_max - t_min")
    learning_rate: tuple[float, float] | None = setting(
        None, "the learning rate's range (log-uniform); null: not searched"
    )
    validation_examples: int = setting(
        300,
        "held out from the training split for the objective, never the test set (used when "
        "data.validation_examples is null)",
        positive(),
    )
    seed: int = setting(0, "the search's seed")


def settings(schema: type = Config, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """Every setting of `schema`: (key path, type, default, help), derived from the one
    declaration of each."""
    rows = []
    hints = typing.get_type_hints(schema)
    for field in dataclasses.fields(schema):
        key = f"{prefix}{field.name}"
        if dataclasses.is_dataclass(hints[field.name]):
            rows += settings(hints[field.name], f"{key}.")
        else:
            rows.append((key, _describe(hints[field.name]), field.default, field.metadata["help"]))
    return rows


def _check_rules(section: Any, path: str) -> None:
    """Every setting's own rule, from its declaration."""
    for field in dataclasses.fields(section):
        value = getattr(section, field.name)
        key = f"{path}.{field.name}" if path else field.name
        if dataclasses.is_dataclass(value):
            _check_rules(value, key)
        elif field.metadata.get("rule") is not None:
            field.metadata["rule"].check(value, key)


@dataclasses.dataclass(frozen=True)
class TuneFileConfig(Config):
    """A training config plus the `tune` section: what `ienet tune` reads."""

    tune: TuneConfig = dataclasses.field(default_factory=TuneConfig)


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple = 3, 6, 6, 6
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 120, 120, 60


def _show(value: Any, limit: int = _MAX_SHOWN) -> str:
    """`repr(value)`, bounded in time and length, on one line: error messages echo input,
    and input can be a 1 MB string or a deeply shared structure."""
    if isinstance(value, int) and value.bit_length() > 1000:  # repr() refuses > 4300 digits
        text = f"<an integer of about {int(value.bit_length() * 0.30103)} digits>"
    else:
        text = _REPR.repr(value)
    return _cut(text, limit)


def _cut(text: str, limit: int = _MAX_SHOWN) -> str:
    """`text` on one line, cut to `limit` characters."""
    text = " ".join(text[: 4 * limit].split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _key_text(key: Any) -> str:
    """A mapping key as the key path shows it: strings as they are, others as repr."""
    return _cut(key, 80) if isinstance(key, str) else _show(key, 80)


def _fail(path: str, message: str, related: tuple[str, ...] = ()) -> typing.NoReturn:
    """Raise a ConfigError about the key `path`; `related` names the other keys the check
    read (so that `load` can tell which `--set` override is to blame)."""
    error = ConfigError(f"{path}: {message}")
    error.key_paths = (path, *related)
    raise error


def _describe(tp) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        return "a list of " + _describe(typing.get_args(tp)[0]) + "s"
    return {int: "an integer", float: "a number", str: "a string", bool: "a boolean"}.get(
        tp, "null" if tp is type(None) else str(tp)
    )


# A number as YAML 1.2 writes it (1e-3, 1.0e3, .5, 2), for float fields given a string.
_FLOAT_TEXT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")


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
    elif tp is float and isinstance(value, str) and _FLOAT_TEXT.fullmatch(value):
        # YAML 1.1 reads 1e-3 and 1.0e3 (no dot, or no exponent sign) as strings
        if math.isfinite(float(value)):
            return float(value)
    elif tp in (int, str, bool) and type(value) is tp:
        return value
    _fail(path, f"expected {_describe(tp)}, got {_show(value)}.")


def _build(cls, raw: Any, path: str):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        _fail(path or "config", f"expected a mapping, got {_show(raw)}.")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - fields, key=lambda key: (not isinstance(key, str), str(key)))
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, sorted(fields), n=1) if isinstance(key, str) else []
        hint = f"; did you mean {close[0]!r}?" if close else "."
        _fail(
            f"{path}.{_key_text(key)}" if path else _key_text(key),
            f"unknown key; allowed: {sorted(fields)}{hint}",
        )
    values = {}
    for name in fields & set(raw):
        key = f"{path}.{name}" if path else name
        if dataclasses.is_dataclass(hints[name]):
            values[name] = _build(hints[name], raw[name], key)
        else:
            values[name] = _coerce(raw[name], hints[name], key)
    return cls(**values)


def _check(condition: bool, path: str, message: str, related: tuple[str, ...] = ()) -> None:
    if not condition:
        _fail(path, message, related)


def validate(config: Config) -> Config:
    """Check the values that the types alone cannot: every setting's own rule (from its
    declaration), then the rules between settings."""
    from ienet_tf import data, models

    _check_rules(config, "")
    m, d, t = config.model, config.data, config.train
    base = m.variant.split("+")[0]
    _check(
        base in models.VARIANTS,
        "model.variant",
        f"unknown variant {_show(base)}; allowed: {sorted(models.VARIANTS)}, optionally with "
        f"modifiers {['+' + modifier for modifier in models.MODIFIERS]}.",
    )
    try:
        models.parse_variant(m.variant)
    except ValueError as error:
        _fail("model.variant", _cut(str(error)))
    try:
        models.get_variant(m.variant, m.k)
    except ValueError as error:
        _fail("model.k", _cut(str(error)), related=("model.variant",))
    # One home for the rules of the IE-BC ablation options: `get_variant`, each option
    # alone (the others at their no-op defaults), its error under the option's key.
    for option in ("activation_estimator", "threshold_spread", "lambda_init"):
        try:
            models.get_variant(m.variant, m.k, **{option: getattr(m, option)})
        except ValueError as error:
            _fail(f"model.{option}", _cut(str(error)), related=("model.variant", "model.k"))
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
            related=("data.subset", "data.name"),
        )
    _check(
        0 <= t.warmup_epochs < t.epochs,
        "train.warmup_epochs",
        f"must be in [0, epochs), got {t.warmup_epochs}.",
        related=("train.epochs",),
    )
    _check(
        config.iee.t_min < config.iee.t_max,
        "iee.t_min",
        f"must be smaller than iee.t_max, got {config.iee.t_min} >= {config.iee.t_max}.",
        related=("iee.t_max",),
    )
    if isinstance(config, TuneFileConfig):
        _validate_tune(config)
    return config


def _validate_tune(config: TuneFileConfig) -> None:
    from ienet_tf import models

    tune = config.tune
    for key in ("k", "t_center", "t_width", "learning_rate"):
        bounds = getattr(tune, key)
        if bounds is not None:
            _check(
                bounds[0] <= bounds[1],
                f"tune.{key}",
                f"expected [low, high] with low <= high, got {list(bounds)}.",
            )
    _check(tune.k[0] >= 1, "tune.k", f"K must be >= 1, got {list(tune.k)}.")
    _check(tune.k[1] <= MAX_K, "tune.k", f"K must be <= {MAX_K}, got {list(tune.k)}.")
    if tune.k[1] > 1:
        _check(
            models.get_variant(config.model.variant).multi_branch,
            "tune.k",
            f"K > 1 needs a multi-branch model.variant ('iebc' or 'ienet', optionally with "
            f"modifiers), got {_show(config.model.variant)}.",
            related=("model.variant",),
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


def from_dict(raw: Any, schema: type[Config] = Config) -> Config:
    return validate(_build(schema, raw, ""))


class _YAMLRefused(Exception):
    """A YAML document refused before construction: too deep, too large, recursive."""


class _Loader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses nesting deeper than `MAX_DEPTH` while composing (the
    composer recurses once per level)."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent, index):
        self._depth += 1
        self._nodes += 1  # every node and alias: at most the expanded size _check_nodes bounds
        try:
            if self._nodes > MAX_NODES:
                raise _YAMLRefused(_too_many_values(aliased=False))
            if self._depth > MAX_DEPTH:
                line = self.peek_event().start_mark.line + 1
                raise _YAMLRefused(
                    f"line {line}: nested more than {MAX_DEPTH} levels deep (a config has 3)."
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_INT_TAG = "tag:yaml.org,2002:int"
_MERGE_TAG = "tag:yaml.org,2002:merge"


def _too_many_values(aliased: bool) -> str:
    if aliased:
        return (
            f"the document expands to more than {MAX_NODES} values through its anchors and "
            "aliases (a 'billion laughs' document?); a config has about 60: write them out."
        )
    return f"the document holds more than {MAX_NODES} values; a config has about 60."


def _check_nodes(root: yaml.Node) -> None:
    """Refuse, before any Python object is built, a composed document that expands to more
    than `MAX_NODES` nodes (aliases share their anchor's node, so a "billion laughs" file
    composes small and only explodes when it is constructed or walked), that refers to
    itself, that repeats a key in a mapping or that holds an absurdly long integer."""
    sizes: dict[int, int] = {}  # id(node) -> its expanded size
    path: set[int] = set()  # the nodes being walked (a cycle meets one of them again)
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    aliased = False
    while stack:
        node, children_done = stack.pop()
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        if children_done:
            path.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[id(node)] > MAX_NODES:
                raise _YAMLRefused(_too_many_values(aliased))
            continue
        if id(node) in sizes:
            aliased = True
            continue
        if id(node) in path:
            raise _YAMLRefused(
                f"line {node.start_mark.line + 1}: an alias refers to its own anchor "
                "(a recursive structure); a config cannot hold one."
            )
        if node.tag == _INT_TAG and len(node.value) > _MAX_INT_DIGITS:
            raise _YAMLRefused(
                f"line {node.start_mark.line + 1}: an integer of {len(node.value)} characters; "
                "no config value needs that many."
            )
        if isinstance(node, yaml.MappingNode):
            seen: dict[tuple[str, str], int] = {}
            for key, _ in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE_TAG:
                    line = key.start_mark.line + 1
                    if (key.tag, key.value) in seen:
                        raise _YAMLRefused(
                            f"line {line}: duplicate key {_show(key.value, 80)} (first on "
                            f"line {seen[key.tag, key.value]}); give each key once."
                        )
                    seen[key.tag, key.value] = line
        path.add(id(node))
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(children))


def _yaml_problem(error: yaml.YAMLError) -> str:
    """A PyYAML error on one line: where, what, while doing what."""
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = error.problem or error.context or "invalid"
        context = f" ({error.context})" if error.context and error.problem else ""
        return _cut(f"{where}{what}{context}")
    if isinstance(error, yaml.reader.ReaderError):
        character = error.character
        code = ord(character) if isinstance(character, str) else character
        return _cut(
            f"character {error.position}: unacceptable character #x{code:04x} ({error.reason})"
        )
    return _cut(str(error))


_NOTHING = object()  # a YAML stream without a document (empty, or only comments)


def _parse(text: str) -> Any:
    """The one YAML document in `text` (`_NOTHING` when there is none), refused with
    `_YAMLRefused` (or `yaml.YAMLError`) before any Python object is built when it is too
    deep, too large once expanded, recursive or repeats a key."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return _NOTHING
        _check_nodes(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _override_key(override: str) -> str:
    return override.partition("=")[0].strip()


def _set_text(override: str, limit: int = 100) -> str:
    """`--set override` for an error message: quoted when a shell would need quotes."""
    shown = override if re.fullmatch(r"[^\s'\"]+", override) else repr(override)
    return f"--set {_cut(shown, limit)}"


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `key.path=value` overrides (values parsed as YAML) to a raw config dict."""
    raw = dict(raw or {})
    for override in overrides:
        key, sep, text = override.partition("=")
        parts = [part.strip() for part in key.split(".")]
        if not sep or not all(parts):
            raise ConfigError(
                f"{_set_text(override)}: expected KEY.PATH=VALUE, e.g. train.epochs=5."
            )
        if len(text) > MAX_FILE_BYTES:
            raise ConfigError(
                f"{_set_text(override)}: the value is {len(text)} characters; "
                f"at most {MAX_FILE_BYTES}."
            )
        try:
            value = _parse(text)
        except yaml.YAMLError as error:
            raise ConfigError(
                f"{_set_text(override)}: value is not valid YAML: {_yaml_problem(error)}"
            ) from None
        except _YAMLRefused as error:
            raise ConfigError(f"{_set_text(override)}: value refused: {error}") from None
        value = None if value is _NOTHING else value
        node = raw
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is not None and not isinstance(child, dict):
                prefix = ".".join(parts[: depth + 1])
                raise ConfigError(
                    f"{_set_text(override)}: {prefix} is {_show(child, 60)}, not a mapping, "
                    f"so it has no key {_show(parts[depth + 1], 60)}."
                )
            node[part] = dict(child or {})
            node = node[part]
        node[parts[-1]] = value
    return raw


def _read(path: Path) -> dict:
    """The top-level mapping of the config file `path`: every way the file can fail to be
    one is a one-line ConfigError naming the file."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        size = path.stat().st_size if path.is_file() else 0
        raise ConfigError(
            f"{path} is {f'{size} bytes' if size else f'over {MAX_FILE_BYTES} bytes'}: a config "
            f"file is at most {MAX_FILE_BYTES} bytes (those in configs/ are about 1 KB); is it "
            "the right file?"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ConfigError(
            f"{path} is not UTF-8 text: byte 0x{data[error.start]:02x} at offset {error.start} "
            f"(line {line}); save it as UTF-8."
        ) from None
    try:
        raw = _parse(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {_yaml_problem(error)}") from None
    except _YAMLRefused as error:
        raise ConfigError(f"{path}: {error}") from None
    if raw is _NOTHING or raw is None or raw == {}:
        what = "empty" if not text.strip() else "empty (no settings)"
        raise ConfigError(
            f"{path} is {what}; a config needs at least model and data sections "
            "(see configs/ for examples)."
        )
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: expected a mapping at the top level (model: ..., data: ...), got "
            f"{_show(raw, 60)}."
        )
    return raw


def _blamed(error: ConfigError, raw: dict, overrides: list[str], schema) -> list[str]:
    """The `--set` overrides to blame for `error` (raised by the overridden config): those
    that set a key the failed check read, else, when the file alone is valid, all of them;
    none when the file is to blame."""
    if not overrides:
        return []
    keys = [re.sub(r"\[.*", "", key) for key in getattr(error, "key_paths", ())]
    touching = [
        override
        for override in overrides
        for set_key in [_override_key(override)]
        if any(
            set_key == key or key.startswith(set_key + ".") or set_key.startswith(key + ".")
            for key in keys
        )
    ]
    if touching:
        return touching
    try:
        from_dict(raw, schema)
    except ConfigError:
        return []
    return list(overrides)


def load(
    path: str | Path, overrides: list[str] | None = None, schema: type[Config] = Config
) -> Config:
    """Read, override and validate a YAML config file (a `Config`, or a `TuneFileConfig`).

    Errors name where the bad value came from: the file, or the `--set` override(s) that
    made a valid file invalid."""
    path = Path(path)
    raw = _read(path)
    overrides = list(overrides or [])
    merged = apply_overrides(raw, overrides)
    try:
        return from_dict(merged, schema)
    except ConfigError as error:
        blamed = _blamed(error, raw, overrides, schema)
        if blamed:
            where = " ".join(_set_text(override) for override in blamed)
            raise ConfigError(f"{where}: {error}") from None
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
