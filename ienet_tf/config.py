"""Typed experiment configs: YAML in, validated pydantic models out.

```yaml
model: {name: resnet20, variant: ienet, k: 2}
data: {name: cifar10}
train: {epochs: 400, batch_size: 128, learning_rate: 0.1, weight_decay: 1.0e-4}
iee: {t_min: -2.0, t_max: 1.0}
```

Each section is a frozen pydantic model (`extra="forbid"`): a setting is declared once, with
its type, default, bound and description (`Field`), and rules between settings are the
sections' `model_validator`s. `reference()` renders every setting from the JSON schema
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
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import BeforeValidator, Field, Strict, field_validator, model_validator

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
_MAX_SHOWN = 200  # the most characters of a value that an error message echoes


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


# A number as YAML 1.2 writes it (1e-3, 1.0e3, .5, 2), for float fields given a string.
_FLOAT_TEXT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")


def _yaml_number(value: Any) -> Any:
    # YAML 1.1 reads 1e-3 and 1.0e3 (no dot, or no exponent sign) as strings.
    if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value) and math.isfinite(float(value)):
        return float(value)
    return value


# Scalars are strict: 5 is not "5", 2.5 is not an integer, True is not 1.
Int = Annotated[int, Strict()]
Str = Annotated[str, Strict()]
Bool = Annotated[bool, Strict()]
Size = Annotated[int, Strict(), Field(gt=0)]
Float = Annotated[float, BeforeValidator(_yaml_number), Strict(), Field(allow_inf_nan=False)]


class _Invalid(ValueError):
    """A rule a section's validator found broken: `key` (relative to the section), the
    message, and the `related` keys the rule read (so that `load` can tell which `--set`
    override is to blame)."""

    def __init__(self, key: str, message: str, related: Iterable[str] = ()):
        super().__init__(message)
        self.key, self.message, self.related = key, message, tuple(related)


def _check(condition: bool, key: str, message: str, related: Iterable[str] = ()) -> None:
    if not condition:
        raise _Invalid(key, message, related)


def _one_of(
    value: Any, allowed: Iterable[Any], message: str = "{value} is not one of {allowed}."
) -> Any:
    allowed = list(allowed)
    _check(value in allowed, "", message.format(value=_show(value), allowed=allowed))
    return value


class Section(pydantic.BaseModel):
    """A config section: frozen, unknown keys refused with a "did you mean", null = {}."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, validate_default=False)

    @model_validator(mode="before")
    @classmethod
    def _mapping_of_known_keys(cls, raw: Any) -> Any:
        if raw is None:
            return {}
        if isinstance(raw, pydantic.BaseModel):
            return raw
        _check(isinstance(raw, dict), "", f"expected a mapping, got {_show(raw)}.")
        fields = sorted(cls.model_fields)
        unknown = sorted(set(raw) - set(fields), key=lambda k: (not isinstance(k, str), str(k)))
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(key, fields, n=1) if isinstance(key, str) else []
            hint = f"; did you mean {close[0]!r}?" if close else "."
            name = _cut(key, 80) if isinstance(key, str) else _show(key, 80)
            raise _Invalid(name, f"unknown key; allowed: {fields}{hint}")
        return raw

    def replace(self, **changes: Any) -> Section:
        """A copy with `changes`, validated (`dataclasses.replace` for a section)."""
        return from_dict({**dict(self), **changes}, type(self))


