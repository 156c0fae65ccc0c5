"""Typed experiment configs: YAML in, validated pydantic models out.

```yaml
model: {name: resnet20, variant: ienet, k: 2}
data: {name: cifar10}
train: {epochs: 400, batch_size: 128, learning_rate: 0.1, weight_decay: 1.0e-4}
iee: {t_min: -2.0, t_max: 1.0}
```

Each section is a frozen pydantic model (`extra="forbid"`): a setting is declared once, with
its type, default and bound, and described by the docstring under it; rules between settings
are the sections' `model_validator`s. `reference()` renders every setting from the JSON schema
(`docs/config.md`). Unknown keys, wrong types and impossible values are `ConfigError`s naming
the key path and where it came from: the file, or the `--set` override (`--set
train.epochs=0: train.epochs: must be > 0, got 0.`). Files are read as UTF-8, at most
`MAX_FILE_BYTES`; empty files, nesting deeper than `MAX_DEPTH` and documents that expand
(through anchors and aliases) to more than `MAX_NODES` values are refused before any Python
object is built. Number fields also take `1e-3`, which YAML 1.1 reads as a string.
"""

from __future__ import annotations

import difflib
import math
import re
import reprlib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import BeforeValidator, Field, Strict, model_validator

from ienet_tf.errors import ConfigError

__all__ = [
    "Config",
    "DataConfig",
    "ExportConfig",
    "IEEConfig",
    "ModelConfig",
    "TrainConfig",
    "TuneConfig",
    "TuneFileConfig",
    "apply_overrides",
    "dump",
    "from_dict",
    "load",
    "reference",
    "to_dict",
    "validate",
]

# The largest model.k (and tune.k). The paper explores K = 1-5; every branch is one more
# binary convolution per layer (one LceBconv2d per branch in the LCE model), so compute,
# parameters and the exported model grow linearly with K: K = 1000 is a typo, not a run.
MAX_K = 16
# What a config file may be: configs/ holds files of about 1 KB with ~60 values, 3 levels deep.
MAX_FILE_BYTES = 1 << 20
MAX_NODES = 10_000  # YAML nodes once anchors/aliases are expanded (a "billion laughs" guard)
MAX_DEPTH = 20
_MAX_INT_DIGITS = 100  # longer integer literals are refused before int() parses them

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple = 3, 6, 6, 6
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 120, 120, 60


def _show(value: Any, limit: int = 200) -> str:
    """`repr(value)`, bounded in time and length, on one line: error messages echo input,
    and input can be a 1 MB string or a deeply shared structure."""
    if isinstance(value, int) and value.bit_length() > 1000:  # repr() refuses > 4300 digits
        return f"<an integer of about {int(value.bit_length() * 0.30103)} digits>"
    return _cut(_REPR.repr(value), limit)


