"""`ienet report`: the figures and a `report.md` of one `ienet train` run.

```python
from ienet_tf.report import write_report

path = write_report("runs/demo")  # runs/demo/report/report.md + PNGs
```

The report is built in a temporary directory inside the output directory and its files are
moved into place at the end, `report.md` last: a failure leaves the previous report (or
nothing) in place, never a half one. Only the report's own files are replaced; anything else
in the output directory is left alone. The figures also go to TensorBoard, as images under
`tensorboard/report` of the run.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import tensorflow as tf

from ienet_tf import callbacks, errors, inspection
from ienet_tf.errors import IENetError, UsageError
from ienet_tf.io import write_atomically
from ienet_tf.ir2net import inference_model
from ienet_tf.report import figures
from ienet_tf.runs import MODEL_FILES, Report, Run
from ienet_tf.train import test_images

if TYPE_CHECKING:
    from ienet_tf.config import Config

__all__ = ["FIGURE_FILES", "write_model_report", "write_report"]

logger = logging.getLogger(__name__)

#: The report's figure files (the TensorBoard image tag is the name without `.png`).
FIGURE_FILES = {
    "weights": "weight_distributions.png",
    "surrogate": "iee_surrogate.png",
    "activations": "threshold_activations.png",
    "entropy": "entropy.png",
    "k_sweep": "k_sweep.png",
}
#: The saved float models of a run the weight histograms overlay (not the int8 QAT model).
_HISTOGRAM_MODELS = ("final", "best", "last")

DEFINITIONS = r"""## Definitions

Per binary layer, with `W` the latent kernel (output channel on the last axis, `c`):

- **Standardized latent weights** `Ŵ`: for IEE kernels (`iee_sign`), `W` balanced and
  standardized per output channel, `Ŵ = (W - mean_c W) / sqrt(var_c W + 1e-5)` (unbiased
  variance over all other axes, as the quantizer computes it); for other binary kernels the
  raw `W`. The sign the layer uses is `B = sign(Ŵ)` (sign(0) = +1).
- **Entropy of the binary weights** (our definition; the paper's Table 2 sums an
  "information entropy of binary weights" over layers without defining it):
  `H = -p log2 p - (1-p) log2(1-p)` bits with `p` the fraction of +1 entries of the layer's
  binarized kernel `B` (`H = 0` when `p` is 0 or 1, at most 1 bit). The **channel-mean
  entropy** is the mean over output channels of `H(p_c)` with `p_c` the fraction of +1 in
  channel `c`. The table's sum row sums them over layers.
- **Quantization error**: `QE = mean_i (Ŵ_i - alpha_c(i) B_i)²` over all kernel entries, with
  `alpha_c = mean |Ŵ|` over output channel `c` (the L2-optimal scale of `sign(Ŵ)`).
- **Flip ratio** (the `BinaryStatsLogger` callback): the fraction of entries of `B` whose
  sign changed since the previous logged epoch.
- **IEE surrogate**: at training progress `e/E`, `q = 10^(t_min + (t_max - t_min)·e/E)`,
  `r = max(1/q, 1)`; `F(x) = r(√3·q·x - sign(x)·0.75·q²x²)` for `|x| < 2√3/(3q)`,
  `r·sign(x)` outside; `F'(x) = r·max(0, √3·q - 1.5·q²|x|)`.
- **Thresholded activations**: the float input `x` of the first binary layer and its K
  binarizations `sign(x + β_k)`, `β_k` the layer's learned thresholds, at inference.
