"""ONNX export and the onnxruntime predictor: parity with torch for every fusion strategy
and head kind (with and without a missing modality), the int8 graph's metric drop on a
held-out generated set, ensembles, the pretrained MiniLM encoder, integrity checks and the
fallback to torch."""

from __future__ import annotations

import json
import logging
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from engine_helpers import TINY_IMAGE, EngineTestPlugin, fast_config, tiny_spec, xor_samples
from twinlens.contract.bundle_files import read_bundle_config, seal_config
from twinlens.contract.errors import BundleError
from twinlens.contract.plugin import Dataset
from twinlens.contract.schema import Label, LabelSchema, Task
from twinlens.contract.spec import ModelSpec, TextEncoderSpec
from twinlens.engine.bundle import load_bundle, save_bundle
from twinlens.engine.data import Preprocessor
from twinlens.engine.fusion import FUSIONS
from twinlens.engine.inference import infer_logits
from twinlens.engine.metrics import full_report
from twinlens.engine.onnx_export import FP32_NAME, INT8_NAME, export_bundle
from twinlens.engine.onnx_runtime import OnnxPredictor, check_graph
from twinlens.engine.predictor import Predictor
from twinlens.engine.training import train_model

FUSION_NAMES = ["concat", "early", "gated", "weighted", "cross_attention"]
LOGIT_TOLERANCE = 1e-4
INT8_MAX_DROP = 0.01
CPU = torch.device("cpu")

# One head of each kind, all learnable from the XOR samples' image colour and text animal.
SCHEMA = LabelSchema(tasks=(
    Task(name="xor", kind="multiclass", labels=(Label(name="different"), Label(name="same"))),
    Task(name="attributes", kind="multilabel", labels=(Label(name="red"), Label(name="cat"))),
    Task(name="score", kind="regression"),
))


def three_heads(samples):
    for sample in samples:
        colour, animal = sample.labels["colour"], sample.labels["animal"]
        sample.labels = {"xor": sample.labels["xor"],
                         "attributes": [name for name, on in (("red", colour == "red"), ("cat", animal == "cat")) if on],
                         "score": 2.0 * (colour == "red") + 1.0 * (animal == "cat")}
    return samples


def held_out():
    """Generated rows the networks never saw; a fifth miss the image, a fifth the text.
    Enough of them that int8's drop is not one or two flipped rows of a tiny network (on
    160 rows one flip moved macro-F1 by 0.006, and the drop went past 0.01 in one run)."""
    return three_heads(xor_samples(640, 99, missing_image=0.2, missing_text=0.25))


def test_every_fusion_strategy_is_covered():
    assert sorted(FUSIONS) == sorted(FUSION_NAMES)


@pytest.fixture(scope="module", params=FUSION_NAMES)
def exported(request, tmp_path_factory):
    """A tiny network with all three head kinds and the lexical branch, trained on XOR,
    exported with an int8 graph next to the fp32 one."""
    root = tmp_path_factory.mktemp(f"onnx-{request.param}")
    train = Dataset(three_heads(xor_samples(200, 4, missing_image=0.1, missing_text=0.1)), SCHEMA)
    config = fast_config(epochs=14 if request.param in ("early", "cross_attention") else 12)
    train_model(EngineTestPlugin(), train, out_dir=root / "torch", spec=tiny_spec(request.param, lexical_buckets=512), config=config)
    export_bundle(root / "torch", root / "onnx", quantize="int8")
    return request.param, root / "torch", root / "onnx"


def _torch_logits(bundle: Path, encoded, modalities=None):
    model, tokenizer, _ = load_bundle(bundle)
    return infer_logits(model, Preprocessor(model.spec, tokenizer), encoded, device=CPU, modalities=modalities)


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[name].float() - b[name].float()).abs().max()) for name in a)


def test_fp32_logits_match_torch_with_and_without_missing_modalities(exported):
    fusion, _, bundle = exported
    predictor = OnnxPredictor.from_bundle(bundle, precision="fp32")
    complete = predictor.pre.encode_many(three_heads(xor_samples(24, 7)))
    missing = predictor.pre.encode_many(held_out()[:48])
    assert any(e.pixels is None for e in missing) and any(e.tokens["text"] is None for e in missing)
    for encoded in (complete, missing):
        for modalities in (None, ["image"], ["text"], ["__none__"]):
            reference = _torch_logits(bundle, encoded, modalities)
            difference = _max_diff(predictor.logits(encoded, modalities, batch_size=16), reference)
            assert difference <= LOGIT_TOLERANCE, (fusion, modalities, difference)


