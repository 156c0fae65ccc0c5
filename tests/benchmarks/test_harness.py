"""The benchmark harness in smoke mode: result schema and the generated docs (not numbers)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"
PROVENANCE_KEYS = {"command", "commit", "date", "machine", "versions"}


def _run(script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, str(BENCHMARKS / script), *args]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0 or not check, f"{script} failed:\n{output}"
    return done


def _shows_row(text: str, cells) -> bool:
    """Whether a markdown table in `text` has a row that starts with `cells` (whatever the
    padding): a rendered section shows the rows its data gave."""
    pattern = r"^\| " + r" +\| ".join(re.escape(str(cell)) for cell in cells) + r" +\|"
    return re.search(pattern, text, re.MULTILINE) is not None


def _check_provenance(result: dict) -> None:
    prov = result["provenance"]
    assert PROVENANCE_KEYS <= set(prov)
    assert prov["command"] and prov["date"] and prov["versions"]
    assert prov["machine"]["cpu"] and prov["machine"]["cores"] >= 1


def test_provenance_is_dirty_for_code_changes_not_for_result_files(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT))
    from benchmarks.common import provenance

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    (results / "campaign.json").write_text("{}")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "results.md").write_text("# results\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.chdir(tmp_path)
    assert provenance()["dirty"] is False
    (results / "campaign.json").write_text('{"runs": []}')  # a campaign writing beside us
    (tmp_path / "docs" / "results.md").write_text("# results, rendered again\n")
    assert provenance()["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert provenance()["dirty"] is True


def test_merge_result_gives_each_section_its_own_provenance(tmp_path):
    sys.path.insert(0, str(ROOT))
    from benchmarks.common import merge_result, provenance_lines

    path = tmp_path / "r.json"
    old = {"command": "python old.py a", "commit": "abc", "date": "then", "machine": {}}
    path.write_text(json.dumps({"provenance": old, "a": {"x": 1}}))
    merge_result(path, "b", {"y": 2})
    result = json.loads(path.read_text())
    _check_provenance(result)
    _check_provenance(result["b"])
    assert (
        result["b"]["y"] == 2
        and result["provenance"]["commit"] == result["b"]["provenance"]["commit"]
    )
    assert result["a"] == {"x": 1, "provenance": {**old, "inherited": True}}
    text = "\n".join(provenance_lines(result))
    assert "Section `a` (inherited" in text and "`python old.py a`" in text
    assert "Section `b`:" in text
    merge_result(path, "a", {"x": 3})  # rewritten: its own block now
    result = json.loads(path.read_text())
    assert result["a"]["x"] == 3 and "inherited" not in result["a"]["provenance"]
    _check_provenance(result["a"])


def test_the_campaign_names_final_models_that_re_estimated_statistics_move():
    sys.path.insert(0, str(ROOT))
    from benchmarks.stability import reestimation_note

    def run(name, moving, plain):
        return {
            "run": name,
            "top1": {"moving": {"test": moving}, "reestimated_plain": {"test": plain}},
        }

    stability = {
        "batchnorm": {
            "runs": [run("bireal_s0", 0.5647, 0.8233), run("ienet_k2_s0", 0.8767, 0.8783)]
        }
    }
    (line, _) = reestimation_note(stability)
    assert "bireal_s0 56.47 -> 82.33" in line and "ienet_k2_s0" not in line
    assert reestimation_note({"batchnorm": {"runs": [run("x", 0.80, 0.81)]}}) == []
    assert reestimation_note(None) == []


def test_stability_rows_are_labelled_by_run_and_branch_2_is_summarized(tmp_path):
    sys.path.insert(0, str(ROOT))
    from benchmarks import campaign, stability

    release = {"run": "ienet_k2_release_s0", "compat": "release", "budget": "b"}
    plain = {"run": "ienet_k2_s0", "budget": "b"}  # measured before rows recorded compat
    runs, label = stability.section_runs({"runs": [release, plain]})
    assert [label(run) for run in runs] == ["ienet_k2_release_s0", "ienet_k2_s0"]
    two_budgets = {"runs": [plain, {**plain, "budget": "a"}]}
    assert stability.section_runs(two_budgets)[1](plain) == "ienet_k2_s0 (b)"
    assert stability.section_runs(None)[0] == []

    def layer(name, branch, differ):
        return {"layer": name, "branch": branch, "differ": differ, "lambda": 0.1 * branch,
                "threshold_gap": 0.2}  # fmt: skip

    k3 = {"run": "ienet_k3_s0", "images": 8, "measured": {"commit": "c" * 40, "date": "d"},
          "layers": [layer("a", 2, 0.1), layer("a", 3, 0.9), layer("b", 2, 0.3),
                     layer("b", 3, 0.9), layer("c", 2, 0.5), layer("c", 3, 0.9)]}  # fmt: skip
    (row,) = stability.branch_rows({"runs": [k3]})
    # branch 2 only: mean 30%, first a, middle b, last c; lambda_2 0.2, gap 0.2
    assert row == ["ienet_k3_s0", "30.0", "10.0 (a)", "30.0 (b)", "50.0 (c)", "0.200", "0.200"]
    text = "\n".join(stability.branches_lines({"runs": [k3]}))
    assert "### IE-BC's branches in the final models" in text and _shows_row(text, row)
    assert stability.branches_lines(None) == []

    def run(group, losses):
        history = [{"epoch": e, "loss": loss} for e, loss in losses.items()]
        return {"group": group, "complete": True, "history": history}

    # the schedule comes from the campaign's config template, not the library's defaults
    ienet = (ROOT / "configs" / "fashion_mnist_resnet20_ienet.yaml").read_text()
    assert "t_min: -2.0" in ienet and "t_max: 1.0" in ienet
    template = tmp_path / "campaign_{base}.yaml"
    (tmp_path / "campaign_ienet.yaml").write_text(
        ienet.replace("t_min: -2.0", "t_min: -3.0").replace("t_max: 1.0", "t_max: 0.0")
    )
    result = {
        "budget": {"epochs": 8, "config_template": str(template)},
        "last_epoch_groups": ["iee", "ienet_k2", "ienet_k2_apart"],
        "runs": [
            run("iee", {e: 1.0 - 0.1 * e for e in range(8)}),
            run("iee", {e: 1.2 - 0.1 * e for e in range(8)}),
            run("ienet_k2", {6: 0.5, 7: 0.6}),  # a history that holds only its last epochs
            {**run("ienet_k2_apart", {7: 0.1}), "complete": False},  # unfinished: left out
        ],
    }
    epochs, rows = campaign.last_epoch_rows(result)
    assert list(epochs) == [4, 5, 6, 7]
    assert rows == [
        ["iee", 2, "0.7000", "0.6000", "0.5000", "0.4000"],
        ["ienet_k2", 1, "", "", "0.5000", "0.6000"],  # ienet_k2_apart: unfinished, left out
    ]
    text = "\n".join(campaign.last_epochs_lines(result))
    assert "### The last epochs of the IEE variants" in text and "from 0.032 to 1." in text
    assert "t_min -3, t_max 0)" in text and all(_shows_row(text, row) for row in rows)
    assert "ienet_k2_apart" not in text and campaign.last_epochs_lines(None) == []


def test_paired_differences_have_a_t_interval_over_the_shared_seeds():
    sys.path.insert(0, str(ROOT))
    from benchmarks.campaign import paired_rows

    def run(group, seed, final, best, complete=True):
        return {"group": group, "seed": seed, "complete": complete, "test_top1": final,
                "test_top1_best_val": best}  # fmt: skip

    runs = [
        *(run("ienet_k2", s, f, 0.88) for s, f in ((0, 0.87), (1, 0.88), (2, 0.86))),
        *(run("bireal", s, f, 0.85) for s, f in ((0, 0.85), (1, 0.84), (2, 0.83))),
        run("iee", 0, 0.89, 0.89),
        run("iee", 1, 0.50, 0.50, complete=False),  # unfinished: not paired
    ]
    pairs = [("ienet_k2", "bireal"), ("iee", "bireal"), ("ienet_k2", "iee")]
    rows = {(row[0], row[1]): row[2:] for row in paired_rows(runs, pairs)}
    # final: differences 2, 4, 3 points; mean 3, sd 1, t(0.975, 2 dof) = 4.302653
    half = 4.302653 * 1.0 / 3**0.5
    assert rows["ienet_k2 - bireal", "final"] == [
        3,
        "+3.00",
        f"[{3 - half:+.2f}, {3 + half:+.2f}]",
        "s0: +2.00, s1: +4.00, s2: +3.00",
    ]
    # best on val: 3 points every seed, a zero-width interval
    assert rows["ienet_k2 - bireal", "best on val"][1:3] == ["+3.00", "[+3.00, +3.00]"]
    assert rows["iee - bireal", "final"] == [1, "+4.00", "n = 1: no interval", "s0: +4.00"]
    assert rows["ienet_k2 - iee", "best on val"] == [1, "-1.00", "n = 1: no interval", "s0: -1.00"]
    assert paired_rows([run("fp", 0, 0.9, 0.9)], [("fp", "bireal")])[0][2:] == [
        0,
        "pending",
        "-",
        "-",
    ]


def test_probes_train_last_with_their_overrides_and_stay_out_of_the_k_sweep(tmp_path):
    sys.path.insert(0, str(ROOT))
    from benchmarks import campaign

    all_jobs = campaign.jobs()
    probes = [job for job in all_jobs if job.probe]
    assert [job.name for job in probes] == [
        "ienet_k2_approx_s0",
        "ienet_k2_apart_s0",
        "ienet_k2_approx_s1",
        "ienet_k2_apart_s1",
    ]
    assert all_jobs[-len(probes) :] == probes  # after the Table-3 set, extras and sweep
    config = campaign.make_config(probes[0], campaign.BUDGET)
    plain = campaign.make_config(campaign.Job("ienet", 2, None, 0), campaign.BUDGET)
    assert config.model.layer == {"input_quantizer": "approx_sign"}
    assert plain.model.layer == {}
    assert config.model.replace(layer={}) == plain.model
    apart = campaign.make_config(probes[1], campaign.BUDGET).model
    assert apart.layer == {
        "thresholds_initializer": {"class_name": "SpreadThresholds", "config": {"width": 0.5}},
        "lambdas_initializer": {"class_name": "Constant", "config": {"value": 1.0}},
    }
    assert config.train == plain.train and config.iee == plain.iee and config.data == plain.data

    def row(job, top1):
        history = [{"epoch": 0, "val_accuracy": top1}]
        return {**campaign._job_fields(job), "complete": True, "test_top1": top1,
                "test_top1_best_val": top1, "val_top1_best": top1, "train_examples": 64,
                "train_time_s": 60.0, "history": history}  # fmt: skip

    runs = [row(campaign.Job("ienet", 2, None, 0), 0.80), row(probes[0], 0.90)]
    budget = {**dataclasses.asdict(campaign.BUDGET), "id": "x", "optimizer": "sgd",
              "probes": {"approx": {"what": "ApproxSign", "overrides": ["a=b"]}}}  # fmt: skip
    result = {"budget": budget, "runs": runs, "complete_runs": 2, "total_runs": 2,
              "machine_time_s": 120.0, **campaign.reporting()}  # fmt: skip
    probe = ["ienet, ApproxSign activations (probe)", "2", "1/1", "90.00", "90.00-90.00"]
    probe += ["90.00", "90.00", "-"]
    assert probe in campaign.table3_rows(runs, result["groups"])
    paired = ["ienet_k2 - ienet_k2_approx", "final", 1, "-10.00", "n = 1: no interval"]
    paired += ["s0: -10.00"]
    assert paired in campaign.paired_rows(runs, result["pairs"])
    # the K sweep holds the one plain IE-Net run: its error is 20%, not the mean with the probe
    points = campaign.k_sweep(runs)
    assert [(p.k, round(p.error, 3), p.runs) for p in points] == [(2, 0.2, 1)]
    text = "\n".join(campaign.section.__wrapped__(result, tmp_path, tmp_path / "r.md"))
    assert _shows_row(text, probe) and _shows_row(text, paired)
    assert "`approx`: ApproxSign (`a=b`)" in text
    assert "![K sweep](campaign_k_sweep.png)" in text
    assert (tmp_path / "campaign_k_sweep.png").stat().st_size > 0


def test_each_section_shows_the_rows_its_result_file_gives(tmp_path):
    """The sections of the committed results (and of a bench_run.json written here) show
    every row their benchmark's row functions compute from the file."""
    sys.path.insert(0, str(ROOT))
    from benchmarks import cost_tables, export_bench, int8, padding, run_all, throughput
    from benchmarks.common import load

    results = ROOT / "benchmarks" / "results"
    (tmp_path / run_all.BENCH_RUN).write_text(json.dumps({"wall_seconds": 150.0, "steps": [
        {"command": "python benchmarks/padding.py", "seconds": 30.0, "status": "ok"},
        {"command": "python benchmarks/cost_tables.py", "seconds": 120.0,
         "status": "failed (1)"}]}))  # fmt: skip
    int8_result, export = load(results / "int8.json"), load(results / "export.json")
    before = load(results / "throughput_before.json")
    after = load(results / "throughput_after.json")
    paths = throughput.result_paths(results)
    speeds = [row for path in paths for row in throughput.table_rows(load(path))]
    shown = {
        run_all.section(tmp_path): run_all.step_rows(load(tmp_path / run_all.BENCH_RUN)),
        padding.section(results): padding.pair_rows(load(results / "padding.json")),
        int8.section(results): [
            *int8.size_rows(int8_result["sizes"]),
            *int8.accuracy_rows(int8_result["accuracy"]),
        ],
        export_bench.section(results): [
            *export_bench.resnet18_rows(export),
            *export_bench.parity_rows(export),
        ],
        cost_tables.cost_section(results): cost_tables.cost_rows(load(results / "cost.json")),
        cost_tables.sizes_section(results): cost_tables.size_rows(load(results / "sizes.json")),
        throughput.section(results): [*speeds, *throughput.before_after_rows(before, after)],
    }
    assert run_all.step_rows(load(tmp_path / run_all.BENCH_RUN))[1] == (
        "`python benchmarks/cost_tables.py`",
        "2.0 min",
        "failed (1)",
    )
    for text, rows in shown.items():
        assert rows and all(_shows_row(text, row) for row in rows), text[:200]


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory) -> Path:
    """The cost/size smoke run (the tiny convnet), into a temporary directory."""
    results = tmp_path_factory.mktemp("bench") / "results"
    # A failed row (exit status 1) is recorded in the file; the schema tests check the rows.
    _run("cost_tables.py", "--smoke", "--output-dir", str(results), check=False)
    return results