class ModelConfig(Section):
    name: Str = Field("resnet20", description="the network (`ienet_tf.models.available()`)")
    variant: Str = Field("ienet", description="a base variant, optionally with +el and/or +ir2net")
    k: Int | None = Field(
        None, ge=1, description="IE-BC branches; null: 2 for iebc/ienet, 1 otherwise"
    )
    input_shape: tuple[Size, Size, Size] | None = Field(None, description="null: the data set's")
    recovery_ratio: Int | None = Field(
        None,
        ge=1,
        description="+ir2net: 1 = the full recovery head, r >= 2 = the Ghost head of ratio r; "
        "null: the release's ratio for the network (ResNet-20 4, ResNet-18 CIFAR 20, "
        "VGG-Small 32, ImageNet ResNets 1)",
    )
    erase_threshold: Float = Field(
        0.15, ge=0, description="+ir2net: the restriction erases attention <= this x its mean"
    )
    attention_norm: Str = Field("column", description='+ir2net: "column" (the release) or "map"')
    compat: Str = Field(
        "lce", description='"lce" (deployment) or "release" (the authors\' PyTorch networks)'
    )
    layer: dict[Str, Any] = Field(
        {},
        description="keyword arguments of every IE-BC layer (`ienet_tf.layers.IEBinaryConv2D`) "
        "over the variant's own, checked by the layer: e.g. `input_quantizer: "
        "approx_sign` (an ablation), `thresholds_initializer: {class_name: SpreadThresholds, "
        "config: {width: 0.5}}` (the branches start apart); {}: the variant's layers",
    )

    @field_validator("name")
    @classmethod
    def _known_model(cls, name: str) -> str:
        from ienet_tf import models

        return _one_of(name, models.available(), "unknown model {value}; available: {allowed}.")

    @field_validator("k")
    @classmethod
    def _bounded_k(cls, k: int | None) -> int | None:
        _check(
            k is None or k <= MAX_K,
            "",
            f"must be <= {MAX_K} (the paper explores K = 1-5; each branch is one more binary "
            f"convolution per layer), got {k}.",
        )
        return k

    @field_validator("attention_norm", "compat")
    @classmethod
    def _known_option(cls, value: str, info: pydantic.ValidationInfo) -> str:
        # The allowed values live with the code that uses them.
        from ienet_tf import ir2net, models

        allowed = {"attention_norm": ir2net.ATTENTION_NORMS, "compat": models.COMPATS}
        return _one_of(value, allowed[info.field_name])

    @model_validator(mode="after")
    def _variant_builds(self) -> ModelConfig:
        from ienet_tf import models

        base = self.variant.split("+")[0]
        _check(
            base in models.VARIANTS,
            "variant",
            f"unknown variant {_show(base)}; allowed: {sorted(models.VARIANTS)}, optionally "
            f"with modifiers {['+' + modifier for modifier in models.MODIFIERS]}.",
        )
        try:
            models.parse_variant(self.variant)
        except ValueError as error:
            raise _Invalid("variant", _cut(str(error))) from None
        try:
            models.get_variant(self.variant, self.k)
        except ValueError as error:
            raise _Invalid("k", _cut(str(error)), ("variant",)) from None
        try:  # the layer checks its options; the error names the one at fault
            models.get_variant(self.variant, self.k, layer_options=self.layer)
        except models.LayerOptionError as error:
            key = "layer" if error.option is None else f"layer.{error.option}"
            raise _Invalid(key, _cut(str(error)), ("variant", "k")) from None
        return self


class DataConfig(Section):
    name: Str = Field("cifar10", description="the data set (`ienet_tf.data.available()`)")
    data_dir: Str | None = Field(None, description="where the data is (IDX files or tfds's)")
    manual_dir: Str | None = Field(None, description="ImageNet's manually downloaded archives")
    subset: Int | None = Field(
        None, gt=0, description="keep the first N training examples (CPU-scale runs)"
    )
    test_subset: Int | None = Field(None, gt=0, description="keep the first N test examples")
    validation_examples: Int | None = Field(
        None,
        gt=0,
        description="hold out the first N training examples as the validation split: the "
        "per-epoch monitor and best.keras use it, training the examples after it; null: no "
        "validation split, the test split is monitored (what the papers' releases do)",
    )
    download: Bool = Field(
        False, description="let tensorflow-datasets download CIFAR-10 / Fashion-MNIST"
    )

    @field_validator("name")
    @classmethod
    def _known_data(cls, name: str) -> str:
        from ienet_tf import data

        return _one_of(name, data.available(), "unknown data set {value}; available: {allowed}.")

    @model_validator(mode="after")
    def _held_out_fits(self) -> DataConfig:
        from ienet_tf import data

        if self.validation_examples is not None:
            train_size = data.info(self.name).train_size
            needed = self.validation_examples + (self.subset or 1)
            _check(
                train_size is None or needed <= train_size,
                "validation_examples",
                f"{self.validation_examples} held-out examples"
                + (f" + data.subset {self.subset}" if self.subset else "")
                + f" exceed the {train_size} examples of {self.name}'s training split; lower it"
                + (" or data.subset." if self.subset else "."),
                related=("subset", "name"),
            )
        return self


