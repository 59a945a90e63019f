"""Bundles: identical outputs after a round trip; tampering and pickle data are refused."""

import json
import pickle
import shutil

import pytest
import torch

from engine_helpers import EngineTestPlugin, dataset, fast_config, tiny_spec, xor_samples
from twinlens.contract.bundle_files import read_bundle_config
from twinlens.contract.errors import BundleError
from twinlens.engine.predictor import Predictor
from twinlens.engine.training import train_model


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "model"
    train_model(EngineTestPlugin(), dataset(xor_samples(120, 4)), out_dir=out, spec=tiny_spec("early"), config=fast_config(epochs=2))
    return out


def _copy(bundle, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(bundle, target)
    return target


def test_bundle_layout_and_config(bundle):
    config = read_bundle_config(bundle)
    assert (bundle / "model.safetensors").is_file() and (bundle / "tokenizer").is_dir()
    assert config["plugin"] == "engine_test"
    assert {"torch", "timm", "transformers", "python"} <= set(config["versions"])
    assert config["model_spec"]["fusion"] == "early"
    assert config["label_schema"]["tasks"][0]["name"] == "xor"
    assert "validation" in config["metrics"] and len(config["content_hash"]) == 64


def test_round_trip_gives_identical_outputs(bundle, tmp_path):
    samples = xor_samples(16, 9)
    first = Predictor.from_bundle(bundle).predict(samples)
    second = Predictor.from_bundle(_copy(bundle, tmp_path)).predict(samples)
    assert [p.heads["xor"].probabilities for p in first] == [p.heads["xor"].probabilities for p in second]
    assert first[0].model_version == second[0].model_version == read_bundle_config(bundle)["version"]


def test_modified_weights_are_refused(bundle, tmp_path):
    copy = _copy(bundle, tmp_path)
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="fails its hash"):
        Predictor.from_bundle(copy)


def test_modified_config_is_refused(bundle, tmp_path):
    copy = _copy(bundle, tmp_path)
    config = json.loads((copy / "config.json").read_text())
    config["label_schema"]["tasks"][0]["labels"].reverse()
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="content hash"):
        Predictor.from_bundle(copy)


@pytest.mark.parametrize("name", ["extra.pkl", "tokenizer/weights.json"])
def test_pickle_data_is_refused_whatever_its_name(bundle, tmp_path, name):
    copy = _copy(bundle, tmp_path)
    (copy / name).write_bytes(pickle.dumps({"payload": 1}))
    with pytest.raises(BundleError, match="pickle"):
        read_bundle_config(copy)


def test_torch_save_file_is_refused(bundle, tmp_path):
    copy = _copy(bundle, tmp_path)
    torch.save({"w": torch.zeros(1)}, copy / "model.safetensors")
    with pytest.raises(BundleError, match="pickle"):
        Predictor.from_bundle(copy)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not a model bundle"):
        read_bundle_config(tmp_path)


def test_saving_over_a_folder_that_is_not_a_bundle_is_refused(tmp_path):
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    with pytest.raises(BundleError, match="not a model bundle"):
        train_model(EngineTestPlugin(), dataset(xor_samples(40, 4)), out_dir=precious, spec=tiny_spec(), config=fast_config(epochs=1))
    assert (precious / "keep.txt").read_text() == "mine"