@pytest.mark.slow
def test_cost_and_size_smoke_schema(smoke_results):
    cost = json.loads((smoke_results / "cost.json").read_text())
    _check_provenance(cost)
    ok = [row for row in cost["rows"] if row["error"] is None]
    assert {row["variant"] for row in ok} >= {"fp", "bireal", "ienet"}
    for row in ok:
        assert {"memory_mbit", "fp_macs", "binary_ops", "flops", "flops_paper"} <= set(row)
    sizes = json.loads((smoke_results / "sizes.json").read_text())
    _check_provenance(sizes)
    for row in sizes["rows"]:
        assert row["error"] is None, f"{row['model']} {row['variant']}: {row['error']}"
    by_variant = {row["variant"]: row for row in sizes["rows"]}
    assert by_variant["fp"]["LceBconv2d"] == 0 and by_variant["ienet"]["LceBconv2d"] > 0
    assert sizes["ratios"]["convnet"]["fp_over_ienet"] > 1


@pytest.mark.slow
def test_docs_render_the_smoke_results(smoke_results, tmp_path):
    output = tmp_path / "docs" / "results.md"
    _run("make_docs.py", "--results-dir", str(smoke_results), "--output", str(output))
    text = output.read_text()
    assert text.startswith("<!-- generated by benchmarks/make_docs.py")
    sys.path.insert(0, str(ROOT))
    from benchmarks import cost_tables

    cost = cost_tables.cost_rows(json.loads((smoke_results / "cost.json").read_text()))
    sizes = cost_tables.size_rows(json.loads((smoke_results / "sizes.json").read_text()))
    for rows in (cost, sizes):
        assert ("convnet", "ienet") in [row[:2] for row in rows]
        assert all(_shows_row(text, row) for row in rows)
    assert "- command: `python" in text
    # not run here: bench_run, campaign, throughput, stability, padding, int8,
    # arm_instructions and export
    assert text.count("_Not run yet_") == 8