#: Keras' dtype policies a network may train under (`ienet_tf.precision`).
DTypePolicy = Literal["float32", "mixed_float16", "mixed_bfloat16"]


class TrainConfig(Section):
    epochs: Int = Field(400, gt=0, description="training epochs")
    batch_size: Int = Field(128, gt=0, description="examples per step")
    optimizer: Literal["sgd", "keras_sgd", "adam"] = Field(
        "sgd", description="sgd (PyTorch-form momentum, the release's), keras_sgd or adam"
    )
    learning_rate: Float = Field(0.1, gt=0, description="the base learning rate")
    momentum: Float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    weight_decay: Float = Field(1e-4, ge=0, description="coupled (PyTorch-style) weight decay")
    weight_decay_on: Literal["all", "conv_and_fc", "kernels_and_alpha"] = Field(
        "all",
        description='"all" parameters (CIFAR), "conv_and_fc" (the ImageNet release: conv '
        "kernels and alpha but not the 1x1 downsampling projections, and the classifier's "
        'kernel and bias) or "kernels_and_alpha" (every conv/dense kernel and alpha; ienet-tf '
        "before 0.2)",
    )
    lr_schedule: Literal["cosine", "constant"] = Field("cosine", description="after the warm-up")
    warmup_epochs: Int = Field(0, description="linear warm-up epochs")
    lr_per_step: Bool = Field(
        False,
        description="set the learning rate before every step (warm-up and cosine over steps) "
        "instead of once per epoch (the release's); pair it with iee.per_step on short budgets",
    )
    clip_norm: Float | None = Field(
        None,
        gt=0,
        description="clip the gradient to this global L2 norm before each step (Keras' "
        "global_clipnorm); null: no clipping (the release's)",
    )
    bn_reestimation_batches: Int = Field(
        0,
        ge=0,
        description="after the last epoch, set every BatchNorm's moving statistics of the final "
        "model to the mean of its batch statistics over this many un-augmented training "
        "batches (train.reestimate_batch_norm) before it is tested and saved; best.keras keeps "
        "the statistics it was chosen with (`ienet tune` validates every epoch of a trial with "
        "statistics so re-estimated: N extra forward passes per epoch); 0: the moving "
        "statistics of training (the release's)",
    )
    seed: Int = Field(0, description="the random seed (initialisation, data order, augmentation)")
    strategy: Literal["default", "mirrored", "multi_worker", "tpu"] = Field(
        "default", description="the tf.distribute strategy"
    )
    log_binary_stats: Bool = Field(
        False,
        description="BinaryStatsLogger: q, r, entropy and flip ratio per epoch in TensorBoard",
    )
    mixed_precision: DTypePolicy = Field(
        "float32",
        description="the Keras dtype policy the network trains (and tunes, resumes, "
        "evaluates) under: mixed_float16 / mixed_bfloat16 compute in 16 bits with float32 "
        "variables and logits (float16 with Keras' loss scaling); exports are float32",
    )

    @model_validator(mode="after")
    def _warmup_within_epochs(self) -> TrainConfig:
        _check(
            0 <= self.warmup_epochs < self.epochs,
            "warmup_epochs",
            f"must be in [0, epochs), got {self.warmup_epochs}.",
            related=("epochs",),
        )
        return self


class IEEConfig(Section):
    t_min: Float = Field(-2.0, description="log10(q) at the start of the IEE schedule")
    t_max: Float = Field(1.0, description="log10(q) the schedule approaches at the end")
    per_step: Bool = Field(
        False,
        description="update q before every step instead of before every epoch (the release's)",
    )

    @model_validator(mode="after")
    def _increasing(self) -> IEEConfig:
        _check(
            self.t_min < self.t_max,
            "t_min",
            f"must be smaller than iee.t_max, got {self.t_min} >= {self.t_max}.",
            related=("t_max",),
        )
        return self


