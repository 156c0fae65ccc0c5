r"""The report's figures, after the IE-Net paper's: each function writes one PNG and returns
the data it plotted (so a caller, or a test, can check what the picture shows).

| function | paper | shows |
|---|---|---|
| `weight_distributions` | Fig. 4 / 8 | standardized latent weights per binary layer |
| `iee_surrogate` | Fig. 5 | the IEE surrogate `F` and its derivative over training |
| `threshold_activations` | Fig. 6 | a feature map and its K binarizations `sign(x + beta_k)` |
| `entropy_table` | Table 2 | binary-weight entropy and quantization error per layer |
| `k_sweep` | Fig. 7 | test error against the number K of thresholds |

Figures are drawn on `matplotlib.figure.Figure` objects with the Agg canvas (no pyplot, no
global backend change, no display needed) and written atomically.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import tensorflow as tf
import yaml

from ienet_tf import compat, extras, inspection, quantizers
from ienet_tf.errors import RunError, UsageError
from ienet_tf.io import write_atomically
from ienet_tf.runs import Run, Search
from ienet_tf.schedule import iee_q, iee_r

# No pyplot: figures on the Agg canvas (matplotlib comes with the `report` extra).
matplotlib = extras.require("matplotlib")
Figure = extras.require("matplotlib.figure").Figure
FigureCanvasAgg = extras.require("matplotlib.backends.backend_agg").FigureCanvasAgg

__all__ = [
    "KPoint",
    "LayerStats",
    "accuracy_curves",
    "entropy_table",
    "iee_surrogate",
    "k_sweep",
    "k_sweep_points",
    "layer_input",
    "plot_k_sweep",
    "surrogate",
    "threshold_activations",
    "weight_distributions",
]

SQRT3 = math.sqrt(3.0)
_DPI = 110


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: str | Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI)
    return write_atomically(path, buffer.getvalue())


def _grid(count: int, max_columns: int = 4) -> tuple[int, int]:
    columns = min(max_columns, max(count, 1))
    return math.ceil(count / columns), columns


def _require_binary_layers(model) -> list:
    layers = inspection.binary_kernel_layers(model)
    if not layers:
        name = getattr(model, "name", "the model")
        raise ValueError(
            f"{name} has no binary layers (larq QuantConv/QuantDense layers with a binary "
            "kernel quantizer, e.g. IEBinaryConv2D): nothing to plot."
        )
    return layers


# --- Fig. 4/8: weight distributions --------------------------------------------------------


def weight_distributions(
    model_or_layers, path: str | Path, epoch_label: str | None = None, bins: int = 60
) -> dict[str, dict[str, np.ndarray]]:
    """Histograms of the standardized latent weights (`inspection.latent_standardized`) of every
    binary layer, one panel per layer, dashed lines at -1 and +1.

    `model_or_layers` is a model, a list of layers, or a mapping `{label: model}` of
    several checkpoints of one run (e.g. `{"checkpoints/best.keras": best, "model.keras":
    final}`), drawn as overlaid histograms per panel. A single model is labelled
    `epoch_label` (default `"model"`).

    Returns `{label: {layer name: flattened standardized latent weights}}`, the plotted
    values.
    """
    if isinstance(model_or_layers, Mapping):
        sources = dict(model_or_layers)
    else:
        sources = {epoch_label or "model": model_or_layers}
    if not sources:
        raise ValueError("`model_or_layers` is an empty mapping: no model to plot.")
    data = {
        label: {
            layer.name: latent.reshape(-1)
            for layer in _require_binary_layers(source)
            for latent in [inspection.latent_standardized(layer)]
        }
        for label, source in sources.items()
    }
    names = list(dict.fromkeys(name for per_label in data.values() for name in per_label))
    rows, columns = _grid(len(names))
    figure = _new_figure(3.2 * columns, 2.5 * rows + 0.4)
    axes = figure.subplots(rows, columns, squeeze=False).reshape(-1)
    for axis, name in zip(axes, names, strict=False):
        values = [per_label[name] for per_label in data.values() if name in per_label]
        edges = np.histogram_bin_edges(np.concatenate(values), bins=bins)
        for i, (label, per_label) in enumerate(data.items()):
            if name in per_label:  # the first filled, the others outlined on top
                style = {"histtype": "stepfilled", "alpha": 0.4} if i == 0 else {"histtype": "step"}
                axis.hist(per_label[name], bins=edges, label=label, linewidth=1.2, **style)
        for line in (-1.0, 1.0):
            axis.axvline(line, color="black", linestyle="--", linewidth=0.8)
        axis.set_title(name, fontsize=9)
        axis.tick_params(labelsize=7)
    for axis in axes[len(names) :]:
        axis.set_visible(False)
    if len(data) > 1:
        axes[0].legend(fontsize=7)
    title = "Standardized latent weights per binary layer"
    if len(data) == 1 and epoch_label:
        title += f" ({epoch_label})"
    figure.suptitle(title, fontsize=10)
    _save(figure, path)
    return data


# --- Fig. 5: the IEE surrogate -------------------------------------------------------------


def surrogate(x, q: float, r: float) -> np.ndarray:
    r"""The IEE surrogate of sign, float64:

    \\[ F(x) = r\left(\sqrt{3} q x - \operatorname{sign}(x) \tfrac{3}{4} q^2 x^2\right)
        \text{ for } |x| < \tfrac{2\sqrt{3}}{3q}, \qquad r \operatorname{sign}(x)
        \text{ otherwise} \\]

    (at the edge `F = r sign(x)` from both sides: `F` is continuous).
    """
    x = np.asarray(x, np.float64)
    inside = r * (SQRT3 * q * x - np.sign(x) * 0.75 * q * q * x * x)
    return np.where(np.abs(x) < 2.0 * SQRT3 / (3.0 * q), inside, r * np.sign(x))


def _stage_q(stage: float, t_min: float, t_max: float) -> float:
    """`q` at training progress `stage = e/E` through `schedule.iee_q`."""
    fraction = Fraction(stage).limit_denominator(1_000_000)
    return iee_q(fraction.numerator, max(fraction.denominator, 1), t_min, t_max)


def iee_surrogate(
    t_min: float,
    t_max: float,
    path: str | Path,
    stages: Sequence[float] = (0, 0.25, 0.5, 0.75, 1.0),
    x: np.ndarray | None = None,
) -> dict:
    """The IEE surrogate `F` (`surrogate`) and its derivative
    `r max(0, sqrt3 q - 1.5 q^2 |x|)` (`quantizers.iee_derivative`) at several training
    stages `e/E`, with `q = 10^(t_min + (t_max - t_min) e/E)` (`schedule.iee_q`) and
    `r = max(1/q, 1)` (`schedule.iee_r`), on `x` (default 801 points in [-2, 2]).

    Returns `{"x": x, "stages": [{"stage", "q", "r", "F", "dF"}, ...]}`.
    """
    stages = [float(stage) for stage in stages]
    if not stages or any(not 0.0 <= stage <= 1.0 for stage in stages):
        raise ValueError(f"`stages` must be fractions e/E in [0, 1], got {stages!r}.")
    x = np.linspace(-2.0, 2.0, 801) if x is None else np.asarray(x, np.float64)
    curves = []
    for stage in stages:
        q = _stage_q(stage, t_min, t_max)
        r = iee_r(q)
        derivative = quantizers.iee_derivative(
            tf.constant(x), tf.constant(q, tf.float64), tf.constant(r, tf.float64)
        ).numpy()
        curves.append({"stage": stage, "q": q, "r": r, "F": surrogate(x, q, r), "dF": derivative})
    figure = _new_figure(9.0, 3.4)
    left, right = figure.subplots(1, 2)
    colors = [
        matplotlib.colormaps["viridis"](i / max(len(curves) - 1, 1)) for i in range(len(curves))
    ]
    left.plot(x, np.where(x >= 0, 1.0, -1.0), color="grey", linestyle=":", label="sign(x)")
    for curve, color in zip(curves, colors, strict=True):
        label = f"e/E={curve['stage']:g}, q={curve['q']:.3g}"
        left.plot(x, curve["F"], color=color, label=label)
        right.plot(x, curve["dF"], color=color, label=label)
    left.set(title="IEE surrogate F(x)", xlabel="x")
    right.set(title="dF/dx = r max(0, sqrt3 q - 1.5 q^2 |x|)", xlabel="x", yscale="symlog")
    left.legend(fontsize=7)
    _save(figure, path)
    return {"x": x, "stages": curves}


# --- Fig. 6: thresholded activations -------------------------------------------------------


def _is_functional_layer_of(model, layer) -> bool:
    return compat.is_functional(model) and any(candidate is layer for candidate in model.layers)


def layer_input(model: tf.keras.Model, layer, images) -> np.ndarray:
    """The float input `layer` receives when `model` runs on `images` (inference mode).

    A sub-model from the model's inputs to the layer's input when the layer is a top-level
    layer of a functional model; otherwise the model runs once while the layer's `call`
    records its input.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    if _is_functional_layer_of(model, layer):
        sub_model = tf.keras.Model(model.inputs, layer.input)
        return np.asarray(sub_model(images, training=False), np.float64)
    recorded = compat.record_inputs(layer, lambda: model(images, training=False))
    if not recorded:
        raise ValueError(f"layer {layer.name!r} did not run when the model ran.")
    return np.asarray(recorded[0], np.float64)