def test_docs_say_not_run_yet_without_result_files(tmp_path):
    output = tmp_path / "results.md"
    _run("make_docs.py", "--results-dir", str(tmp_path / "none"), "--output", str(output))
    text = output.read_text()
    assert text.startswith("<!-- generated by benchmarks/make_docs.py")
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert len(sections) == 10
    assert text.count("_Not run yet_") == 10


CAMPAIGN_ROW_KEYS = {
    "variant",
    "k",
    "compat",
    "seed",
    "complete",
    "epochs",
    "train_examples",
    "test_top1",
    "test_top1_best_val",
    "val_top1_best",
    "train_time_s",
}


@pytest.mark.slow
def test_campaign_smoke_schema_resume_and_docs(tmp_path):
    """The campaign harness on digits, two workers: one small JSON per finished run
    with provenance, campaign.json generated from them, a rerun trains nothing, the docs
    render."""
    results = tmp_path / "results"
    args = [
        "--smoke",
        "--work-dir",
        str(tmp_path / "runs"),
        "--results-dir",
        str(results / "campaign"),
        "--output",
        str(results / "campaign.json"),
    ]
    _run("campaign.py", *args, "--workers", "2")  # the pool path: two runs may overlap
    campaign = json.loads((results / "campaign.json").read_text())
    _check_provenance(campaign)
    assert {"epochs", "batch_size", "validation_examples", "id"} <= set(campaign["budget"])
    assert campaign["complete_runs"] == campaign["total_runs"] == 2
    for row in campaign["runs"]:
        assert CAMPAIGN_ROW_KEYS <= set(row) and row["complete"]
        assert 0.0 <= row["test_top1"] <= 1.0 and row["epochs"] == 1
        run_file = json.loads((results / "campaign" / f"{row['run']}.json").read_text())
        _check_provenance(run_file)
        assert run_file["history"] and run_file["train_examples"] == 64
    stamps = {p.name: p.stat().st_mtime_ns for p in (results / "campaign").iterdir()}
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, str(BENCHMARKS / "campaign.py"), *args]
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and again.stdout.count("finished before") == 2
    assert stamps == {p.name: p.stat().st_mtime_ns for p in (results / "campaign").iterdir()}
    docs = tmp_path / "docs" / "results.md"
    _run("make_docs.py", "--results-dir", str(results), "--output", str(docs))
    text = docs.read_text()
    sys.path.insert(0, str(ROOT))
    from benchmarks.campaign import paired_rows, table3_rows

    table3 = table3_rows(campaign["runs"], campaign["groups"])
    paired = paired_rows(campaign["runs"], campaign["pairs"])
    assert "ienet" in [row[0] for row in table3]
    assert "ienet_k2 - bireal" in [row[0] for row in paired]
    assert "## Campaign" in text and all(_shows_row(text, row) for row in table3 + paired)
    assert (tmp_path / "docs" / "figures" / "campaign_curves.png").stat().st_size > 0
    # The ready model: the complete ienet K=2 run, as a run directory with a verified .tflite.
    ready = tmp_path / "ready"
    _run("campaign.py", *args, "--publish", str(ready))
    assert sorted(p.name for p in ready.iterdir()) == [
        ".ienet-tf.json",
        "README.md",
        "config.yaml",
        "metrics.json",
        "model.keras",
        "model.tflite",
        "model.tflite.json",
    ]
    ienet_row = next(row for row in campaign["runs"] if row["group"] == "ienet_k2")
    published = json.loads((ready / "metrics.json").read_text())
    assert published["test_accuracy"] == ienet_row["test_top1_best_val"]
    assert published["published_from"]["run"] == ienet_row["run"]
    sidecar = json.loads((ready / "model.tflite.json").read_text())
    assert sidecar["op_histogram"].get("LceBconv2d", 0) > 0
    from ienet_tf.train import evaluate

    assert evaluate(ready)["top1"] == pytest.approx(ienet_row["test_top1_best_val"], abs=1e-6)