def _cut(text: str, limit: int = 200) -> str:
    """`text` on one line, cut to `limit` characters."""
    text = " ".join(text[: 4 * limit].split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _yaml_number(value: Any) -> Any:
    """1e-3 and 1.0e3 (no dot, or no exponent sign) as numbers: YAML 1.1 reads them as strings."""
    number = r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?"
    if isinstance(value, str) and re.fullmatch(number, value) and math.isfinite(float(value)):
        return float(value)
    return value


# Scalars are strict: 5 is not "5", 2.5 is not an integer, True is not 1.
Int = Annotated[int, Strict()]
Str = Annotated[str, Strict()]
Bool = Annotated[bool, Strict()]
Positive = Annotated[int, Strict(), Field(gt=0)]
Float = Annotated[float, BeforeValidator(_yaml_number), Strict(), Field(allow_inf_nan=False)]
#: Keras' dtype policies a network may train under (`ienet_tf.precision`).
DTypePolicy = Literal["float32", "mixed_float16", "mixed_bfloat16"]
Optimizer = Literal["sgd", "keras_sgd", "adam"]


class _Invalid(ValueError):
    """A rule a section's validator found broken: the `key` at fault (relative to the section),
    the message, and the `related` keys the rule read (`load` blames the `--set` of any)."""

    def __init__(self, key: str, message: str, related: tuple[str, ...] = ()):
        super().__init__(message)
        self.key, self.message, self.related = key, message, related


def _check(condition: bool, key: str, message: str, related: tuple[str, ...] = ()) -> None:
    if not condition:
        raise _Invalid(key, message, related)


def _one_of(key: str, value: Any, allowed: Any, unknown: str = "") -> None:
    allowed, shown = list(allowed), _show(value)
    if unknown:  # what a name names: "unknown model 'x'; available: [...]"
        _check(value in allowed, key, f"unknown {unknown} {shown}; available: {allowed}.")
    _check(value in allowed, key, f"{shown} is not one of {allowed}.")


class Section(pydantic.BaseModel):
    """A config section: frozen, unknown keys refused (with a "did you mean"), null = {}."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_empty(cls, raw: Any) -> Any:
        return {} if raw is None else raw

    def replace(self, **changes: Any) -> Section:
        """A copy with `changes`, validated (`dataclasses.replace` for a section)."""
        return from_dict({**dict(self), **changes}, type(self))


class ModelConfig(Section):
    name: Str = "resnet20"
    """the network (`ienet_tf.models.available()`)"""
    variant: Str = "ienet"
    """a base variant, optionally with +el and/or +ir2net"""
    k: Int | None = Field(None, ge=1)
    """IE-BC branches; null: 2 for iebc/ienet, 1 otherwise"""
    input_shape: tuple[Positive, Positive, Positive] | None = None
    """null: the data set's"""
    recovery_ratio: Int | None = Field(None, ge=1)
    """+ir2net: 1 = the full recovery head, r >= 2 = the Ghost head of ratio r; null: the
    release's ratio for the network (ResNet-20 4, ResNet-18 CIFAR 20, VGG-Small 32, ImageNet
    ResNets 1)"""
    erase_threshold: Float = Field(0.15, ge=0)
    """+ir2net: the restriction erases attention <= this x its mean"""
    attention_norm: Str = "column"
    """+ir2net: "column" (the release) or "map\""""
    compat: Str = "lce"
    """"lce" (deployment) or "release" (the authors' PyTorch networks)"""
    layer: dict[Str, Any] = {}
    """keyword arguments of every IE-BC layer (`ienet_tf.layers.IEBinaryConv2D`) over the
    variant's own, checked by the layer: e.g. `input_quantizer: approx_sign` (an ablation),
    `thresholds_initializer: {class_name: SpreadThresholds, config: {width: 0.5}}` (the branches
    start apart); {}: the variant's layers"""

    @model_validator(mode="after")
    def _builds(self) -> ModelConfig:
        from ienet_tf import ir2net, models  # the allowed values live with the code using them

        _one_of("name", self.name, models.available(), "model")
        _one_of("attention_norm", self.attention_norm, ir2net.ATTENTION_NORMS)
        _one_of("compat", self.compat, models.COMPATS)
        _check(
            self.k is None or self.k <= MAX_K,
            "k",
            f"must be <= {MAX_K} (the paper explores K = 1-5; each branch is one more binary "
            f"convolution per layer), got {self.k}.",
        )
        base, modifiers = self.variant.split("+")[0], ["+" + m for m in models.MODIFIERS]
        allowed = f"{sorted(models.VARIANTS)}, optionally with modifiers {modifiers}"
        message = f"unknown variant {_show(base)}; allowed: {allowed}."
        _check(base in models.VARIANTS, "variant", message)
        try:
            models.parse_variant(self.variant)
        except ValueError as error:
            raise _Invalid("variant", _cut(str(error))) from None
        try:  # the layer checks its options; a LayerOptionError names the one at fault
            models.get_variant(self.variant, self.k, layer_options=self.layer)
        except models.LayerOptionError as error:
            key = f"layer.{error.option}" if error.option else "layer"
            raise _Invalid(key, _cut(str(error)), ("variant", "k")) from None
        except ValueError as error:
            raise _Invalid("k", _cut(str(error)), ("variant",)) from None
        return self


class DataConfig(Section):
    name: Str = "cifar10"
    """the data set (`ienet_tf.data.available()`)"""
    data_dir: Str | None = None
    """where the data is (IDX files or tfds's)"""
    manual_dir: Str | None = None
    """ImageNet's manually downloaded archives"""
    subset: Positive | None = None
    """keep the first N training examples (CPU-scale runs)"""
    test_subset: Positive | None = None
    """keep the first N test examples"""
    validation_examples: Positive | None = None
    """hold out the first N training examples as the validation split: the per-epoch monitor
    and best.keras use it, training the examples after it; null: no validation split, the test
    split is monitored (what the papers' releases do)"""
    download: Bool = False
    """let tensorflow-datasets download CIFAR-10 / Fashion-MNIST"""

    @model_validator(mode="after")
    def _held_out_fits(self) -> DataConfig:
        from ienet_tf import data

        _one_of("name", self.name, data.available(), "data set")
        held, subset = self.validation_examples, self.subset
        size = data.info(self.name).train_size if held else None
        _check(
            size is None or held + (subset or 1) <= size,
            "validation_examples",
            f"{held} held-out examples{f' + data.subset {subset}' if subset else ''} exceed the "
            f"{size} examples of {self.name}'s training split; lower it"
            + (" or data.subset." if subset else "."),
            ("subset", "name"),
        )
        return self


class TrainConfig(Section):
    epochs: Positive = 400
    """training epochs"""
    batch_size: Positive = 128
    """examples per step"""
    optimizer: Optimizer = "sgd"
    """sgd (PyTorch-form momentum, the release's), keras_sgd or adam"""
    learning_rate: Float = Field(0.1, gt=0)
    """the base learning rate"""
    momentum: Float = Field(0.9, ge=0, lt=1)
    """SGD momentum"""
    weight_decay: Float = Field(1e-4, ge=0)
    """coupled (PyTorch-style) weight decay"""
    weight_decay_on: Literal["all", "conv_and_fc", "kernels_and_alpha"] = "all"
    """"all" parameters (CIFAR), "conv_and_fc" (the ImageNet release: conv kernels and alpha but
    not the 1x1 downsampling projections, and the classifier's kernel and bias) or
    "kernels_and_alpha" (every conv/dense kernel and alpha; ienet-tf before 0.2)"""
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    """after the warm-up"""
    warmup_epochs: Int = 0
    """linear warm-up epochs"""
    lr_per_step: Bool = False
    """set the learning rate before every step (warm-up and cosine over steps) instead of once
    per epoch (the release's); pair it with iee.per_step on short budgets"""
    clip_norm: Float | None = Field(None, gt=0)
    """clip the gradient to this global L2 norm before each step (Keras' global_clipnorm); null:
    no clipping (the release's)"""
    bn_reestimation_batches: Int = Field(0, ge=0)
    """after the last epoch, set every BatchNorm's moving statistics of the final model to the
    mean of its batch statistics over this many un-augmented training batches
    (train.reestimate_batch_norm) before it is tested and saved; best.keras keeps the statistics
    it was chosen with (`ienet tune` validates every epoch of a trial with statistics so
    re-estimated: N extra forward passes per epoch); 0: the moving statistics of training (the
    release's)"""
    seed: Int = 0
    """the random seed (initialisation, data order, augmentation)"""
    strategy: Literal["default", "mirrored", "multi_worker", "tpu"] = "default"
    """the tf.distribute strategy"""
    log_binary_stats: Bool = False
    """BinaryStatsLogger: q, r, entropy and flip ratio per epoch in TensorBoard"""
    mixed_precision: DTypePolicy = "float32"
    """the Keras dtype policy the network trains (and tunes, resumes, evaluates) under:
    mixed_float16 / mixed_bfloat16 compute in 16 bits with float32 variables and logits (float16
    with Keras' loss scaling); exports are float32"""

    @model_validator(mode="after")
    def _warmup_within_epochs(self) -> TrainConfig:
        message = f"must be in [0, epochs), got {self.warmup_epochs}."
        _check(0 <= self.warmup_epochs < self.epochs, "warmup_epochs", message, ("epochs",))
        return self


class IEEConfig(Section):
    t_min: Float = -2.0
    """log10(q) at the start of the IEE schedule"""
    t_max: Float = 1.0
    """log10(q) the schedule approaches at the end"""
    per_step: Bool = False
    """update q before every step instead of before every epoch (the release's)"""

    @model_validator(mode="after")
    def _increasing(self) -> IEEConfig:
        message = f"must be smaller than iee.t_max, got {self.t_min} >= {self.t_max}."
        _check(self.t_min < self.t_max, "t_min", message, ("t_max",))
        return self


class ExportConfig(Section):
    int8: Bool = False
    """after the float epochs, fine-tune the int8 QAT model (model_int8.keras) that `ienet export
    --int8` converts (binary + int8)"""
    int8_epochs: Int = Field(2, ge=0)
    """QAT fine-tune epochs (0: calibration only)"""
    int8_optimizer: Optimizer = "adam"
    """QAT fine-tune optimizer: adam (default: BatchNorm folded into the binary convs' scales
    gives those ~100x the others' gradients, which SGD cannot follow), sgd or keras_sgd"""
    int8_learning_rate: Float | None = Field(None, gt=0)
    """QAT learning rate, cosine to 0 over the fine-tune's steps; null: 1e-5 with adam,
    train.learning_rate / 100 with SGD"""
    int8_calibration_batches: Positive = 8
    """training batches that calibrate the int8 ranges"""
    int8_io: Bool = False
    """`ienet export --int8` writes int8 input/output tensors"""


class Config(Section):
    """A training config: what `ienet train` reads."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    iee: IEEConfig = Field(default_factory=IEEConfig)
    # How the run is exported; not part of the training (a finished run takes a new one).
    export: ExportConfig = Field(default_factory=ExportConfig)


class TuneConfig(Section):
    """The keras-tuner search of `ienet tune`. T_min/T_max are searched as a centre and a
    width (`t_min = c - w/2`, `t_max = c + w/2`, w > 0), so every sampled pair is valid."""

    tuner: Literal["random", "bayesian", "hyperband"] = "random"
    """random | bayesian | hyperband"""
    max_trials: Positive = 10
    """random/bayesian; hyperband sizes itself from max_epochs"""
    executions_per_trial: Positive = 1
    """trainings per trial"""
    objective: Literal["val_accuracy", "val_loss"] = "val_accuracy"
    """what the search optimises"""
    k: tuple[Int, Int] = (1, 5)
    """the range of K"""
    t_center: tuple[Float, Float] = (-1.5, 0.5)
    """the range of (t_min + t_max) / 2"""
    t_width: tuple[Float, Float] = (1.0, 4.0)
    """the range of t_max - t_min"""
    learning_rate: tuple[Float, Float] | None = None
    """the learning rate's range (log-uniform); null: not searched"""
    validation_examples: Positive = 300
    """held out from the training split for the objective, never the test set (used when
    data.validation_examples is null)"""
    seed: Int = 0
    """the search's seed"""

    @model_validator(mode="after")
    def _ranges(self) -> TuneConfig:
        for key in ("k", "t_center", "t_width", "learning_rate"):
            low, high = getattr(self, key) or (0, 0)
            _check(low <= high, key, f"expected [low, high] with low <= high, got {[low, high]}.")
        k, width, rate = list(self.k), list(self.t_width), self.learning_rate
        _check(k[0] >= 1, "k", f"K must be >= 1, got {k}.")
        _check(k[1] <= MAX_K, "k", f"K must be <= {MAX_K}, got {k}.")
        _check(width[0] > 0, "t_width", f"widths must be > 0 so that t_min < t_max, got {width}.")
        if rate:
            _check(rate[0] > 0, "learning_rate", f"must be > 0 (log-uniform), got {list(rate)}.")
        return self


class TuneFileConfig(Config):
    """A training config plus the `tune` section: what `ienet tune` reads."""

    tune: TuneConfig = Field(default_factory=TuneConfig)

    @model_validator(mode="after")
    def _k_range_needs_branches(self) -> TuneFileConfig:
        from ienet_tf import models

        branches = self.tune.k[1] <= 1 or models.get_variant(self.model.variant).multi_branch
        message = "K > 1 needs a multi-branch model.variant ('iebc' or 'ienet', optionally with "
        message += f"modifiers), got {_show(self.model.variant)}."
        _check(branches, "tune.k", message, ("model.variant",))
        return self


class _Refused(Exception):
    """A YAML document refused while it is composed: too deep, too large, recursive."""


class _Loader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses, while it composes the node graph (before any Python
    object is built), nesting deeper than `MAX_DEPTH` and more than `MAX_NODES` values once
    aliases are expanded (a "billion laughs" file composes small: an alias shares its anchor's
    node), an alias inside its own anchor, a repeated key and an absurdly long integer. Every
    node's expanded size and height are kept, so an alias adds its anchor's without a walk."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = self._size = 0  # the nesting here; the values so far, aliases expanded
        self._extent: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded size, height)
        self._aliased = False

    def compose_node(self, parent, index):
        line, alias = self.peek_event().start_mark.line + 1, self.check_event(yaml.AliasEvent)
        depth, before = self._depth + 1, self._size
        if not alias:  # refused before its children are composed (the composer recurses)
            self._grow(1, depth, line)
        self._depth = depth
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth = depth - 1
        if alias:
            if id(node) not in self._extent:  # its anchor is still being composed
                raise _Refused(
                    f"line {node.start_mark.line + 1}: an alias refers to its own anchor (a "
                    "recursive structure); a config cannot hold one."
                )
            self._aliased = True
            size, height = self._extent[id(node)]
            self._grow(size, depth + height - 1, line)
            return node
        pairs = node.value if isinstance(node, yaml.MappingNode) else []
        children = node.value if isinstance(node, yaml.SequenceNode) else sum(pairs, ())
        height = 1 + max((self._extent[id(child)][1] for child in children), default=0)
        self._extent[id(node)] = (self._size - before, height)
        if node.tag == "tag:yaml.org,2002:int" and len(node.value) > _MAX_INT_DIGITS:
            raise _Refused(
                f"line {line}: an integer of {len(node.value)} characters; no config value "
                "needs that many."
            )
        first: dict[tuple[str, str], int] = {}
        for key, _ in pairs:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                if (key.tag, key.value) in first:
                    raise _Refused(
                        f"line {key.start_mark.line + 1}: duplicate key {_show(key.value, 80)} "
                        f"(first on line {first[key.tag, key.value]}); give each key once."
                    )
                first[key.tag, key.value] = key.start_mark.line + 1
        return node

    def _grow(self, size: int, deepest: int, line: int) -> None:
        self._size += size
        if self._size > MAX_NODES and self._aliased:
            raise _Refused(
                f"the document expands to more than {MAX_NODES} values through its anchors and "
                "aliases (a 'billion laughs' document?); a config has about 60: write them out."
            )
        if self._size > MAX_NODES:
            raise _Refused(
                f"the document holds more than {MAX_NODES} values; a config has about 60."
            )
        if deepest > MAX_DEPTH:
            raise _Refused(
                f"line {line}: nested more than {MAX_DEPTH} levels deep (a config has 3)."
            )