class ExportConfig(Section):
    int8: Bool = Field(
        False,
        description="after the float epochs, fine-tune the int8 QAT model (model_int8.keras) "
        "that `ienet export --int8` converts (binary + int8)",
    )
    int8_epochs: Int = Field(2, ge=0, description="QAT fine-tune epochs (0: calibration only)")
    int8_optimizer: Literal["sgd", "keras_sgd", "adam"] = Field(
        "adam",
        description="QAT fine-tune optimizer: adam (default: BatchNorm folded into the binary "
        "convs' scales gives those ~100x the others' gradients, which SGD cannot follow), sgd "
        "or keras_sgd",
    )
    int8_learning_rate: Float | None = Field(
        None,
        gt=0,
        description="QAT learning rate, cosine to 0 over the fine-tune's steps; null: 1e-5 with "
        "adam, train.learning_rate / 100 with SGD",
    )
    int8_calibration_batches: Int = Field(
        8, gt=0, description="training batches that calibrate the int8 ranges"
    )
    int8_io: Bool = Field(
        False, description="`ienet export --int8` writes int8 input/output tensors"
    )


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

    tuner: Literal["random", "bayesian", "hyperband"] = Field(
        "random", description="random | bayesian | hyperband"
    )
    max_trials: Int = Field(
        10, gt=0, description="random/bayesian; hyperband sizes itself from max_epochs"
    )
    executions_per_trial: Int = Field(1, gt=0, description="trainings per trial")
    objective: Literal["val_accuracy", "val_loss"] = Field(
        "val_accuracy", description="what the search optimises"
    )
    k: tuple[Int, Int] = Field((1, 5), description="the range of K")
    t_center: tuple[Float, Float] = Field(
        (-1.5, 0.5), description="the range of (t_min + t_max) / 2"
    )
    t_width: tuple[Float, Float] = Field((1.0, 4.0), description="the range of t_max - t_min")
    learning_rate: tuple[Float, Float] | None = Field(
        None, description="the learning rate's range (log-uniform); null: not searched"
    )
    validation_examples: Int = Field(
        300,
        gt=0,
        description="held out from the training split for the objective, never the test set "
        "(used when data.validation_examples is null)",
    )
    seed: Int = Field(0, description="the search's seed")

    @model_validator(mode="after")
    def _ranges(self) -> TuneConfig:
        for key in ("k", "t_center", "t_width", "learning_rate"):
            bounds = getattr(self, key)
            if bounds is not None:
                _check(
                    bounds[0] <= bounds[1],
                    key,
                    f"expected [low, high] with low <= high, got {list(bounds)}.",
                )
        _check(self.k[0] >= 1, "k", f"K must be >= 1, got {list(self.k)}.")
        _check(self.k[1] <= MAX_K, "k", f"K must be <= {MAX_K}, got {list(self.k)}.")
        _check(
            self.t_width[0] > 0,
            "t_width",
            f"widths must be > 0 so that t_min < t_max, got {list(self.t_width)}.",
        )
        if self.learning_rate is not None:
            _check(
                self.learning_rate[0] > 0,
                "learning_rate",
                f"must be > 0 (log-uniform), got {list(self.learning_rate)}.",
            )
        return self


class TuneFileConfig(Config):
    """A training config plus the `tune` section: what `ienet tune` reads."""

    tune: TuneConfig = Field(default_factory=TuneConfig)

    @model_validator(mode="after")
    def _k_range_needs_branches(self) -> TuneFileConfig:
        from ienet_tf import models

        if self.tune.k[1] > 1:
            _check(
                models.get_variant(self.model.variant).multi_branch,
                "tune.k",
                "K > 1 needs a multi-branch model.variant ('iebc' or 'ienet', optionally with "
                f"modifiers), got {_show(self.model.variant)}.",
                related=("model.variant",),
            )
        return self


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

    Errors name where the bad value came from: the file, or the `--set` override(s) that
    made a valid file invalid."""
    path = resolve(path)
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


def _describe(tp: Any) -> str:
    """A type as an error message says it: "an integer", "a number or null"."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _describe(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        return f"a list of {len(args)} " + _describe(args[0]).split(" ", 1)[1] + "s"
    if origin is Literal:
        return "one of " + str(list(typing.get_args(tp)))
    names = {int: "an integer", float: "a number", str: "a string", bool: "a boolean"}
    return "null" if tp is type(None) else names.get(tp, getattr(tp, "__name__", str(tp)))


