import json
import os

import numpy as np
import pytest

import oat_tf
from oat_tf import presets
from oat_tf.config import TrainConfig
from oat_tf.models.zoo import build_model
from oat_tf.presets import from_preset, list_presets, preset_metadata, save_preset
from oat_tf.trainer import load_run
from tests.conftest import images

LAMBDAS = np.array([0.0, 0.3, 1.0], "float32")


@pytest.fixture(scope="module")
def tiny_preset(tmp_path_factory):
    """A tiny OATS network with non-trivial weights, saved as a preset: (directory, model)."""
    config = TrainConfig(method="oats", model="resnet8", width_multiplier=0.25, run_dir="unused")
    model = build_model("resnet8", "oats", width_multiplier=0.25, lam_grid=(0.0, 0.5, 1.0), norm_routing="blend")
    rng = np.random.default_rng(0)
    for variable in model.weights:
        variable.assign(np.asarray(variable) + rng.normal(0, 0.1, variable.shape).astype("float32"))
    directory = str(tmp_path_factory.mktemp("presets") / "tiny")
    save_preset(model, directory, {"class_names": [f"c{i}" for i in range(10)], "train_config": config.to_dict()})
    return directory, model


def test_a_preset_round_trips_the_network_at_every_width(tiny_preset, rng):
    directory, model = tiny_preset
    loaded = from_preset(directory)
    x = images(rng, 3)
    for width in model.widths:
        np.testing.assert_array_equal(np.asarray(loaded({"image": x, "lam": LAMBDAS}, width=width)),
                                      np.asarray(model({"image": x, "lam": LAMBDAS}, width=width)))
    assert sorted(os.listdir(directory)) == sorted(presets.PRESET_FILES)  # nothing half-written left beside it


def test_the_exporter_and_evaluator_take_a_preset_where_they_take_a_run(tiny_preset, rng):
    from oat_tf.evaluate import load_model

    directory, model = tiny_preset
    loaded, config, class_names = load_run(directory)
    assert (config.method, config.model, class_names[0]) == ("oats", "resnet8", "c0")
    x = images(rng, 2)
    expected = np.asarray(model({"image": x, "lam": LAMBDAS[:2]}, width=1.0))
    for network in (loaded, load_model(directory)):
        np.testing.assert_array_equal(np.asarray(network({"image": x, "lam": LAMBDAS[:2]}, width=1.0)), expected)


def test_list_presets_names_the_complete_shipped_directories(tiny_preset, tmp_path, monkeypatch):
    directory, _ = tiny_preset
    monkeypatch.setattr(presets, "SHIPPED", str(tmp_path))
    assert list_presets() == []
    os.symlink(directory, tmp_path / "zeta")
    (tmp_path / "alpha").mkdir()
    (tmp_path / "alpha" / "config.json").write_text("{}")  # incomplete: not listed
    os.symlink(directory, tmp_path / "beta")
    assert oat_tf.list_presets() == ["beta", "zeta"]
    assert preset_metadata("beta")["class_names"][9] == "c9"
    assert oat_tf.from_preset("zeta").count_params() == tiny_preset[1].count_params()


def test_a_bad_name_or_a_broken_preset_gets_an_error_naming_what_is_missing(tiny_preset, tmp_path, monkeypatch):
    directory, _ = tiny_preset
    monkeypatch.setattr(presets, "SHIPPED", str(tmp_path / "shipped"))
    with pytest.raises(FileNotFoundError, match="no preset 'nonexistent'.*shipped: none"):
        from_preset("nonexistent")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((open(os.path.join(directory, "config.json")).read()))
    with pytest.raises(FileNotFoundError, match="model.weights.h5, metadata.json missing"):
        from_preset(str(broken))
    (broken / "metadata.json").write_text("{}")
    (broken / "model.weights.h5").write_bytes(b"not an HDF5 file")
    with pytest.raises(ValueError, match="model.weights.h5' is unreadable"):
        from_preset(str(broken))
    other = tmp_path / "other"
    save_preset(build_model("resnet8", "oat", width_multiplier=0.25), str(other), {})
    (broken / "model.weights.h5").write_bytes((other / "model.weights.h5").read_bytes())  # another network's
    with pytest.raises(ValueError, match="does not fit"):
        from_preset(str(broken))
    (broken / "config.json").write_text(json.dumps({"class_name": "NoSuchLayer", "config": {}}))
    with pytest.raises(ValueError, match="does not describe a network"):
        from_preset(str(broken))