def _yaml_problem(error: yaml.YAMLError) -> str:
    """A PyYAML error on one line: where, what, while doing what."""
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = error.problem or error.context or "invalid"
        context = f" ({error.context})" if error.context and error.problem else ""
        return _cut(f"{where}{what}{context}")
    if isinstance(error, yaml.reader.ReaderError):
        code = error.character
        code = ord(code) if isinstance(code, str) else code
        return f"character {error.position}: unacceptable character #x{code:04x} ({error.reason})"
    return _cut(str(error))


_NOTHING = object()  # a YAML stream without a document (empty, or only comments)


def _parse(text: str, invalid: str, refused: str) -> Any:
    """The one YAML document in `text` (`_NOTHING` when there is none). Text that is not YAML
    is a ConfigError starting `invalid`, a document `_Loader` refuses one starting `refused`."""
    try:
        loader = _Loader(text)  # a character YAML refuses is a ReaderError here
        try:
            node = loader.get_single_node()
            return _NOTHING if node is None else loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as error:
        raise ConfigError(f"{invalid}: {_yaml_problem(error)}") from None
    except _Refused as error:
        raise ConfigError(f"{refused}: {error}") from None


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
        where = _set_text(override)
        if not sep or not all(parts):
            raise ConfigError(f"{where}: expected KEY.PATH=VALUE, e.g. train.epochs=5.")
        if len(text) > MAX_FILE_BYTES:
            raise ConfigError(
                f"{where}: the value is {len(text)} characters; at most {MAX_FILE_BYTES}."
            )
        value = _parse(text, f"{where}: value is not valid YAML", f"{where}: value refused")
        node = raw
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is not None and not isinstance(child, dict):
                raise ConfigError(
                    f"{where}: {'.'.join(parts[: depth + 1])} is {_show(child, 60)}, not a "
                    f"mapping, so it has no key {_show(parts[depth + 1], 60)}."
                )
            node[part] = dict(child or {})
            node = node[part]
        node[parts[-1]] = None if value is _NOTHING else value
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
    raw = _parse(text, f"{path} is not valid YAML", str(path))
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