def test_predictions_and_contributions_match_torch(exported):
    fusion, _, bundle = exported
    samples = held_out()[:40]
    torch_predictions = Predictor.from_bundle(bundle).predict(samples)
    onnx_predictor = Predictor.from_bundle(bundle, runtime="onnx")
    assert isinstance(onnx_predictor, OnnxPredictor) and onnx_predictor.precision == "int8"  # the exported default
    fp32 = OnnxPredictor.from_bundle(bundle, precision="fp32")
    onnx_predictions = fp32.predict(samples)
    assert onnx_predictor.version == fp32.version == read_bundle_config(bundle)["version"]
    for a, b in zip(torch_predictions, onnx_predictions):
        assert a.inputs_present == b.inputs_present and a.model_version == b.model_version
        assert a.heads["xor"].label == b.heads["xor"].label
        assert max(abs(a.heads["xor"].probabilities[k] - b.heads["xor"].probabilities[k]) for k in a.heads["xor"].probabilities) < 1e-4
        assert abs(a.heads["score"].value - b.heads["score"].value) < 1e-3
        assert a.contributions.keys() == b.contributions.keys()
        assert all(abs(a.contributions[m] - b.contributions[m]) < 2e-3 for m in a.contributions), fusion


def _score(predictor, samples) -> dict[str, float]:
    encoded = [predictor.preprocess(s) for s in samples]
    outputs = {k: v.numpy() for k, v in predictor.outputs(encoded).items()}
    schema = SCHEMA
    from twinlens.engine.data import encode_targets

    targets = encode_targets(samples, schema, {"score": (0.0, 1.0)})
    report = full_report(schema, outputs, {k: v.numpy() for k, v in targets.values.items()},
                         {k: m.numpy() for k, m in targets.masks.items()})
    heads = report["heads"]
    return {"xor.macro_f1": heads["xor"]["macro_f1"], "attributes.macro_f1": heads["attributes"]["macro_f1"],
            "score.r2": heads["score"]["r2"]}


def test_int8_metric_drop_is_small(exported, capsys):
    fusion, _, bundle = exported
    samples = held_out()
    fp32_predictor = OnnxPredictor.from_bundle(bundle, precision="fp32")
    fp32 = _score(fp32_predictor, samples)
    int8 = _score(OnnxPredictor.from_bundle(bundle, precision="int8"), samples)
    drops = {name: fp32[name] - int8[name] for name in fp32}
    with capsys.disabled():
        print(f"\n[int8 vs fp32, {fusion}] " + ", ".join(f"{k}: fp32 {fp32[k]:.4f} int8 {int8[k]:.4f} drop {drops[k]:+.4f}" for k in fp32))
    # The network learnt XOR, so the comparison means something: on the rows with both
    # inputs (a row missing one is a coin toss for XOR, so the whole set's figure sits near 0.75).
    complete = _score(fp32_predictor, [s for s in samples if s.has("image") and s.has("text")])
    assert complete["xor.macro_f1"] >= 0.9, complete
    assert all(drop <= INT8_MAX_DROP for drop in drops.values()), drops


def test_exported_bundle_is_a_new_sealed_version_without_pickle(exported):
    _, source, bundle = exported
    original, config = read_bundle_config(source), read_bundle_config(bundle)  # digests, content hash, no pickle
    assert config["version"] != original["version"] and config["onnx"]["exported_from"] == original["version"]
    assert {FP32_NAME, INT8_NAME} <= set(config["files"])
    assert config["onnx"]["graphs"] == {"fp32": FP32_NAME, "int8": INT8_NAME} and config["onnx"]["default"] == "int8"
    assert config["onnx"]["parity"]["fp32_max_abs_diff"] <= LOGIT_TOLERANCE
    # The image encoder's convolutions are quantized statically, calibrated on generated rows.
    static = config["onnx"]["quantization"]["static"]
    assert static["op_types"] == ["Conv"] and static["format"] == "QDQ" and static["calibration_rows"] == 32
    assert config["files"]["model.safetensors"] == original["files"]["model.safetensors"]
    assert not any(p.suffix == ".onnx" for p in source.iterdir())  # the source bundle is untouched


