from pathlib import Path

import pytest

from ienet_tf import config as config_lib
from ienet_tf.config import ConfigError

ALL_CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))
TUNE_CONFIGS = [p for p in ALL_CONFIGS if p.stem.startswith("tune_")]
CONFIGS = [p for p in ALL_CONFIGS if p not in TUNE_CONFIGS]


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