def threshold_activations(model: tf.keras.Model, image, path: str | Path, channel: int = 0):
    """The first binary layer's float input `x` for one image and its K binarizations
    `sign(x + beta_k)` (sign(0) = +1), as that layer computes them at inference.

    `image` is (H, W, C) or a batch whose first image is used. The PNG shows input channel
    `channel` (top row) and the mean over the C input channels (bottom row) of `x` and of
    each binarization.

    Returns `{"layer": name, "input": x (H, W, C), "thresholds": beta (K, C),
    "binary": (K, H, W, C), "channel": channel}`.
    """
    layer = _require_binary_layers(model)[0]
    image = np.asarray(image, np.float32)
    batch = image[None] if image.ndim == len(model.inputs[0].shape) - 1 else image[:1]
    x = layer_input(model, layer, batch)[0]
    thresholds = inspection.layer_thresholds(layer)
    if not 0 <= channel < x.shape[-1]:
        raise ValueError(f"`channel` must be in [0, {x.shape[-1]}), got {channel}.")
    binary = np.where(x[None] + thresholds[:, None, None, :] >= 0, 1.0, -1.0)
    k = len(thresholds)
    figure = _new_figure(2.3 * (k + 1) + 0.6, 4.6)
    axes = figure.subplots(2, k + 1, squeeze=False)
    for row, (view, reduce) in enumerate(
        ((f"channel {channel}", lambda a: a[..., channel]), ("mean over C", lambda a: a.mean(-1)))
    ):
        image_axis = axes[row, 0].imshow(reduce(x), cmap="viridis")
        figure.colorbar(image_axis, ax=axes[row, 0], shrink=0.8)
        axes[row, 0].set_title(f"x ({view})", fontsize=8)
        for i in range(k):
            axes[row, i + 1].imshow(reduce(binary[i]), cmap="gray", vmin=-1, vmax=1)
            beta = f"beta={thresholds[i, channel]:.3g}" if row == 0 else "mean"
            axes[row, i + 1].set_title(f"sign(x + beta_{i + 1}) ({beta})", fontsize=8)
    for axis in axes.reshape(-1):
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(f"Input of {layer.name} and its {k} binarizations", fontsize=10)
    _save(figure, path)
    return {
        "layer": layer.name,
        "input": x,
        "thresholds": thresholds,
        "binary": binary,
        "channel": channel,
    }