"""


def _checkpoint_models(run: Run, which: str, model: tf.keras.Model) -> dict:
    """Every committed float model of the run, labelled by its file (the loaded one reused);
    a model that fails its SHA-256 check or cannot be loaded is skipped with a warning."""
    models = {}
    committed = run.checkpoints()
    for name in _HISTOGRAM_MODELS:
        if name not in committed:
            continue
        label = MODEL_FILES[name]
        if name == which:
            models[label] = model
            continue
        try:
            models[label] = inference_model(run.model(name))
        except IENetError as error:
            logger.warning("report: skipping %s (%s)", label, error)
    return models


def _measured_section(heading: str, batch: np.ndarray | None, note: str, measure, render) -> str:
    """A report section measured on the test batch: `render(measure(batch))`'s lines under
    `heading`, or a line saying why the table is left out."""
    if batch is None:
        return heading + f"Table {note}.\n"
    try:
        rows = measure(batch)
    except ValueError as error:
        return heading + f"Table left out: {error}\n"
    return heading + "\n".join(render(rows)) + "\n"


def _disagreement_markdown(model: tf.keras.Model, batch: np.ndarray | None, note: str) -> str:
    def render(rows: list[dict]) -> list[str]:
        return [
            f"Share of each binary conv's binary input codes that differ between a "
            f"training-mode pass (BatchNorm with the batch's own statistics) and the "
            f"inference-mode pass (the saved moving statistics) of {note} ({len(batch)} "
            "images). A share that grows with depth means the inference accuracy depends on "
            "how well the moving statistics were estimated; `train.bn_reestimation_batches` "
            "re-estimates them on un-augmented training images.\n",
            "| layer | K | codes that differ |",
            "|---|---|---|",
            *(f"| {r['layer']} | {r['k']} | {r['disagreement']:.2%} |" for r in rows),
        ]

    return _measured_section(
        "## Binary codes in training vs inference mode (BatchNorm statistics)\n\n",
        batch,
        note,
        lambda images: inspection.binarization_disagreement(model, images),
        render,
    )


def _branches_markdown(model: tf.keras.Model, batch: np.ndarray | None, note: str) -> str:
    """IE-BC's branches against the first (`inspection.branch_diversity`); empty without IE-BC
    layers of K >= 2."""
    if not inspection.branched_convs(model):
        return ""

    def render(rows: list[dict]) -> list[str]:
        return [
            f"How different each IE-BC branch k >= 2 is from branch 1 at inference, on {note} "
            f"({len(batch)} images): the share of the layer's binary input codes where "
            "sign(x + β_k) ≠ sign(x + β_1), the mean |β_k - β_1| over input channels and the "
            "mean |λ_k| (branch 1's weight is 1). At 0 the branch repeats branch 1 and the "
            "layer computes a K = 1 convolution scaled by 1 + λ_k, whatever K says (the "
            "release starts every β at 0).\n",
            "| layer | branch | codes that differ from branch 1 | mean \\|β_k - β_1\\| | "
            "mean \\|λ_k\\| |",
            "|---|---|---|---|---|",
            *(
                f"| {r['layer']} | {r['branch']} | {r['differ']:.2%} | "
                f"{r['threshold_gap']:.3g} | {r['lambda']:.3g} |"
                for r in rows
            ),
        ]

    return _measured_section(
        "## IE-BC branches\n\n",
        batch,
        note,
        lambda images: inspection.branch_diversity(model, images),
        render,
    )


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _metrics_table(metrics: dict) -> str:
    if not metrics:
        return "_The run has no metrics.json (it has not finished)._\n"
    lines = ["| metric | value |", "|---|---|"]
    lines += [f"| {key} | {_format(value)} |" for key, value in metrics.items()]
    return "\n".join(lines) + "\n"


def _entropy_markdown(rows: list[figures.LayerStats]) -> str:
    lines = [
        "| layer | K | binary weights | fraction of +1 | entropy (bits) "
        "| channel-mean entropy (bits) | quantization error |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.k} | {r.weights} | {r.plus_fraction:.4f} | {r.entropy_bits:.6f} "
            f"| {r.channel_entropy_bits:.6f} | {r.quantization_error:.4f} |"
        )
    lines.append(
        f"| **sum / mean** | | {sum(r.weights for r in rows)} | "
        f"| **{sum(r.entropy_bits for r in rows):.6f}** "
        f"| **{sum(r.channel_entropy_bits for r in rows):.6f}** "
        f"| {np.mean([r.quantization_error for r in rows]):.4f} (mean) |"
    )
    return "\n".join(lines) + "\n"


def _render(header: list[str], sections: dict[str, str]) -> str:
    return "\n".join([*header, *sections.values(), DEFINITIONS])


def _saved_q(model: tf.keras.Model) -> str:
    """ ", `q` of the saved model ..." for a model with IEE quantizers, else ""."""
    iee = list(callbacks.iee_quantizers(model))
    return f", `q` of the saved model {float(iee[0].q.numpy()):.4g}" if iee else ""


def _model_k(model: tf.keras.Model) -> int:
    return inspection.layer_k(inspection.binary_kernel_layers(model)[0])


def _require_binary(model: tf.keras.Model, what: str) -> tf.keras.Model:
    if not inspection.binary_kernel_layers(model):
        raise UsageError(f"{what} has no binary layers: there is nothing to report.")
    return model


def _figure(name: str, caption: str, text: str = "") -> str:
    return f"![{caption}]({FIGURE_FILES[name]})\n\n{text}".rstrip() + "\n"


def _write_tensorboard(log_dir: Path, output_dir: Path, names: list[str], step: int) -> None:
    writer = tf.summary.create_file_writer(str(log_dir))
    try:
        with writer.as_default():
            for name in names:
                png = tf.io.read_file(str(output_dir / FIGURE_FILES[name]))
                image = tf.io.decode_png(png, channels=4)[None]
                tf.summary.image(f"report/{FIGURE_FILES[name][:-4]}", image, step=step)
        writer.flush()
    finally:
        writer.close()


def _move_into_place(staging: Path, output_dir: Path, produced: list[str]) -> None:
    """Move the staged figures, then report.md, into `output_dir`; drop stale figures."""
    for file in (FIGURE_FILES[name] for name in produced):
        os.replace(staging / file, output_dir / file)
    for name, file in FIGURE_FILES.items():
        if name not in produced:
            (output_dir / file).unlink(missing_ok=True)
    os.replace(staging / "report.md", output_dir / "report.md")


class _Data(NamedTuple):
    """The batch the report measures on (None: not available), and how it names the batch
    and its first image."""

    batch: np.ndarray | None
    batch_note: str
    image_note: str


def _test_batch(config, say: Callable[[str], None]) -> _Data:
    """The first test batch of the config's data set; none, and why, when the data set is
    not available here."""
    try:
        say(f"reading the first {config.data.name} test batch")
        batch = test_images(config, config.train.batch_size)
    except errors.DataError as error:
        note = f"left out: the test data is not available here ({error})"
        return _Data(None, note, note)
    split = f"the {config.data.name} test split"
    return _Data(batch, f"the first batch of {split}", f"the first image of {split}")


def write_report(
    run_dir: str | Path,
    output_dir: str | Path | None = None,
    image: np.ndarray | None = None,
    k_sweep_source: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write the figures and `report.md` of the run in `run_dir`; returns report.md's path.

    Loads the final model (`model.keras`; `checkpoints/last.keras` if the run has not
    finished). The weight histograms overlay every saved model of the run; the activation
    figure uses `image` (H, W, C), by default the first image of the run's test split (the
    figure is left out, with a note, when the data set is not available here); the K sweep
    figure is drawn from `k_sweep_source` when given (see `figures.k_sweep_points`).
    `output_dir` defaults to `run_dir/report`. `progress(message)` is told each step.
    """
    say = progress or (lambda message: None)
    run = Run(run_dir)
    which = run.latest()
    output_dir = Path(output_dir) if output_dir is not None else run.path / "report"
    Report(output_dir).refuse_foreign()  # a user's folder, a file: before any work
    say(f"loading {MODEL_FILES[which]} of {run.path}")
    config = run.config()
    m = config.model
    # the classifier of an IR²Net training wrapper
    model = _require_binary(
        inference_model(run.model(which)),
        f"the model of {run.path} ({m.name}, variant {m.variant!r})",
    )
    metrics = run.metrics() or {}
    data = _test_batch(config, say)
    header = [
        f"# Report: {model.name} ({m.name}, variant `{m.variant}`, K={_model_k(model)}) on "
        f"{config.data.name}\n",
        f"Run `{run.path}`, model `{which}` ({MODEL_FILES[which]}); "
        f"{config.train.epochs} epochs, IEE schedule t_min={config.iee.t_min:g}, "
        f"t_max={config.iee.t_max:g}{_saved_q(model)}.\n",
        "## Metrics (metrics.json)\n",
        _metrics_table(metrics),
    ]
    produced = _write(
        output_dir,
        header,
        model,
        _checkpoint_models(run, which, model),
        config.iee,
        data,
        image,
        k_sweep_source,
        say,
    )
    step = int(metrics.get("epochs", config.train.epochs))
    run.refuse_links()  # the figures also go to the run's TensorBoard logs
    _write_tensorboard(run.tensorboard_dir / "report", output_dir, produced, step)
    return output_dir / "report.md"