def _field_type(schema: type[Section], names: list[str]) -> Any:
    """The annotation of the setting at `names` (a key path), or None."""
    tp: Any = schema
    for name in names:
        fields = getattr(tp, "model_fields", {})
        if name not in fields:
            return None
        tp = fields[name].annotation
    return tp


def _element_type(tp: Any, index: int) -> Any:
    for arg in typing.get_args(tp) or ():
        if typing.get_origin(arg) is tuple:
            return typing.get_args(arg)[index]
    return typing.get_args(tp)[index] if typing.get_origin(tp) is tuple else tp


def _config_error(error: dict, schema: type[Section]) -> ConfigError:
    """One pydantic error as a one-line ConfigError naming the key path (and, through
    `key_paths`, the keys the broken rule read)."""
    loc = list(error["loc"])
    while loc and loc[-1] in ("function-after", "function-before", "tagged-union"):
        loc.pop()
    kind, value = error["type"], error["input"]
    cause = (error.get("ctx") or {}).get("error")
    names = [part for part in loc if isinstance(part, str)]
    if kind in ("missing", "too_short", "too_long") and loc and isinstance(loc[-1], int):
        loc.pop()  # a list of the wrong length: the whole setting is at fault
    if isinstance(cause, _Invalid):
        keys = [cause.key, *cause.related]
        keys = [".".join(part for part in (*names, key.strip(".")) if part) for key in keys]
        return _keyed_error(keys[0], cause.message, keys[1:])
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    path = path.lstrip(".") or "config"
    tp = _field_type(schema, names)
    if loc and isinstance(loc[-1], int):
        tp = _element_type(tp, loc[-1])
    ctx = error.get("ctx") or {}
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<"}
    if kind in bounds:
        bound = next(iter(ctx.values()))
        message = f"must be {bounds[kind]} {bound}, got {value}."
    elif kind == "literal_error":
        allowed = [arg for arg in typing.get_args(tp) if arg is not None]
        message = f"{_show(value)} is not one of {allowed}."
    elif kind in ("model_type", "dict_type", "model_attributes_type"):
        message = f"expected a mapping, got {_show(value)}."
    elif tp is not None:
        message = f"expected {_describe(tp)}, got {_show(value)}."
    else:
        message = f"{error['msg']}, got {_show(value)}."
    return _keyed_error(path, message)


def _keyed_error(path: str, message: str, related: Iterable[str] = ()) -> ConfigError:
    error = ConfigError(f"{path}: {message}")
    error.key_paths = (path, *related)
    return error


def from_dict(raw: Any, schema: type[Config] = Config) -> Config:
    """Validate a plain mapping (a parsed file) into `schema`."""
    try:
        return schema.model_validate({} if raw is None else raw)
    except pydantic.ValidationError as error:
        raise _config_error(error.errors(include_url=False)[0], schema) from None


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
    definitions = document.get("$defs", {})

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
        name = ref.get("$ref", "").rsplit("/", 1)[-1]
        for key, prop in definitions[name]["properties"].items():
            bounds = [
                f"{symbol} {prop[bound]}"
                for bound, symbol in (
                    ("exclusiveMinimum", ">"),
                    ("minimum", ">="),
                    ("exclusiveMaximum", "<"),
                )
                if bound in prop
            ]
            for option in prop.get("anyOf", ()):
                bounds += [
                    f"{s} {option[b]}"
                    for b, s in (("exclusiveMinimum", ">"), ("minimum", ">="))
                    if b in option
                ]
            default = yaml.safe_dump(prop.get("default"), default_flow_style=True).strip()
            default = default.removesuffix("\n...").removesuffix("...").strip()
            described = prop.get("description", "") + (f" ({', '.join(bounds)})" if bounds else "")
            described = described.replace("|", "\\|")
            rows.append(f"| `{section}.{key}` | {kind(prop)} | `{default}` | {described} |")
    return "\n".join(rows) + "\n"
