from pathlib import Path

import pytest

from ienet_tf import config as config_lib
from ienet_tf.errors import ConfigError

ALL_CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))
TUNE_CONFIGS = [p for p in ALL_CONFIGS if p.stem.startswith("tune_")]
CONFIGS = [p for p in ALL_CONFIGS if p not in TUNE_CONFIGS]
SPREAD = "{class_name: SpreadThresholds, config: {width: 0.5}}"
CONST = "{class_name: Constant, config: {value: 1.0}}"


def test_the_configs_cover_the_papers_rows():
    names = {path.stem for path in CONFIGS}
    for variant in ("fp", "bireal", "rsign", "iebc", "iee", "ienet"):
        assert f"cifar10_resnet20_{variant}" in names
        assert f"fashion_mnist_resnet20_{variant}" in names
    for name in ("resnet18_cifar", "vgg_small"):
        assert {f"cifar10_{name}_ienet", f"cifar10_{name}_fp"} <= names
    for name in ("resnet18", "resnet34"):
        assert {f"imagenet_{name}_{v}" for v in ("ienet", "bireal", "fp")} <= names
    assert "digits_convnet_ienet" in names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_config_is_valid_named_and_cites_its_row(path):
    config = config_lib.load(path)
    dataset, rest = (
        path.stem.split("_", 1)
        if not path.stem.startswith("fashion_mnist")
        else ("fashion_mnist", path.stem[len("fashion_mnist_") :])
    )
    expected_data = {"imagenet": "imagenet2012"}.get(dataset, dataset)
    assert config.data.name == expected_data
    assert rest == f"{config.model.name}_{config.model.variant.replace('+', '_')}"
    first_line = path.read_text().splitlines()[0]
    assert first_line.startswith("# ")
    if dataset in ("cifar10", "imagenet"):
        # The IE-Net paper's table, or the SPEC section of IR²Net / Elastic-Link.
        assert "Table" in first_line or "SPEC §" in first_line
        assert "published" in first_line


@pytest.mark.parametrize(
    "name, learning_rate, epochs, published",
    [
        ("resnet20", 0.11, 500, "87.2"),
        ("resnet18_cifar", 0.08, 600, "92.5"),
        ("vgg_small", 0.08, 400, "91.5"),
    ],
)
def test_ir2net_recipes_match_the_release(name, learning_rate, epochs, published):
    path = Path(f"configs/cifar10_{name}_ienet_ir2net.yaml")
    config = config_lib.load(path)
    assert config.model.variant == "ienet+ir2net"
    assert (config.train.learning_rate, config.train.epochs) == (learning_rate, epochs)
    assert f"published {published}%" in path.read_text().splitlines()[0]


def test_recipes_match_the_paper():
    cifar = config_lib.load(Path("configs/cifar10_resnet20_ienet.yaml"))
    assert (cifar.train.epochs, cifar.train.batch_size, cifar.train.learning_rate) == (
        400,
        128,
        0.1,
    )
    assert (cifar.train.weight_decay, cifar.train.weight_decay_on) == (1e-4, "all")
    assert cifar.train.warmup_epochs == 0 and cifar.model.k == 2
    imagenet = config_lib.load(Path("configs/imagenet_resnet18_ienet.yaml"))
    assert (imagenet.train.batch_size, imagenet.train.warmup_epochs) == (512, 5)
    assert imagenet.train.weight_decay_on == "conv_and_fc"
    assert (imagenet.iee.t_min, imagenet.iee.t_max) == (-2.0, 1.0)