#: Where a wheel installs the repository's configs/ (setup.cfg's data_files).
_INSTALLED_CONFIGS = "share/ienet-tf/configs"


def bundled() -> dict[str, Path]:
    """The configs that ship with ienet-tf, by name (`"cifar10_resnet20_ienet"`): the
    checkout's `configs/` when the package runs from one, else those the wheel installed."""
    checkout = Path(__file__).resolve().parent.parent / "configs"
    if checkout.is_dir():
        return {path.stem: path for path in sorted(checkout.glob("*.yaml"))}
    import importlib.metadata

    try:
        files = importlib.metadata.distribution("ienet-tf").files or []
    except importlib.metadata.PackageNotFoundError:
        return {}
    return {
        Path(file.name).stem: Path(file.locate())
        for file in sorted(files, key=str)
        if file.name.endswith(".yaml") and f"/{_INSTALLED_CONFIGS}/" in f"/{file.as_posix()}"
    }


def resolve(path: str | Path) -> Path:
    """`path` itself when it exists or names a folder; otherwise a bundled config's name
    (with or without `.yaml`), so `--config cifar10_resnet20_ienet` works anywhere."""
    path = Path(path)
    if path.exists() or len(path.parts) != 1:
        return path
    configs = bundled()
    name = path.stem if path.suffix == ".yaml" else path.name
    if name in configs:
        return configs[name]
    close = difflib.get_close_matches(name, configs, n=1)
    hint = f"; did you mean the bundled {close[0]!r}?" if close else ""
    raise ConfigError(
        f"config file not found: {path}, and no bundled config has that name{hint} "
        "(`ienet_tf.config.bundled()` lists them)"
    )