def test_stability_batchnorm_adds_runs_to_the_rows_measured_before(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT))
    from benchmarks import stability

    def measure(run, batches, images):  # stands in for the 2-5 minute measurement
        return {"run": run.name, "batches": batches, "disagreement_images": images, "new": 1}

    monkeypatch.setattr(stability, "batchnorm_run", measure)
    before = {
        "provenance": {"commit": "a" * 40, "date": "2026-11-30T10:00:00+00:00"},
        "runs": [
            {"run": "fp_s0", "batches": 100, "disagreement_images": 512},  # the first rows
            {"run": "iee_s0", "batches": 100, "disagreement_images": 512, "budget": "b"},
            {"run": "rsign_s0", "batches": 50, "disagreement_images": 512},  # other settings
        ],
    }
    runs = [tmp_path / "b" / "bireal_s1", tmp_path / "b" / "iee_s0", tmp_path / "b" / "iee_s0"]
    rows = stability.merge_rows(stability.batchnorm(runs, 100, 512), before)["runs"]
    assert [(row["run"], "new" in row) for row in rows] == [
        ("bireal_s1", True),
        ("fp_s0", False),
        ("iee_s0", True),  # given again (twice): measured again, once
    ]
    kept = rows[1]["measured"]
    assert kept == {"commit": "a" * 40, "date": "2026-11-30T10:00:00+00:00"}
    assert rows[0]["budget"] == "b" and rows[0]["measured"]["commit"] != kept["commit"]
    assert rows[0]["settings"] == {"batches": 100, "images": 512}
    (line, _) = stability.measured_line(rows)
    # oldest first, then this commit
    assert f"commits aaaaaaaaaa, {rows[0]['measured']['commit'][:10]};" in line
    assert stability.measured_line(rows[:1]) == []