def test_overrides_and_round_trip(tmp_path):
    config = config_lib.load(
        Path("configs/cifar10_resnet20_ienet.yaml"),
        ["train.epochs=5", "model.k=3", "iee.t_max=0.5", "data.subset=100"],
    )
    assert (config.train.epochs, config.model.k, config.iee.t_max) == (5, 3, 0.5)
    assert config.data.subset == 100
    path = tmp_path / "resolved.yaml"
    path.write_text(config_lib.dump(config))
    assert config_lib.load(path) == config


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.epochs=0"], "train.epochs: must be > 0"),
        (["train.epochs=five"], "train.epochs: expected an integer, got 'five'"),
        (["train.epochs=2.5"], "train.epochs: expected an integer"),
        (["train.learning_rate=-1"], "train.learning_rate: must be > 0"),
        (["train.momentum=1.0"], "train.momentum"),
        (["train.warmup_epochs=400"], "train.warmup_epochs"),
        (["train.strategy=horovod"], "train.strategy: 'horovod' is not one of"),
        (["train.optimizer=lamb"], "train.optimizer"),
        (["train.epoch=3"], "train.epoch: unknown key; allowed:"),
        (["extra.key=1"], "extra: unknown key"),
        (["model.name=resnet50"], "model.name: unknown model 'resnet50'"),
        (["model.recovery_ratio=0"], "model.recovery_ratio: must be >= 1, got 0"),
        (["model.erase_threshold=-0.1"], "model.erase_threshold: must be >= 0"),
        (["model.variant=ienet+el+el"], "model.variant: Variant 'ienet.el.el' repeats a modifier"),
        (["model.variant=xnor"], "model.variant: unknown variant"),
        (["model.variant=bireal"], "model.k:"),
        (["model.k=0"], "model.k:"),
        (
            ["model.layer.input_quantizer=tanh"],
            "model.layer.input_quantizer: Unknown `input_quantizer` 'tanh'",
        ),
        (["model.layer.input_quantizr=ste_sign"], "did you mean 'input_quantizer'"),
        (["model.layer.k=3"], "model.layer.k: `k` is set by `model.k`"),
        (["model.layer=3"], "model.layer: expected a mapping, got 3"),
        (
            ["model.variant=iee", "model.k=null", f"model.layer.thresholds_initializer={SPREAD}"],
            "model.layer.thresholds_initializer: `thresholds_initializer` sets up the learnable "
            "thresholds and 'iee' has none",
        ),
        (
            ["model.variant=rsign", "model.k=null", f"model.layer.lambdas_initializer={CONST}"],
            "model.layer.lambdas_initializer: .* 'rsign' with K=1 has one branch",
        ),
        (
            ["model.k=1", f"model.layer.lambdas_initializer={CONST}"],
            "model.layer.lambdas_initializer: .* 'ienet' with K=1 has one branch",
        ),
        (
            [f"model.layer.thresholds_initializer={SPREAD.replace('0.5', '1.5')}"],
            "model.layer.thresholds_initializer: `width` must be a number in [0, 1]",
        ),
        (
            ["model.variant=fp", "model.k=null", "model.layer.input_quantizer=ste_sign"],
            "model.layer: 'fp' has no IE-BC layers to take options ['input_quantizer']",
        ),
        (["model.input_shape=[32, 32]"], "model.input_shape: expected"),
        (["data.name=mnist"], "data.name: unknown data set 'mnist'"),
        (["data.subset=0"], "data.subset: must be > 0"),
        (["iee.t_min=2.0"], "iee.t_min: must be smaller than iee.t_max"),
        (["iee.t_min=nan"], "iee.t_min: expected a number"),
        (["train"], "expected KEY.PATH=VALUE"),
        (["model=3"], "model: expected a mapping"),
    ],
)
def test_bad_values_name_the_key_path(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        config_lib.load(Path("configs/cifar10_resnet20_ienet.yaml"), overrides)


def test_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        config_lib.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config_lib.load(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        config_lib.load(listing)


@pytest.mark.parametrize("path", TUNE_CONFIGS, ids=lambda p: p.stem)
def test_tune_configs_are_valid(path):
    config = config_lib.load(path, schema=config_lib.TuneFileConfig)
    assert config.tune.k[0] <= config.tune.k[1]
    assert path.read_text().startswith("# ")


BASE = Path("configs/cifar10_resnet20_ienet.yaml")


def _file(tmp_path, content, name="c.yaml"):
    path = tmp_path / name
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


def _error(path, overrides=None, schema=config_lib.Config) -> str:
    with pytest.raises(ConfigError) as info:
        config_lib.load(path, overrides, schema=schema)
    message = str(info.value)
    assert "\n" not in message and len(message) < 600, message
    return message


@pytest.mark.parametrize("content", ["", "\n\n  \n", "# only\n# comments\n", "{}\n", "null\n"])
def test_empty_files_are_refused(tmp_path, content):
    path = _file(tmp_path, content)
    message = _error(path, ["train.epochs=5"])
    assert message.startswith(f"{path} is empty")
    assert "needs at least model and data sections (see configs/" in message


def test_non_utf8_files_name_the_byte_offset(tmp_path):
    path = _file(tmp_path, "model:\n  name: r\xe9snet20\n".encode("latin-1"))
    assert _error(path) == (
        f"{path} is not UTF-8 text: byte 0xe9 at offset 16 (line 2); save it as UTF-8."
    )
    assert "offset 0" in _error(_file(tmp_path, BASE.read_text().encode("utf-16")))
    # A UTF-8 byte-order mark is UTF-8.
    assert config_lib.load(_file(tmp_path, "\ufeff" + BASE.read_text())).model.k == 2


BILLION_LAUGHS = (
    'lol: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(
        f"l{i}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 10) + "]\n" for i in range(8)
    )
    + "model: {name: *i}\n"
)  # 10^9 strings once expanded