# --- Table 2: entropy and quantization error -----------------------------------------------


@dataclasses.dataclass(frozen=True)
class LayerStats:
    """One binary layer's row of the entropy table (definitions in `ienet_tf.inspection`)."""

    name: str
    entropy_bits: float  # inspection.binary_weight_entropy of the binarized kernel
    channel_entropy_bits: float  # inspection.channel_weight_entropy
    quantization_error: float  # inspection.quantization_error, alpha = mean |W^| per channel
    k: int  # IE-BC branches
    weights: int  # binary weights in the kernel
    plus_fraction: float  # p, the fraction of +1 in the binarized kernel


def entropy_table(model, path: str | Path | None = None) -> list[LayerStats]:
    """Per binary layer: entropy of the binary weights (whole kernel and channel mean),
    quantization error of the standardized latent weights, K, the kernel size and the
    fraction of +1. With `path`, also a bar plot per layer."""
    rows = []
    for layer in _require_binary_layers(model):
        binary = inspection.binary_kernel(layer)
        rows.append(
            LayerStats(
                name=layer.name,
                entropy_bits=inspection.binary_weight_entropy(binary),
                channel_entropy_bits=inspection.channel_weight_entropy(binary),
                quantization_error=inspection.quantization_error(
                    inspection.latent_standardized(layer), binary
                ),
                k=inspection.layer_k(layer),
                weights=int(binary.size),
                plus_fraction=float(np.mean(binary > 0)),
            )
        )
    if path is not None:
        positions = np.arange(len(rows))
        figure = _new_figure(max(5.0, 0.9 * len(rows) + 2.5), 5.2)
        top, bottom = figure.subplots(2, 1, sharex=True)
        top.bar(positions - 0.2, [r.entropy_bits for r in rows], 0.4, label="kernel")
        top.bar(positions + 0.2, [r.channel_entropy_bits for r in rows], 0.4, label="channel mean")
        top.set(ylabel="entropy (bits)", ylim=(0, 1.1))
        total = sum(r.entropy_bits for r in rows)
        top.set_title(f"Binary-weight entropy (sum over layers {total:.3f} bits)", fontsize=10)
        top.legend(fontsize=7, loc="lower right")
        bottom.bar(positions, [r.quantization_error for r in rows], 0.6, color="tab:red")
        bottom.set(ylabel="quantization error (MSE)")
        bottom.set_xticks(positions, [r.name for r in rows], rotation=45, ha="right", fontsize=7)
        _save(figure, path)
    return rows