def _copy(bundle: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(bundle, target)
    return target


def test_tampered_graph_is_refused_not_silently_replaced_by_torch(exported, tmp_path):
    _, _, bundle = exported
    copy = _copy(bundle, tmp_path)
    data = bytearray((copy / INT8_NAME).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / INT8_NAME).write_bytes(bytes(data))
    with pytest.raises(BundleError, match="fails its hash"):
        Predictor.from_bundle(copy, runtime="onnx")
    with pytest.raises(BundleError, match="fails its hash"):
        Predictor.from_bundle(copy)  # the torch runtime checks every file too


def test_pickle_under_an_onnx_name_is_refused(exported, tmp_path):
    _, _, bundle = exported
    copy = _copy(bundle, tmp_path)
    (copy / FP32_NAME).write_bytes(pickle.dumps({"payload": 1}))
    with pytest.raises(BundleError, match="pickle"):
        read_bundle_config(copy)


# -- graphs the runtime refuses, and the fallback to torch ------------------------------------


def _tiny_graph(*, external: bool = False, domain: str = "", op: str = "Identity") -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.zeros(2, dtype=np.float32), "w")
    if external:
        weight.ClearField("raw_data")
        weight.data_location = TensorProto.EXTERNAL
        weight.external_data.add(key="location", value="../../../etc/passwd")
    node = helper.make_node(op, ["w"], ["y"], domain=domain)
    graph = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [weight])
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def test_graphs_with_external_data_or_custom_ops_are_refused():
    check_graph(_tiny_graph(), "ok.onnx")
    with pytest.raises(BundleError, match="external data"):
        check_graph(_tiny_graph(external=True), "external.onnx")
    with pytest.raises(BundleError, match="operator domains"):
        check_graph(_tiny_graph(domain="evil.ops", op="Run"), "custom.onnx")


def _untrained_bundle(path: Path, spec: ModelSpec, schema: LabelSchema = SCHEMA) -> Path:
    from twinlens.engine.encoders import load_tokenizer
    from twinlens.engine.model import FusionModel

    torch.manual_seed(0)
    model = FusionModel(spec, schema, load_pretrained=True).eval()
    stats = {t.name: [1.0, 2.0] for t in schema.tasks if t.kind == "regression"}
    save_bundle(path, model, load_tokenizer(spec.text_encoder.name), {"plugin": "engine_test", "regression_stats": stats,
                                                                       "temperatures": {}})
    return path


def test_bundle_without_a_graph_falls_back_to_torch_with_one_warning(tmp_path, caplog):
    bundle = _untrained_bundle(tmp_path / "plain", tiny_spec("concat"))
    with caplog.at_level(logging.WARNING):
        predictor = Predictor.from_bundle(bundle, runtime="onnx")
    assert type(predictor) is Predictor
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "no ONNX graph" in warnings[0].getMessage() and "falling back to torch" in warnings[0].getMessage()


def test_graph_onnxruntime_cannot_run_falls_back_to_torch(tmp_path, caplog):
    bundle = _untrained_bundle(tmp_path / "plain", tiny_spec("concat"))
    config = {k: v for k, v in read_bundle_config(bundle).items() if k not in ("files", "content_hash", "version")}
    (bundle / FP32_NAME).write_bytes(_tiny_graph(op="NoSuchOperator"))
    seal_config(bundle, {**config, "onnx": {"graphs": {"fp32": FP32_NAME}, "default": "fp32"}})
    with caplog.at_level(logging.WARNING):
        predictor = Predictor.from_bundle(bundle, runtime="onnx")
    assert type(predictor) is Predictor
    assert [r for r in caplog.records if "onnxruntime cannot run" in r.getMessage() and "falling back" in r.getMessage()]


def test_unknown_runtime_is_refused(tmp_path):
    with pytest.raises(ValueError, match="runtime"):
        Predictor.from_bundle(tmp_path, runtime="tensorrt")


# -- other encoders and layouts ----------------------------------------------------------------


@pytest.mark.parametrize("layout", ["two texts, no image", "image and one of two texts"])
def test_several_text_inputs_and_unused_modalities_export(tmp_path, layout):
    if layout == "two texts, no image":
        spec = tiny_spec("early", modalities=["text", "notes"], text_inputs=["text", "notes"], lexical_buckets=128)
    else:
        spec = tiny_spec("cross_attention", modalities=["image", "text"], text_inputs=["text", "notes"])
    bundle = _untrained_bundle(tmp_path / "net", spec)
    export_bundle(bundle, bundle)  # in place: the folder is replaced by the exported bundle
    predictor = OnnxPredictor.from_bundle(bundle)
    samples = xor_samples(12, 3, missing_text=0.3)
    for i, sample in enumerate(samples):
        sample.texts["notes"] = None if i % 4 == 0 else f"note {i} about the {sample.texts.get('text') or 'picture'}"
    encoded = predictor.pre.encode_many(samples)
    for modalities in (None, [spec.modalities[0]]):
        assert _max_diff(predictor.logits(encoded, modalities), _torch_logits(bundle, encoded, modalities)) <= LOGIT_TOLERANCE


