"""`ienet tune`: a 2-trial search on the embedded digits, resumption, the best config."""

import csv
import json
import os
from pathlib import Path

import keras_tuner as kt
import pytest

from ienet_tf import config as config_lib
from ienet_tf import errors
from ienet_tf.cli import main
from ienet_tf.runs import Search
from ienet_tf.tune import COLUMNS, IENetHyperModel, trial_config

TUNE = "configs/tune_digits.yaml"
SMALL = [
    "--set",
    "data.subset=256",
    "--set",
    "tune.validation_examples=128",
    "--set",
    "train.epochs=2",
]


def _rows(path: Path) -> list[dict]:
    with (path / "trials.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    out = tmp_path_factory.mktemp("search")
    assert main(["tune", "--config", TUNE, "--output", str(out), "--verbose", "0", *SMALL]) == 0
    return out


def test_search_writes_the_results_table(search):
    rows = _rows(search)
    assert [r["trial"] for r in rows] == ["0", "1"]
    assert list(rows[0]) == list(COLUMNS)
    for row in rows:
        assert row["status"] == "COMPLETED"
        assert 1 <= int(row["k"]) <= 5
        assert float(row["t_min"]) < float(row["t_max"])
        assert 0.0 <= float(row["objective"]) <= 1.0 and float(row["wall_time_s"]) > 0
        # The convnet's binary convs at 8x8: K branches of 3*3*(32*64*64 + 64*64*16 + ...).
        one_branch = 9 * (32 * 64 * 64 + 64 * 64 * 16 + 64 * 128 * 16)
        assert int(row["binary_ops"]) == int(row["k"]) * one_branch
    table = (search / "trials.md").read_text()
    assert table.count("\n") == 4 and "val_accuracy" in table.splitlines()[0]


def test_best_config_is_a_training_config_ienet_train_accepts(search, tmp_path, capsys):
    rows = _rows(search)
    best_row = max(rows, key=lambda r: float(r["objective"]))
    best = config_lib.load(search / "best_config.yaml")
    assert type(best) is config_lib.Config
    assert best.model.k == int(best_row["k"])
    assert best.iee.t_min == pytest.approx(float(best_row["t_min"]))
    assert best.iee.t_max == pytest.approx(float(best_row["t_max"]))
    # It trains on exactly the trial's examples: the same 128 held out, the same 256 after.
    assert (best.data.validation_examples, best.data.subset) == (128, 256)
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--config",
                str(search / "best_config.yaml"),
                "--run",
                str(run),
                "--verbose",
                "0",
            ]
        )
        == 0
    )
    assert json.loads((run / "metrics.json").read_text())["completed"]


def test_rerun_resumes_without_redoing_trials(search):
    times = [r["wall_time_s"] for r in _rows(search)]
    args = ["tune", "--config", TUNE, "--output", str(search), "--verbose", "0", *SMALL]
    assert main(args) == 0
    assert [r["wall_time_s"] for r in _rows(search)] == times  # nothing retrained
    assert main([*args, "--set", "tune.max_trials=3"]) == 0
    rows = _rows(search)
    assert len(rows) == 3 and [r["wall_time_s"] for r in rows[:2]] == times


def test_another_config_in_the_same_directory_is_refused(search, capsys):
    args = [
        "tune",
        "--config",
        TUNE,
        "--output",
        str(search),
        "--verbose",
        "0",
        *SMALL,
        "--set",
        "tune.k=[1, 2]",
    ]
    assert main(args) == 2
    assert "holds a search with a different config" in capsys.readouterr().err


def test_trial_config_maps_centre_and_width_to_a_valid_range():
    base = config_lib.load(TUNE, schema=config_lib.TuneFileConfig)
    cfg = trial_config(base, {"k": 4, "t_center": -0.5, "t_width": 3.0, "learning_rate": 0.02})
    assert (cfg.model.k, cfg.iee.t_min, cfg.iee.t_max) == (4, -2.0, 1.0)
    assert cfg.train.learning_rate == 0.02
    hp = kt.HyperParameters()
    model = IENetHyperModel(base).build(hp)
    assert {"k", "t_center", "t_width"} <= set(hp.values) and model.built


@pytest.mark.parametrize(
    "override, message",
    [
        ("tune.t_width=[0, 1]", "tune.t_width: widths must be > 0"),
        ("tune.k=[3, 1]", "tune.k: expected [low, high]"),
        ("tune.k=[0, 2]", "tune.k: K must be >= 1"),
        ("tune.tuner=grid", "tune.tuner: 'grid' is not one of"),
        ("tune.learning_rate=[0, 0.1]", "tune.learning_rate: must be > 0"),
        ("tune.max_trial=3", "tune.max_trial: unknown key"),
    ],
)
def test_bad_tune_configs(override, message):
    with pytest.raises(errors.ConfigError, match=message.replace("[", r"\[")):
        config_lib.load(TUNE, [override], schema=config_lib.TuneFileConfig)