def test_alias_bombs_are_refused_before_expansion(tmp_path):
    import tracemalloc

    assert len(BILLION_LAUGHS) < 600
    path = _file(tmp_path, BILLION_LAUGHS)
    tracemalloc.start()
    try:
        message = _error(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000, peak
    assert message.startswith(f"{path}: the document expands to more than")
    assert "anchors and aliases" in message
    recursive = _file(tmp_path, "model: &m {name: *m}\n")
    assert "refers to its own anchor" in _error(recursive)
    # An --set value goes through the same guards.
    bomb = "[" + ", ".join(f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9))
    bomb = bomb.replace("*a0", "1") + "]"
    assert "--set model.name=" in _error(BASE, ["model.name=" + bomb]).replace("'", "")
    # Anchors within the bound (and merge keys) still work.
    shared = BASE.read_text().replace("iee:\n", "iee: &iee\n") + "\n"
    merged = _file(tmp_path, shared.replace("train:\n", "train:\n  <<: {epochs: 7}\n", 1))
    assert config_lib.load(merged).train.epochs == 400


def test_oversized_deep_and_odd_documents_are_refused(tmp_path):
    big = _file(tmp_path, "# padding\n" * (config_lib.MAX_FILE_BYTES // 10 + 1))
    assert f"a config file is at most {config_lib.MAX_FILE_BYTES} bytes" in _error(big)
    deep = _file(tmp_path, "model: " + "[" * 5000 + "]" * 5000 + "\n")
    assert f"nested more than {config_lib.MAX_DEPTH} levels deep" in _error(deep)
    many = _file(tmp_path, "model: [" + "1, " * 20_000 + "]\n")
    assert f"holds more than {config_lib.MAX_NODES} values" in _error(many)
    long_int = _file(tmp_path, "model: {k: " + "9" * 5000 + "}\n")
    assert "line 1: an integer of 5000 characters" in _error(long_int)
    duplicate = _file(tmp_path, BASE.read_text().replace("epochs: 400", "epochs: 400\n  epochs: 5"))
    assert "duplicate key 'epochs' (first on line" in _error(duplicate)
    nul = _file(tmp_path, "model: {name: a\x00}\n")
    assert "not valid YAML: character 15: unacceptable character #x0000" in _error(nul)
    syntax = _file(tmp_path, "model: [unclosed\n")
    assert "not valid YAML: line 2, column 1: expected ',' or ']'" in _error(syntax)


def test_k_is_bounded():
    assert config_lib.load(BASE, [f"model.k={config_lib.MAX_K}"]).model.k == config_lib.MAX_K
    message = _error(BASE, ["model.k=1000"])
    assert message.startswith("--set model.k=1000: model.k: must be <= 16 (the paper explores")
    tune = Path("configs/tune_digits.yaml")
    assert "tune.k: K must be <= 16" in _error(tune, ["tune.k=[1, 40]"], config_lib.TuneFileConfig)


def test_numbers_in_exponent_form_without_a_dot(tmp_path):
    text = BASE.read_text().replace("learning_rate: 0.1", "learning_rate: 1e-3")
    path = _file(tmp_path, text.replace("weight_decay: 1.0e-4", "weight_decay: 5e-4"))
    train = config_lib.load(path).train
    assert (train.learning_rate, train.weight_decay) == (1e-3, 5e-4)
    overrides = ["train.learning_rate=2E-3", "train.momentum=.5", "iee.t_min=-2e0"]
    config = config_lib.load(BASE, overrides)
    assert (config.train.learning_rate, config.train.momentum, config.iee.t_min) == (
        2e-3,
        0.5,
        -2.0,
    )
    assert "expected a number, got 'fast'" in _error(BASE, ["train.learning_rate=fast"])
    assert "expected a number, got '1e999'" in _error(BASE, ["train.learning_rate=1e999"])
    assert "train.epochs: expected an integer, got '1e3'" in _error(BASE, ["train.epochs=1e3"])


def test_errors_name_the_file_or_the_override(tmp_path):
    assert (
        _error(BASE, ["train.epochs=0"])
        == "--set train.epochs=0: train.epochs: must be > 0, got 0."
    )
    broken = _file(tmp_path, BASE.read_text().replace("epochs: 400", "epochs: 0"))
    assert _error(broken) == f"{broken}: train.epochs: must be > 0, got 0."
    assert _error(broken, ["model.k=3"]).startswith(f"{broken}: train.epochs:")
    assert config_lib.load(broken, ["train.epochs=5"]).train.epochs == 5  # the run's value
    # A check of two keys blames the override that set either.
    warm = _file(tmp_path, BASE.read_text().replace("warmup_epochs: 0", "warmup_epochs: 50"))
    message = _error(warm, ["model.k=3", "train.epochs=10"])
    assert message.startswith("--set train.epochs=10: train.warmup_epochs: must be in")
    assert _error(BASE, ["model.variant=bireal"]).startswith("--set model.variant=bireal: model.k:")
    assert _error(BASE, ["iee.t_max=-5"]).startswith("--set iee.t_max=-5: iee.t_min:")


def test_misspelled_keys_get_a_suggestion(tmp_path):
    message = _error(BASE, ["train.epoch=3"])
    assert message.startswith("--set train.epoch=3: train.epoch: unknown key; allowed: [")
    assert message.endswith("; did you mean 'epochs'?")
    typo = _file(tmp_path, BASE.read_text().replace("train:", "trian:"))
    assert _error(typo) == (
        f"{typo}: trian: unknown key; allowed: ['data', 'export', 'iee', 'model', 'train']; "
        "did you mean 'train'?"
    )
    assert _error(BASE, ["model.learningrate=1"]).endswith("'variant'].")  # nothing close
    assert "did you mean 'learning_rate'" in _error(BASE, ["train.learning-rate=0.1"])
    odd_keys = _file(tmp_path, "model: {name: resnet20}\ndata: {name: cifar10}\n1: a\n~: b\n")
    assert ": 1: unknown key; allowed:" in _error(odd_keys)


def test_wrong_sections_and_long_values_stay_one_line(tmp_path):
    head = "model: {name: resnet20}\ndata: {name: cifar10}\n"
    assert _error(_file(tmp_path, head + "train: 5\n")).endswith(
        "train: expected a mapping, got 5."
    )
    listing = _file(tmp_path, head + "train: [" + ", ".join(["x" * 50] * 1000) + "]\n")
    assert "train: expected a mapping, got [" in _error(listing)
    huge = "y" * 300_000
    assert "model.name: unknown model 'yyy" in _error(BASE, [f"model.name={huge}"])
    assert "unknown model 'yyy" in _error(_file(tmp_path, head.replace("resnet20", huge)))
    assert "got '" in _error(BASE, [f"train.epochs={huge}"])
    top = _file(tmp_path, "- " + "z" * 10_000 + "\n")
    assert "expected a mapping at the top level" in _error(top)


def test_overrides_that_cannot_apply():
    assert _error(BASE, ["train.epochs.x=1"]) == (
        "--set train.epochs.x=1: train.epochs is 400, not a mapping, so it has no key 'x'."
    )
    assert _error(BASE, ["model=3", "model.k=2"]).startswith(
        "--set model.k=2: model is 3, not a mapping"
    )
    for bad in ("train..epochs=1", ".epochs=1", "train.=1", "=1"):
        assert "expected KEY.PATH=VALUE" in _error(BASE, [bad])
    assert "value is not valid YAML: line 1, column 1: found character '@'" in _error(
        BASE, ["model.name=@x"]
    )
    assert config_lib.load(BASE, [" train.epochs = 5"]).train.epochs == 5
    raw = {"train": {"epochs": 1}}
    assert config_lib.apply_overrides(raw, ["train.epochs=2", "data.name=mnist"]) == {
        "train": {"epochs": 2},
        "data": {"name": "mnist"},
    }
    assert raw == {"train": {"epochs": 1}}  # the input is not modified


def test_the_reference_is_the_schema_and_docs_config_md_is_current():
    reference = config_lib.reference()
    schema = config_lib.TuneFileConfig
    keys = [
        f"{section}.{key}"
        for section, field in schema.model_fields.items()
        for key in field.annotation.model_fields
    ]
    rows = [line for line in reference.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == keys
    assert "| `train.optimizer` | `sgd` \\| `keras_sgd` \\| `adam` | `sgd` |" in reference
    assert "| `train.momentum` | number | `0.9` | SGD momentum (>= 0, < 1) |" in reference
    docs = Path(__file__).parent.parent / "docs" / "config.md"
    assert docs.read_text().endswith(reference), "regenerate docs/config.md (see its header)"


def test_sections_are_frozen_and_replace_validates():
    config = config_lib.load(BASE)
    with pytest.raises(Exception, match="frozen"):
        config.train.epochs = 3
    assert config.train.replace(epochs=3).epochs == 3
    with pytest.raises(ConfigError, match=r"^epochs: must be > 0, got 0\.$"):
        config.train.replace(epochs=0)
    assert config_lib.validate(config) == config


def test_a_bundled_config_is_found_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config_lib.load("digits_convnet_ienet").model.name == "convnet"
    assert (
        config_lib.resolve("digits_convnet_ienet.yaml")
        == config_lib.bundled()["digits_convnet_ienet"]
    )
    # A file of the user's with that name wins over the bundled one.
    (tmp_path / "digits_convnet_ienet.yaml").write_text("model: {name: resnet20}\ndata: {}\n")
    assert config_lib.resolve("digits_convnet_ienet.yaml") == Path("digits_convnet_ienet.yaml")
    with pytest.raises(ConfigError, match="did you mean the bundled 'cifar10_resnet20_ienet'"):
        config_lib.load("cifar10_resnet20_ienett")
    with pytest.raises(ConfigError, match=r"config file not found: sub/x\.yaml$"):
        config_lib.load("sub/x.yaml")


def test_aliases_cannot_nest_deeper_than_the_limit(tmp_path):
    # Each line is shallow; the alias chain nests 25 lists once expanded.
    chain = "a0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 25))
    path = _file(tmp_path, "model:\n  layer:\n" + "".join(f"    {x}\n" for x in chain.splitlines()))
    assert f"nested more than {config_lib.MAX_DEPTH} levels deep" in _error(path)
    recursive = _file(tmp_path, "model: &m\n  name: *m\n")  # the line of the anchor
    assert ": line 1: an alias refers to its own anchor" in _error(recursive)
    # A repeated key inside an anchored mapping is found once, where it is written.
    twice = _file(tmp_path, "x: &x {a: 1, a: 2}\ny: *x\n")
    assert "line 1: duplicate key 'a' (first on line 1)" in _error(twice)


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.k=true", "model.k: expected an integer or null, got True."),
        (
            "model.input_shape=[32, 32]",
            "model.input_shape: expected a list of 3 integers or null, got [32, 32].",
        ),
        ("model.input_shape=[32, 0, 3]", "model.input_shape[1]: must be > 0, got 0."),
        ("model.input_shape=[32, x, 3]", "model.input_shape[1]: expected an integer, got 'x'."),
        (
            "train.optimizer=null",
            "train.optimizer: None is not one of ['sgd', 'keras_sgd', 'adam'].",
        ),
        ("model.compat=torch", "model.compat: 'torch' is not one of ['lce', 'release']."),
        ("data.data_dir=5", "data.data_dir: expected a string or null, got 5."),
        ("iee.t_min=.inf", "iee.t_min: expected a number, got inf."),
        ("model.layer=[1]", "model.layer: expected a mapping, got [1]."),
    ],
)
def test_type_errors_say_what_the_setting_takes(override, message):
    assert _error(BASE, [override]).endswith(f": {message}")


def test_tuple_settings_say_their_length():
    tune = Path("configs/tune_digits.yaml")
    for value in ("[1]", "[1, 2, 3]", "5", "null"):
        message = _error(tune, [f"tune.k={value}"], config_lib.TuneFileConfig)
        assert "tune.k: expected a list of 2 integers, got " in message
    message = _error(tune, ["tune.learning_rate=[1]"], config_lib.TuneFileConfig)
    assert "tune.learning_rate: expected a list of 2 numbers or null, got [1]." in message


def test_an_unknown_key_is_named_before_a_bad_value():
    assert _error(BASE, ["train.epochs=0", "train.epoch=3"]).startswith(
        "--set train.epoch=3: train.epoch: unknown key;"
    )
    with pytest.raises(ConfigError, match=r"^model\.nme: unknown key; .* did you mean 'name'\?$"):
        config_lib.from_dict({"model": {"k": "x", "nme": 1}})


def test_the_reference_renders_multi_line_descriptions_on_one_row():
    rows = [line for line in config_lib.reference().splitlines() if line.startswith("| `")]
    assert len(rows) == sum(
        len(f.annotation.model_fields) for f in config_lib.TuneFileConfig.model_fields.values()
    )
    assert all(row.endswith(" |") and "  " not in row for row in rows)