def test_pretrained_minilm_text_encoder_exports(tmp_path):
    spec = ModelSpec(image_encoder=TINY_IMAGE, text_encoder=TextEncoderSpec(freeze=True, max_length=64), hidden_dim=32,
                     fusion="concat", lexical_buckets=256)
    bundle = _untrained_bundle(tmp_path / "minilm", spec)
    result = export_bundle(bundle, tmp_path / "exported")
    assert result.onnx["parity"]["fp32_max_abs_diff"] <= LOGIT_TOLERANCE
    predictor = OnnxPredictor.from_bundle(result.bundle_dir)
    encoded = predictor.pre.encode_many(held_out()[:12])
    for modalities in (None, ["text"]):
        assert _max_diff(predictor.logits(encoded, modalities), _torch_logits(result.bundle_dir, encoded, modalities)) <= LOGIT_TOLERANCE


def test_dynamo_exporter_gives_the_same_graph(tmp_path):
    bundle = _untrained_bundle(tmp_path / "net", tiny_spec("gated", lexical_buckets=64))
    result = export_bundle(bundle, tmp_path / "dynamo", exporter="dynamo")
    assert result.onnx["exporter"] == "dynamo"
    predictor = OnnxPredictor.from_bundle(result.bundle_dir)
    encoded = predictor.pre.encode_many(held_out()[:20])
    assert _max_diff(predictor.logits(encoded), _torch_logits(result.bundle_dir, encoded)) <= LOGIT_TOLERANCE


# -- ensembles -------------------------------------------------------------------------------


LABELS_SCHEMA = LabelSchema(tasks=SCHEMA.tasks[:2])  # ensembles: the two label heads


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    """An ensemble bundle like the automatic recipe's: a network in network/ and a TF-IDF
    linear member, weighted; then exported (fp32)."""
    from twinlens.engine.data import encode_targets
    from twinlens.engine.ensemble import LinearMember, NetworkMember, save_ensemble
    from twinlens.engine.linear import LinearHeads, TfidfText, fit_head

    root = tmp_path_factory.mktemp("ensemble")
    samples = [_labels_only(s) for s in three_heads(xor_samples(160, 5, missing_image=0.1))]
    train_model(EngineTestPlugin(), Dataset(samples, LABELS_SCHEMA), out_dir=root / "network", spec=tiny_spec("concat"),
                config=fast_config(epochs=10))
    texts = TfidfText().fit([s.texts["text"] for s in samples])
    features = texts.transform([s.texts["text"] for s in samples])
    targets = encode_targets(samples, LABELS_SCHEMA, {})
    heads = LinearHeads({t.name: fit_head(t, features, targets.values[t.name].numpy(), targets.masks[t.name].numpy(), C=1.0, balanced=False)
                         for t in LABELS_SCHEMA.tasks})
    members = [NetworkMember("network", Predictor.from_bundle(root / "network")),
               LinearMember("tfidf-text", LABELS_SCHEMA, {"text": texts}, None, heads)]
    extra = {"plugin": "engine_test", "label_schema": LABELS_SCHEMA.model_dump(mode="json"), "modalities": ["image", "text"],
             "ensemble_temperatures": {"xor": 1.2}, "regression_stats": {}}
    save_ensemble(root / "torch", members=members, weights=[0.7, 0.3],
                  network_saver=lambda folder: shutil.copytree(root / "network", folder), extra=extra)
    result = export_bundle(root / "torch", root / "onnx")
    return root / "torch", result


def _labels_only(sample):
    sample.labels.pop("score")
    return sample