# --- Fig. 7: error against K ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class KPoint:
    """Test error (1 - accuracy) of the runs or trials with `k` thresholds."""

    k: int
    error: float  # mean over runs
    error_min: float
    error_max: float
    runs: int


def _run_dirs(root: Path) -> Iterable[Path]:
    """`root` and its sub-directories up to two levels down (a run may be nested once)."""
    yield root
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        yield child
        yield from sorted(p for p in child.iterdir() if p.is_dir())


def _run_k(config: dict) -> int:
    """`model.k` of a run's config.yaml, or its variant's default K when unset."""
    from ienet_tf.models.variants import get_variant

    model = config.get("model") or {}
    k = model.get("k")
    return get_variant(model.get("variant", "ienet"), k).k if k is None else int(k)


def _points_from_dirs(root: Path) -> tuple[dict[int, list[float]], list[str]]:
    accuracies: dict[int, list[float]] = {}
    skipped = []
    for path in _run_dirs(root):
        run = Run(path)
        if not (run.exists() and run.metrics_path.is_file()):
            continue
        try:
            # The raw YAML, not `run.config()`: a sweep may hold runs of older versions whose
            # configs no longer validate, and only K is needed from them.
            k = _run_k(yaml.safe_load(run.config_path.read_text()) or {})
            accuracy = float(run.metrics()["test_accuracy"])
        except (KeyError, TypeError, ValueError, yaml.YAMLError, RunError) as error:
            skipped.append(f"{path}: {type(error).__name__}: {error}")
            continue
        accuracies.setdefault(k, []).append(accuracy)
    return accuracies, skipped


def _accuracy_column(path: Path, columns: Sequence[str]) -> str:
    """`val_accuracy`, or the `objective` column of an `ienet tune` trials.csv when the
    search's config.yaml beside it says the objective is `val_accuracy` (its default)."""
    if "val_accuracy" in columns:
        return "val_accuracy"
    if "objective" in columns:
        search = Search(path.parent)
        objective = search.objective() or "val_accuracy"  # no config.yaml: the default
        if objective == "val_accuracy":
            return "objective"
        raise UsageError(
            f"{path}: the search's objective is {objective!r} ({search.config_path}), not an "
            "accuracy: it gives no error vs K."
        )
    raise UsageError(
        f"{path} has no 'val_accuracy' (or tuner 'objective') column; a K sweep CSV needs "
        f"'k' and 'val_accuracy' (got columns {list(columns)})."
    )


def _points_from_csv(path: Path) -> tuple[dict[int, list[float]], list[str]]:
    accuracies: dict[int, list[float]] = {}
    skipped = []
    with path.open(newline="") as table:
        reader = csv.DictReader(table)
        columns = list(reader.fieldnames or ())
        if "k" not in columns:
            raise UsageError(
                f"{path} has no 'k' column; a K sweep CSV needs 'k' and 'val_accuracy' "
                f"(got columns {columns})."
            )
        column = _accuracy_column(path, columns)
        for line, row in enumerate(reader, start=2):
            if row.get("status", "COMPLETED").upper() != "COMPLETED":
                skipped.append(f"{path}:{line}: status {row['status']}")
                continue
            try:
                k, accuracy = int(float(row["k"])), float(row[column])
            except (TypeError, ValueError):
                skipped.append(f"{path}:{line}: k={row['k']!r}, {column}={row[column]!r}")
                continue
            if math.isfinite(accuracy):
                accuracies.setdefault(k, []).append(accuracy)
    return accuracies, skipped