def write_model_report(
    model: tf.keras.Model,
    output_dir: str | Path,
    *,
    source: str | None = None,
    config: Config | None = None,
    inputs: np.ndarray | None = None,
    inputs_note: str = "the inputs given to `write_model_report`",
    k_sweep_source: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write the figures and `report.md` of a model that is no run's (a user's saved
    model); returns report.md's path. What needs a run is left out: its metrics, the other
    checkpoints, the TensorBoard images.

    The tables measured on data and the activation figure use `inputs` (a batch the model
    takes; `inputs_note` names it in the report), else the first test batch of `config`'s
    data set, else are left out with a note. The IEE surrogate is drawn for `config`'s
    schedule, else ienet-tf's default one (a saved model holds no schedule). `source` (the
    file, say) names the model in the heading.
    """
    from ienet_tf import config as config_lib
    from ienet_tf.checks import input_batch

    say = progress or (lambda message: None)
    output_dir = Path(output_dir)
    Report(output_dir).refuse_foreign()  # a user's folder, a file: before any work
    model = _require_binary(inference_model(model), source or f"model {model.name}")
    if inputs is not None:
        batch = input_batch(inputs, model.input_shape, model.name)
        data = _Data(batch, inputs_note, f"the first of {inputs_note}")
    elif config is not None:
        data = _test_batch(config, say)
    else:
        note = "left out: no data (pass inputs or a config)"
        data = _Data(None, note, note)
    iee = config.iee if config is not None else config_lib.IEEConfig()
    schedule = "the config's" if config is not None else "ienet-tf's default (no config given)"
    header = [
        f"# Report: {model.name} (K={_model_k(model)})\n",
        f"Model {f'`{source}`' if source else 'given to `write_model_report`'}, no run: no "
        f"metrics, checkpoints or TensorBoard images. IEE schedule {schedule}: "
        f"t_min={iee.t_min:g}, t_max={iee.t_max:g}{_saved_q(model)}.\n",
    ]
    _write(
        output_dir,
        header,
        model,
        {Path(source).name if source else model.name: model},
        iee,
        data,
        None,
        k_sweep_source,
        say,
    )
    return output_dir / "report.md"


def _write(output_dir, header, model, checkpoints, iee, data, image, k_sweep_source, say):
    """Draw the figures and write `report.md` (`header`, then the sections) into
    `output_dir`, staged so that a failure leaves the previous report; returns the figures
    drawn. `image` (H, W, C) overrides the batch's first image in the activation figure."""
    batch, batch_note, image_note = data
    if image is not None:
        image_note = "the image given to `write_report`"
    elif batch is not None:
        image = batch[0]
    with Report(output_dir, tuple(FIGURE_FILES.values())).claim():
        staging = Path(tempfile.mkdtemp(dir=output_dir, prefix=".report-", suffix=".tmp"))
        try:
            sections, produced = _draw(
                staging, iee, model, checkpoints, image, image_note, k_sweep_source, say
            )
            say("binary codes in training vs inference mode")
            sections["disagreement"] = _disagreement_markdown(model, batch, batch_note)
            say("IE-BC branches")
            sections["branches"] = _branches_markdown(model, batch, batch_note)
            write_atomically(staging / "report.md", _render(header, sections))
            _move_into_place(staging, output_dir, produced)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return produced