def test_train_rejects_a_tune_config(capsys):
    assert main(["train", "--config", TUNE]) == 2
    assert "tune: unknown key" in capsys.readouterr().err


def test_a_held_out_split_larger_than_the_training_split_is_refused_before_writing(
    tmp_path, capsys
):
    out = tmp_path / "search"
    args = [
        "tune",
        "--config",
        TUNE,
        "--output",
        str(out),
        "--set",
        "tune.validation_examples=1400",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "tune.validation_examples: 1400 held-out examples + data.subset 600 exceed" in err
    assert not out.exists()


def test_a_search_whose_trials_all_fail_reports_no_best(tmp_path, capsys, monkeypatch):
    def fail(self, hp, model, *args, **kwargs):
        raise ValueError("simulated trial failure")

    monkeypatch.setattr(IENetHyperModel, "fit", fail)
    out = tmp_path / "search"
    args = ["tune", "--config", TUNE, "--output", str(out), "--verbose", "0", *SMALL]
    assert main(args) == 2
    assert "no trial of the search" in capsys.readouterr().err
    assert not (out / "best_config.yaml").exists()
    assert {row["status"] for row in _rows(out)} == {"FAILED"}


def test_a_search_directory_in_use_is_refused_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "search"
    args = ["tune", "--config", TUNE, "--output", str(out), "--verbose", "0", *SMALL]
    with Search(out).claim():
        assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{out} is in use by another process (PID {os.getpid()})" in err
    assert "use another --output" in err
    assert sorted(p.name for p in out.iterdir()) == [".ienet-tf.json", ".lock"]  # nothing else


def test_with_bn_reestimation_every_epoch_is_validated_with_re_estimated_statistics(tmp_path):
    import numpy as np

    from ienet_tf.train import load_datasets, reestimate_batch_norm
    from ienet_tf.tune.search import _make_tuner

    overrides = [*SMALL[1::2], "tune.max_trials=1", "train.bn_reestimation_batches=2"]
    out = tmp_path / "search"
    argv = ["tune", "--config", TUNE, "--output", str(out), "--verbose", "0"]
    assert main([*argv, *(arg for o in overrides for arg in ("--set", o))]) == 0
    config = config_lib.load(TUNE, overrides, config_lib.TuneFileConfig)
    tuner = _make_tuner(config, Search(out).tuner_dir)
    (trial,) = tuner.oracle.trials.values()
    # What keras-tuner kept of the trial (its best of 2 epochs) scores the trial's score...
    model = tuner.load_model(trial)
    splits = load_datasets(
        trial_config(config, trial.hyperparameters.values), ("train_eval", "validation")
    )
    score = model.evaluate(splits["validation"], verbose=0, return_dict=True)["accuracy"]
    assert trial.score == pytest.approx(score, abs=1e-6)
    assert float(_rows(out)[0]["objective"]) == pytest.approx(score, abs=1e-6)
    # ...with the statistics of the first 2 un-augmented training batches: re-estimating
    # them here changes nothing (the moving averages of training would differ).
    kept = [w.numpy() for w in model.non_trainable_weights]
    reestimate_batch_norm(model, splits["train_eval"].take(2))
    for before, after in zip(kept, model.non_trainable_weights, strict=True):
        np.testing.assert_allclose(after.numpy(), before, rtol=1e-5, atol=1e-6)


def _python_search(tmp_path, config, hypermodel, validation):
    from ienet_tf.tune import validation_split

    train, _ = validation_split(config)
    tuner = kt.RandomSearch(
        hypermodel, "val_accuracy", max_trials=1, directory=str(tmp_path), seed=0
    )
    tuner.search(train, validation_data=validation, epochs=1, verbose=0)
    return tuner


def test_tuning_from_python_validates_on_the_held_out_split_and_warns_on_the_test_one(
    tmp_path, recwarn
):
    """Issue 29, friction 4: the held-out split is public, a user's builder is wrapped, and
    a search handed the test split says so."""
    from ienet_tf.train import build_model, load_datasets
    from ienet_tf.tune import validation_split

    config = config_lib.load(TUNE, SMALL[1::2], config_lib.TuneFileConfig)
    train, validation = validation_split(config)
    assert train.ienet_split == validation.ienet_split == "train"  # never the test split
    built = []

    def my_network(trial):  # a user's own builder: given the trial's config
        built.append(trial.model.k)
        return build_model(trial)

    tuner = _python_search(tmp_path / "a", config, IENetHyperModel(config, my_network), validation)
    assert built[-1] == tuner.oracle.get_best_trials()[0].hyperparameters["k"]
    assert not [w for w in recwarn if "test split" in str(w.message)]
    test = load_datasets(config, ("test",))["test"]
    with pytest.warns(UserWarning, match="validates on the test split"):
        _python_search(tmp_path / "b", config, IENetHyperModel(config), test)