def test_exported_ensemble_predicts_like_torch(ensemble):
    source, result = ensemble
    config = read_bundle_config(result.bundle_dir)
    assert config["kind"] == "ensemble" and config["onnx"]["network"] == "network"
    assert "network/model.onnx" in config["files"] and config["version"] != read_bundle_config(source)["version"]
    torch_predictor = Predictor.from_bundle(result.bundle_dir)
    onnx_predictor = Predictor.from_bundle(result.bundle_dir, runtime="onnx")
    assert isinstance(onnx_predictor.network, OnnxPredictor) and not isinstance(torch_predictor.network, OnnxPredictor)
    samples = held_out()[:40]
    for a, b in zip(torch_predictor.predict(samples), onnx_predictor.predict(samples)):
        assert a.model_version == b.model_version == config["version"]
        assert a.heads["xor"].label == b.heads["xor"].label and a.heads["attributes"].labels == b.heads["attributes"].labels
        for head in ("xor", "attributes"):
            assert max(abs(a.heads[head].probabilities[k] - b.heads[head].probabilities[k]) for k in a.heads[head].probabilities) < 1e-4
        assert all(abs(a.contributions[m] - b.contributions[m]) < 2e-3 for m in a.contributions)


def test_tampered_ensemble_graph_is_refused(ensemble, tmp_path):
    _, result = ensemble
    copy = _copy(result.bundle_dir, tmp_path)
    graph = copy / "network" / FP32_NAME
    data = bytearray(graph.read_bytes())
    data[len(data) // 3] ^= 0x01
    graph.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="fails its hash"):
        Predictor.from_bundle(copy, runtime="onnx")


# -- the command line and the worker's setting --------------------------------------------------


def test_cli_export_then_predict_and_evaluate_on_onnx(tmp_path):
    from typer.testing import CliRunner

    from twinlens.cli import app
    from twinlens.generic import GenericPlugin

    runner = CliRunner()
    spec = {"model": tiny_spec("concat").model_dump(mode="json"), "train": {"batch_size": 16, "lr": 0.003}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    data = GenericPlugin().make_sample_dataset(tmp_path / "data", n=40, seed=0)
    trained = runner.invoke(app, ["train", "--plugin", "generic", "--data", str(data), "--out", str(tmp_path / "model"),
                                  "--spec", str(tmp_path / "spec.json"), "--epochs", "2", "--preset", "network", "--no-progress",
                                  "--label-col", "label"])
    assert trained.exit_code == 0, trained.output
    exported = runner.invoke(app, ["export", "--model", str(tmp_path / "model"), "--format", "onnx", "--quantize", "int8",
                                   "--out", str(tmp_path / "onnx")])
    assert exported.exit_code == 0, exported.output
    assert "fp32 graph vs torch" in exported.output and (tmp_path / "onnx" / INT8_NAME).is_file()
    image = next((data.parent / "images").iterdir())
    predicted = runner.invoke(app, ["predict", "--model", str(tmp_path / "onnx"), "--image", str(image), "--text", "a red circle",
                                    "--json", "--runtime", "onnx"])
    assert predicted.exit_code == 0, predicted.output
    answer = json.loads(predicted.stdout.strip().splitlines()[-1])
    assert answer["model"]["version"] == read_bundle_config(tmp_path / "onnx")["version"]
    reports = {}
    for runtime in ("torch", "onnx"):
        out = tmp_path / f"{runtime}.json"
        evaluated = runner.invoke(app, ["evaluate", "--model", str(tmp_path / "onnx"), "--data", str(data), "--label-col", "label",
                                        "--runtime", runtime, "--json", str(out)])
        assert evaluated.exit_code == 0, evaluated.output
        reports[runtime] = json.loads(out.read_text())
    assert abs(reports["torch"]["heads"]["label"]["accuracy"] - reports["onnx"]["heads"]["label"]["accuracy"]) <= 0.05
    bad = runner.invoke(app, ["export", "--model", str(tmp_path / "model"), "--format", "tflite", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "onnx" in bad.stderr


def test_worker_model_cache_follows_the_runtime_setting(ensemble, monkeypatch):
    import uuid

    from twinlens.settings import Settings
    from twinlens.worker import model_cache

    _, result = ensemble
    config = read_bundle_config(result.bundle_dir)
    name = f"{config['plugin']}@{config['version']}"
    monkeypatch.setenv("TWINLENS_RUNTIME", "onnx")
    assert Settings().runtime == "onnx"
    monkeypatch.setattr(model_cache, "_runtime_setting", lambda: Settings().runtime)
    assert isinstance(model_cache.ModelCache().get(uuid.uuid4(), str(result.bundle_dir), name).network, OnnxPredictor)
    torch_loaded = model_cache.ModelCache(runtime="torch").get(uuid.uuid4(), str(result.bundle_dir), name)
    assert type(torch_loaded.network) is Predictor