def load(
    path: str | Path, overrides: list[str] | None = None, schema: type[Config] = Config
) -> Config:
    """Read, override and validate a YAML config file (a `Config`, or a `TuneFileConfig`).
    `path` may also name a bundled config (`resolve`).

    Errors name where the bad value came from: the `--set` overrides that set a key the
    failed check read, else all of them when the file alone is valid, else the file."""
    path = resolve(path)
    raw = _read(path)
    overrides = list(overrides or [])
    merged = apply_overrides(raw, overrides)
    try:
        return from_dict(merged, schema)
    except ConfigError as error:
        keys = [re.sub(r"\[.*", "", key) + "." for key in error.key_paths]
        blamed = [
            override
            for override in overrides
            for key in [override.partition("=")[0].strip() + "."]
            if any(key.startswith(other) or other.startswith(key) for other in keys)
        ]
        if not blamed and overrides:
            try:
                from_dict(raw, schema)
                blamed = overrides
            except ConfigError:
                pass
        where = " ".join(map(_set_text, blamed)) or path
        raise ConfigError(f"{where}: {error}") from None


def _describe(tp: Any) -> str:
    """A type as an error message says it: "an integer", "a list of 2 numbers or null"."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        return _describe(args[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(map(_describe, args))
    if origin is tuple:
        return f"a list of {len(args)} {_describe(args[0]).split()[-1]}s"
    if origin is Literal:
        return f"one of {list(args)}"
    names = {int: "an integer", float: "a number", str: "a string", bool: "a boolean"}
    return "null" if tp is type(None) else names.get(tp, "a mapping")


def _type_at(tp: Any, loc: list) -> Any:
    """The declared type at `loc` (a pydantic error's) in the section `tp`, or None."""
    for part in loc:
        if isinstance(part, int):  # an item of a tuple (all of the same type)
            tuples = [a for a in (tp, *typing.get_args(tp)) if typing.get_origin(a) is tuple]
            tp = typing.get_args(tuples[0])[0] if tuples else None
        else:
            field = getattr(tp, "model_fields", {}).get(part)
            tp = field and field.annotation
    return tp


_UNKNOWN_KEY = ("extra_forbidden", "invalid_key")  # invalid_key: not a string
_BOUNDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}  # as pydantic's errors name them