def k_sweep_points(source: str | Path) -> list[KPoint]:
    """The error-vs-K points of `source`, sorted by K.

    `source` is a directory of `ienet train` runs (each with `config.yaml`, whose `model.k`
    (or its variant's default) gives K, and `metrics.json`, whose `test_accuracy` gives the
    error; runs directly inside it or nested one level deeper), or a CSV file with columns
    `k` and `val_accuracy`, or `ienet tune`'s `trials.csv` (`k` and `objective`, used when
    the search's `config.yaml` beside it has the default objective `val_accuracy`); rows
    without a number, or with a `status` other than COMPLETED, are skipped. Several runs
    with the same K give their mean, min and max error.
    """
    source = Path(source)
    if source.is_dir():
        accuracies, skipped = _points_from_dirs(source)
        wanted = "run directories with config.yaml and metrics.json (test_accuracy)"
    elif source.is_file():
        accuracies, skipped = _points_from_csv(source)
        wanted = "completed rows with a numeric k and accuracy"
    else:
        raise UsageError(f"K sweep source {source} does not exist (a directory of runs or a CSV).")
    if not accuracies:
        detail = f"; skipped: {'; '.join(skipped[:3])}" if skipped else ""
        raise UsageError(f"nothing usable for a K sweep in {source}: no {wanted}{detail}.")
    points = []
    for k in sorted(accuracies):
        errors = 1.0 - np.asarray(accuracies[k], np.float64)
        points.append(
            KPoint(k, float(errors.mean()), float(errors.min()), float(errors.max()), errors.size)
        )
    return points


def k_sweep(source: str | Path, path: str | Path) -> list[KPoint]:
    """Test error (%) against K from `source` (see `k_sweep_points`), with min/max bars
    where several runs share a K. Returns the points."""
    points = k_sweep_points(source)
    plot_k_sweep(points, path)
    return points


def plot_k_sweep(points: Sequence[KPoint], path: str | Path, title: str | None = None) -> Path:
    """Error (%) against K: the mean of each K's runs, bars from min to max, n beside."""
    ks = np.array([p.k for p in points])
    error = np.array([p.error for p in points]) * 100
    spread = np.array([[p.error - p.error_min, p.error_max - p.error] for p in points]).T * 100
    figure = _new_figure(4.8, 3.4)
    axis = figure.subplots()
    axis.errorbar(ks, error, yerr=spread, marker="o", capsize=4)
    for p, e in zip(points, error, strict=True):
        axis.annotate(
            f"n={p.runs}", (p.k, e), textcoords="offset points", xytext=(4, 4), fontsize=7
        )
    axis.set(xlabel="K (thresholds per IE-BC layer)", ylabel="error (%)", xticks=ks)
    axis.set_title(title or "Error vs K (mean; bars min-max)", fontsize=10)
    return _save(figure, path)


def accuracy_curves(
    curves: Mapping[str, Sequence[Sequence[float]]], path: str | Path, ylabel: str = "accuracy (%)"
) -> Path:
    """One line per label: the mean over its runs of accuracy (%) against the epoch (1-based),
    shaded between the runs' min and max. `curves[label]` is a list of runs, each a list
    of per-epoch accuracies in [0, 1] (runs of different lengths: the common epochs)."""
    figure = _new_figure(6.0, 4.0)
    axis = figure.subplots()
    for label, runs in curves.items():
        length = min(len(run) for run in runs)
        if not length:
            continue
        values = np.array([run[:length] for run in runs], np.float64) * 100
        epochs = np.arange(1, length + 1)
        axis.plot(
            epochs, values.mean(axis=0), marker="o", markersize=3, label=f"{label} (n={len(runs)})"
        )
        if len(runs) > 1:
            axis.fill_between(epochs, values.min(axis=0), values.max(axis=0), alpha=0.15)
    axis.set(xlabel="epoch", ylabel=ylabel)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    return _save(figure, path)