def _draw(staging, iee, model, checkpoints, image, image_note, k_sweep_source, say):
    """Every figure into `staging`; returns the markdown sections and the figures drawn."""
    sections, produced = {}, []
    say(f"weight histograms of {len(checkpoints)} saved model(s)")
    figures.weight_distributions(checkpoints, staging / FIGURE_FILES["weights"])
    produced.append("weights")
    sections["weights"] = "## Weight distributions (Fig. 4/8)\n\n" + _figure(
        "weights",
        "standardized latent weights",
        "Histograms of the standardized latent weights Ŵ of each binary layer, for "
        f"{', '.join(f'`{label}`' for label in checkpoints)}; dashed lines at ±1.",
    )
    say("entropy and quantization error per layer")
    rows = figures.entropy_table(model, staging / FIGURE_FILES["entropy"])
    produced.append("entropy")
    sections["entropy"] = (
        "## Binary-weight entropy and quantization error (Table 2)\n\n"
        + _entropy_markdown(rows)
        + "\n"
        + _figure("entropy", "entropy and quantization error per layer")
    )
    curves = figures.iee_surrogate(iee.t_min, iee.t_max, staging / FIGURE_FILES["surrogate"])
    produced.append("surrogate")
    qs = ", ".join(f"{c['q']:.3g}" for c in curves["stages"])
    progress = ", ".join(f"{c['stage']:g}" for c in curves["stages"])
    sections["surrogate"] = "## IEE surrogate over training (Fig. 5)\n\n" + _figure(
        "surrogate",
        "IEE surrogate and derivative",
        f"t_min={iee.t_min:g}, t_max={iee.t_max:g}; at e/E = {progress}, q = {qs}.",
    )
    heading = "## Thresholded activations (Fig. 6)\n\n"
    if image is not None:
        say("thresholded activations")
        shown = figures.threshold_activations(model, image, staging / FIGURE_FILES["activations"])
        produced.append("activations")
        betas = np.array2string(shown["thresholds"][:, shown["channel"]], precision=3)
        sections["activations"] = heading + _figure(
            "activations",
            "thresholded activations",
            f"Input of `{shown['layer']}` for {image_note}, and sign(x + β_k) for its "
            f"{len(shown['thresholds'])} thresholds (channel {shown['channel']}: β = {betas}).",
        )
    else:
        sections["activations"] = heading + f"Figure {image_note}.\n"
    if k_sweep_source is not None:
        say(f"error vs K from {k_sweep_source}")
        points = figures.k_sweep(k_sweep_source, staging / FIGURE_FILES["k_sweep"])
        produced.append("k_sweep")
        table = ["| K | error (mean) | min | max | runs |", "|---|---|---|---|---|"] + [
            f"| {p.k} | {p.error:.2%} | {p.error_min:.2%} | {p.error_max:.2%} | {p.runs} |"
            for p in points
        ]
        sections["k_sweep"] = (
            f"## Error vs K (Fig. 7)\n\nFrom `{k_sweep_source}`.\n\n"
            + "\n".join(table)
            + "\n\n"
            + _figure("k_sweep", "error vs K")
        )
    return sections, produced