@pytest.mark.slow
def test_stability_smoke_schema_and_docs(tmp_path):
    """benchmarks/stability.py on a tiny digits run: the gradient table (norm per q, the
    budget's learning rates and step sizes), the replay arms and the BatchNorm sources,
    rendered in the docs."""
    results = tmp_path / "results"
    output = results / "stability.json"
    _run("stability.py", "gradients", "--smoke", "--output", str(output))
    _run("stability.py", "replay", "--smoke", "--output", str(output))
    _run("stability.py", "batchnorm", "--smoke", "--output", str(output))
    _run("stability.py", "branches", "--smoke", "--output", str(output))
    _run("stability.py", "qsweep", "--smoke", "--output", str(output))
    result = json.loads(output.read_text())
    _check_provenance(result)
    rows = result["gradients"]["rows"]
    assert [row["q"] for row in rows] == [0.1, 0.3, 1.0]
    for row in rows:
        assert row["global"] > 0 and row["groups"]["thresholds"] > 0
        assert row["step_per_step_lr"] == pytest.approx(row["lr_per_step"] * row["global"])
        assert row["lr_per_step"] <= row["lr_per_epoch"] + 1e-12  # annealed within the epoch
    arms = result["replay"]["arms"]
    assert [arm["arm"] for arm in arms] == ["per-epoch LR", "per-step LR + clip"]
    for arm in arms:
        assert arm["from_epoch"] == 2 and [e["epoch"] for e in arm["epochs"]] == [2]
        assert 0.0 <= arm["test_top1"] <= 1.0 and arm["epochs"][0]["max_abs_threshold"] > 0
    for section in ("gradients", "replay", "batchnorm", "branches", "qsweep"):
        _check_provenance(result[section])
    (sweep,) = result["qsweep"]["runs"]
    assert sweep["settings"] == {"batches": 1, "q": [1.0, 3.0]} and sweep["batches"] == 1
    assert [row["q"] for row in sweep["rows"]] == [1.0, 3.0]
    assert all(row["global"] > 0 and row["groups"]["batch norm"] > 0 for row in sweep["rows"])
    (branches,) = result["branches"]["runs"]
    assert branches["compat"] == "lce" and branches["images"] == 32
    assert [row["layer"] for row in branches["layers"]] == ["conv1", "conv2", "conv3"]
    assert all(0.0 <= row["differ"] <= 1.0 and row["branch"] == 2 for row in branches["layers"])
    (run,) = result["batchnorm"]["runs"]
    assert run["variant"] == "ienet" and run["k"] == 2
    assert run["reestimated_plain_batches"] == run["reestimated_augmented_batches"] == 2
    for source in ("moving", "batch", "reestimated_plain", "reestimated_augmented"):
        assert set(run["top1"][source]) == {"validation", "test"}
        assert all(0.0 <= v <= 1.0 for v in run["top1"][source].values())
    assert [row["layer"] for row in run["disagreement"]] == ["conv1", "conv2", "conv3"]
    assert all(0.0 <= row["disagreement"] <= 1.0 for row in run["disagreement"])
    docs = tmp_path / "docs" / "results.md"
    _run("make_docs.py", "--results-dir", str(results), "--output", str(docs))
    text = docs.read_text()
    assert "### Why the first campaign budget's IE-Net collapsed" in text
    assert "### BatchNorm statistics of the final models" in text
    sys.path.insert(0, str(ROOT))
    from benchmarks import stability

    (branch,) = stability.branch_rows(result["branches"])
    assert branch[0] == "stability-run" and re.fullmatch(r"[0-9.]+", branch[1])
    assert re.fullmatch(r"[0-9.]+ \(conv1\)", branch[2])
    batchnorm = stability.batchnorm_rows(result["batchnorm"])
    assert ["stability-run", "re-estimated, plain train"] in [row[:2] for row in batchnorm]
    _, qsweep = stability.qsweep_rows(result["qsweep"])
    assert [row[:2] for row in qsweep] == [["stability-run", "1"], ["stability-run", "3"]]
    assert all(re.fullmatch(r"[0-9.e+-]+", row[2]) for row in qsweep)
    replay = stability.replay_rows(result["replay"])
    assert "per-step LR + clip" in [row[0] for row in replay]
    _, gradients = stability.gradient_rows(result["gradients"])
    for rows in (gradients, replay, batchnorm, [branch], qsweep):
        assert all(_shows_row(text, row) for row in rows)
    assert "lr x \\|g\\|" in text  # the header's pipes escaped: one column, not two


