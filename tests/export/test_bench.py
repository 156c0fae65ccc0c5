"""`ienet bench`, and the on-device benchmark script's parsing (converters/)."""

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest

from ienet_tf.cli import main
from ienet_tf.export.bench import BenchResult

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parents[1] / "fixtures"


def _load_script():
    spec = importlib.util.spec_from_file_location(
        "lce_benchmark", ROOT / "converters" / "lce_benchmark.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lce_benchmark = _load_script()


def test_script_reports_the_same_fields_as_ienet_bench():
    assert lce_benchmark.FIELDS == tuple(f.name for f in dataclasses.fields(BenchResult))


@pytest.mark.parametrize(
    "log, threads, runs, median, mean, low, high",
    [
        # The second stats line (the measured runs) counts, not the warm-up line.
        ("benchmark_output_plain.log", 1, 50, None, 74.9324, 74.398, 76.102),
        ("benchmark_output_info_prefix.log", 4, 50, 25.987, 26.0407, 25.801, 27.340),
    ],
)
def test_parse_benchmark_output(log, threads, runs, median, mean, low, high):
    result = lce_benchmark.parse_output(
        (DATA / log).read_text(), "m.tflite", 123, "test", threads=99
    )
    assert set(result) == set(lce_benchmark.FIELDS)
    assert (result["threads"], result["runs"]) == (threads, runs)
    assert result["median_ms"] == (None if median is None else pytest.approx(median))
    assert result["mean_ms"] == pytest.approx(mean)
    assert (result["min_ms"], result["max_ms"]) == (pytest.approx(low), pytest.approx(high))
    assert result["size_bytes"] == 123 and result["tool"] == "lce_benchmark_model"


def test_failed_benchmark_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(lce_benchmark.BenchmarkOutputError, match="unresolved custom op"):
        lce_benchmark.parse_output(
            (DATA / "benchmark_output_failed.log").read_text(), "m", 1, "x", 1
        )
    model = tmp_path / "m.tflite"
    model.write_bytes(b"0" * 10)
    assert (
        lce_benchmark.main([str(model), "--parse", str(DATA / "benchmark_output_failed.log")]) == 2
    )
    assert "no timing statistics" in capsys.readouterr().err
    assert lce_benchmark.main([str(tmp_path / "missing.tflite")]) == 2


def test_script_main_parses_a_log_into_json(tmp_path, capsys):
    model = tmp_path / "r18.tflite"
    model.write_bytes(b"\0" * 4096)
    log = str(DATA / "benchmark_output_info_prefix.log")
    assert lce_benchmark.main([str(model), "--parse", log]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "r18.tflite" and result["size_bytes"] == 4096


@pytest.fixture(scope="module")
def exported(tiny_run):
    """The tiny run, exported with its sidecar."""
    tflite = tiny_run / "model.tflite"
    assert main(["export", "--run", str(tiny_run), "--output", str(tflite)]) == 0
    return tflite


def test_export_sidecar_records_the_source(exported):
    report = json.loads(exported.with_name("model.tflite.json").read_text())
    assert report["source"]["config"]["model"]["name"] == "convnet"
    assert report["source"]["parity_inputs"].startswith("first 64 digits test images")
    assert report["input_shape"] == [8, 8, 1] and report["num_classes"] == 10
    assert report["op_histogram"]["LceBconv2d"] == report["expected_ops"]["LceBconv2d"]


def test_bench_json_and_compare(exported, capsys):
    capsys.readouterr()
    assert main(["bench", "--model", str(exported), "--runs", "5", "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert set(result) == set(lce_benchmark.FIELDS)
    assert 0 < result["min_ms"] <= result["median_ms"] <= result["max_ms"]
    assert result["runs"] == 5 and result["threads"] == 1
    assert result["size_bytes"] == exported.stat().st_size

    assert main(["bench", "--model", str(exported), "--runs", "3", "--compare"]) == 0
    out = capsys.readouterr().out
    assert "convnet fp" in out and "convnet bireal" in out
    assert "not the speed-up of a binary network on ARM" in out


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.tflite", "missing.tflite does not exist"),
        (
            lambda d: (d / "junk.tflite").write_bytes(b"not a model") and d / "junk.tflite",
            "not a TFLite flatbuffer",
        ),
    ],
)
def test_bench_bad_files(tmp_path, capsys, make, message):
    assert main(["bench", "--model", str(make(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_compare_without_the_sidecar_reads_the_file(exported, tmp_path, capsys):
    lone = tmp_path / "lone.tflite"
    lone.write_bytes(exported.read_bytes())
    assert main(["bench", "--model", str(lone), "--compare", "--runs", "1"]) == 0
    out = capsys.readouterr().out  # the network and its shapes, from the file alone
    assert "convnet fp" in out and "convnet bireal" in out