def _config_error(error: Any, schema: type[Section]) -> ConfigError:
    """One pydantic error as a one-line ConfigError naming the key path; its `key_paths` also
    name the keys the broken rule read (`load` blames the `--set` that set any of them)."""
    loc, kind, value, ctx = list(error["loc"]), error["type"], error["input"], error.get("ctx", {})
    if isinstance(cause := ctx.get("error"), _Invalid):  # its keys are relative to the section
        names = [part for part in loc if isinstance(part, str)]
        keys = [".".join([*names, key]) for key in (cause.key, *cause.related)]
        message = cause.message
    else:
        if kind == "missing" and isinstance(loc[-1], int):
            loc.pop()  # a list of the wrong length: the whole setting is at fault
        if kind in _UNKNOWN_KEY:
            loc[-1] = _cut(str(loc[-1]), 80)
            fields = sorted(_type_at(schema, loc[:-1]).model_fields)
            close = difflib.get_close_matches(loc[-1], fields, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            message = f"unknown key; allowed: {fields}{hint}"
        elif len(ctx) == 1 and (bound := next(iter(ctx))) in _BOUNDS:
            message = f"must be {_BOUNDS[bound]} {ctx[bound]}, got {value}."
        elif (tp := _type_at(schema, loc)) is None:
            message = f"{error['msg']}, got {_show(value)}."
        elif kind == "literal_error":
            message = f"{_show(value)} is not {_describe(tp)}."
        else:
            message = f"expected {_describe(tp)}, got {_show(value)}."
        path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
        keys = [path.lstrip(".") or "config"]
    config_error = ConfigError(f"{keys[0]}: {message}")
    config_error.key_paths = keys
    return config_error


def from_dict(raw: Any, schema: type[Config] = Config) -> Config:
    """Validate a plain mapping (a parsed file) into `schema`."""
    try:
        return schema.model_validate({} if raw is None else raw)
    except pydantic.ValidationError as error:  # an unknown key first: it may explain the rest
        first = min(error.errors(include_url=False), key=lambda e: e["type"] not in _UNKNOWN_KEY)
        raise _config_error(first, schema) from None


def validate(config: Config) -> Config:
    """`config` validated again (one built in code with `model_copy(update=...)`)."""
    return from_dict(config.model_dump(), type(config))


def to_dict(config: Config) -> dict:
    """The config as plain YAML-able values (tuples as lists)."""
    return config.model_dump(mode="json")


def dump(config: Config) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def reference(schema: type[Config] = TuneFileConfig) -> str:
    """Every setting of `schema` as a markdown table (key, type, default, description),
    rendered from its JSON schema: `docs/config.md` is `reference()`."""
    document = schema.model_json_schema()
    bounds = {"exclusiveMinimum": ">", "minimum": ">=", "exclusiveMaximum": "<", "maximum": "<="}

    def kind(prop: dict) -> str:
        if "enum" in prop or "const" in prop:
            return " \\| ".join(f"`{v}`" for v in prop.get("enum", [prop.get("const")]))
        if "anyOf" in prop:
            return " or ".join(kind(option) for option in prop["anyOf"])
        if prop.get("type") == "array":
            items = prop.get("prefixItems") or [prop.get("items", {})]
            return f"[{', '.join(kind(item) for item in items)}]"
        return prop.get("type", "?")

    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    for section, ref in document["properties"].items():
        definition = document["$defs"][ref["$ref"].rsplit("/", 1)[-1]]
        for key, prop in definition["properties"].items():
            limits = [
                f"{symbol} {option[bound]}"
                for option in (prop, *prop.get("anyOf", ()))
                for bound, symbol in bounds.items()
                if bound in option
            ]
            default = yaml.safe_dump(prop.get("default"), default_flow_style=True)
            default = default.strip().removesuffix("...").strip()
            described = " ".join(prop.get("description", "").split())
            described += f" ({', '.join(limits)})" if limits else ""
            described = described.replace("|", "\\|")
            rows.append(f"| `{section}.{key}` | {kind(prop)} | `{default}` | {described} |")
    return "\n".join(rows) + "\n"