def test_campaign_skips_a_run_another_process_is_training(tmp_path):
    """A run whose directory another process holds is skipped (not failed, nothing
    written into it), so two campaigns can share the runs."""
    from ienet_tf.runs import Run

    runs = tmp_path / "runs"
    args = ["--smoke", "--work-dir", str(runs), "--results-dir", str(tmp_path / "results")]
    args += ["--output", str(tmp_path / "campaign.json"), "--only", "bireal_s0"]
    with Run(runs / "bireal_s0").claim():
        done = _run("campaign.py", *args)
    assert "bireal_s0: skipped, another process is training it" in done.stdout
    assert "FAILED" not in done.stdout + done.stderr
    assert sorted(p.name for p in (runs / "bireal_s0").iterdir()) == [".ienet-tf.json", ".lock"]
    assert not (tmp_path / "results" / "bireal_s0.json").exists()


@pytest.mark.slow
def test_an_interrupted_campaign_stops_its_workers_and_resumes(tmp_path):
    """SIGINT to the campaign alone (not its process group): its worker processes are
    stopped, no more start, one line and exit 130; the rerun finishes every run."""
    import signal
    import time

    from ienet_tf.runs import Run

    runs = tmp_path / "runs"
    args = ["--smoke", "--workers", "2", "--work-dir", str(runs)]
    args += ["--results-dir", str(tmp_path / "results"), "--output", str(tmp_path / "c.json")]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, str(BENCHMARKS / "campaign.py"), *args]
    campaign = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Python turns SIGINT into KeyboardInterrupt only where it is not ignored at start,
        # and a shell's background job (`make test &`) ignores it: as from a terminal.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not (runs / "bireal_s0" / ".lock").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # until a worker holds its run
    campaign.send_signal(signal.SIGINT)
    out, err = campaign.communicate(timeout=120)
    assert campaign.returncode == 130, err[-3000:]
    assert "interrupted" in out and "Traceback" not in err
    assert "campaign.py: interrupted; run it again to resume" in err
    for name in ("bireal_s0", "ienet_k2_s0"):
        if (runs / name).exists():
            with Run(runs / name).claim():  # no worker is left holding it
                pass
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((tmp_path / "c.json").read_text())["complete_runs"] == 2


def test_a_benchmark_given_a_missing_run_says_so_in_one_line(tmp_path):
    missing = tmp_path / "no_such_run"
    args = ["batchnorm", "--runs", str(missing), "--output", str(tmp_path / "s.json")]
    done = _run("stability.py", *args, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert f"stability.py: run directory {missing} does not exist" in done.stderr
    assert not (tmp_path / "s.json").exists()


def test_the_committed_ready_model_is_the_best_on_validation_campaign_run():
    """converters/ready is what `campaign.py --publish` writes for the committed results:
    the complete ienet K=2 run with the best validation top-1, its numbers, an intact
    model.keras and a .tflite whose sidecar matches it and says it runs binary kernels."""
    import hashlib

    sys.path.insert(0, str(ROOT))
    from benchmarks import campaign

    ready = campaign.READY_DIR / f"{campaign.BUDGET.name}_{campaign.PUBLISHED_GROUP}"
    metrics = json.loads((ready / "metrics.json").read_text())
    rows = json.loads((ROOT / "benchmarks" / "results" / "campaign.json").read_text())["runs"]
    done = [r for r in rows if r["group"] == campaign.PUBLISHED_GROUP and r["complete"]]
    best = max(done, key=lambda r: (r["val_top1_best"], -r["seed"]))
    assert metrics["published_from"]["run"] == best["run"]
    assert metrics["test_accuracy"] == best["test_top1_best_val"]
    assert metrics["val_accuracy_best"] == best["val_top1_best"]

    def sha256(path):
        return hashlib.sha256(path.read_bytes()).hexdigest()

    assert sha256(ready / "model.keras") == metrics["artefacts"]["model.keras"]
    sidecar = json.loads((ready / "model.tflite.json").read_text())
    assert sha256(ready / "model.tflite") == sidecar["sha256"]
    assert sidecar["op_histogram"]["LceBconv2d"] == 36  # 18 IE-BC layers x K = 2
    readme = (ready / "README.md").read_text()
    assert f"`{best['run']}`" in readme and f"{best['test_top1_best_val'] * 100:.2f}%" in readme
    assert (
        f"test top-1 {best['test_top1_best_val'] * 100:.2f}%"
        in (ROOT / "docs" / "guide" / "deployment.md").read_text()
    )


@pytest.mark.parametrize(
    "command, variant, message",
    [
        ("branches", "iee", "(variant iee, K=1) has no IE-BC branches to compare"),
        ("qsweep", "bireal", "(variant bireal) has no IEE quantizer, so q changes nothing"),
    ],
)
def test_stability_refuses_runs_with_nothing_to_measure(tmp_path, command, variant, message):
    """Checked from the runs' configs before anything is measured: one line, exit 2, no
    file written."""
    import yaml

    config = yaml.safe_load((ROOT / "configs" / "digits_convnet_ienet.yaml").read_text())
    config["model"].update(variant=variant, k=None)
    run = tmp_path / f"{variant}_s0"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    output = tmp_path / "s.json"
    done = _run("stability.py", command, "--runs", str(run), "--output", str(output), check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert f"stability.py: {variant}_s0 {message}" in done.stderr
    assert not output.exists()
