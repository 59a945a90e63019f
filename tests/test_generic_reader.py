"""The generic plugin's manifest reader: JSONL and CSV, label kinds, every bad-row kind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from twinlens.contract.errors import DatasetError
from twinlens.contract.plugin import DatasetOptions
from twinlens.contract.schema import Label, LabelSchema, Task
from twinlens.generic import GenericPlugin
from twinlens.contract.table import ManifestError


@pytest.fixture
def plugin() -> GenericPlugin:
    return GenericPlugin()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "img").mkdir()
    for name, colour in (("a.png", "red"), ("b.png", "blue"), ("c.jpg", "green")):
        Image.new("RGB", (40, 30), colour).save(tmp_path / "img" / name)
    (tmp_path / "img" / "broken.png").write_bytes(b"this is not an image at all")
    png = (tmp_path / "img" / "a.png").read_bytes()
    (tmp_path / "img" / "truncated.png").write_bytes(png[: len(png) // 2])
    return tmp_path


def write_jsonl(path: Path, rows: list[object]) -> Path:
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def bad_rows(exc: pytest.ExceptionInfo[DatasetError]) -> list[tuple[int, str]]:
    return [(row.line, row.field) for row in exc.value.rows]


def test_jsonl_reads_images_text_and_infers_three_kinds(plugin, folder):
    manifest = write_jsonl(folder / "m.jsonl", [
        {"id": "r1", "image": "img/a.png", "text": "  red   thing ", "label": "cat", "tags": ["x", "y"], "score": 1.5},
        {"image": "img/b.png", "text": "blue", "label": "dog", "tags": [], "score": 2},
        {"image": None, "text": "no picture", "label": "cat", "tags": ["y"], "score": -1},
    ])
    options = DatasetOptions(label_cols=["label", "tags", "score"])
    dataset = plugin.read_dataset(manifest, options)
    assert [task.kind for task in dataset.label_schema.tasks] == ["multiclass", "multilabel", "regression"]
    assert dataset.label_schema.task("label").label_names == ["cat", "dog"]
    assert dataset.label_schema.task("tags").label_names == ["x", "y"]
    first, second, third = dataset.samples
    assert first.id == "r1" and second.id == "line-2"
    assert first.texts == {"text": "red thing"}  # whitespace normalised by clean_text
    assert first.image.size == (40, 30) and first.image.mode == "RGB"
    assert third.image is None
    assert first.labels == {"label": "cat", "tags": ["x", "y"], "score": 1.5}
    assert second.labels["tags"] == [] and second.labels["score"] == 2.0
    assert first.meta["line"] == 1 and third.meta["line"] == 3
    assert dataset.skipped == []


def test_image_paths_are_relative_to_the_manifest_not_the_cwd(plugin, folder, monkeypatch, tmp_path_factory):
    manifest = write_jsonl(folder / "m.jsonl", [{"image": "img/a.png", "label": "a"}, {"image": "img/b.png", "label": "b"}])
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    dataset = plugin.read_dataset(manifest)
    assert all(sample.image is not None for sample in dataset.samples)


def test_every_bad_row_kind_is_reported_at_once_with_its_line(plugin, folder):
    manifest = write_jsonl(folder / "m.jsonl", [
        {"image": "img/a.png", "text": "fine", "label": "cat"},          # 1 good
        {"image": "img/missing.png", "text": "x", "label": "cat"},       # 2 missing file
        {"image": "img/broken.png", "text": "x", "label": "dog"},        # 3 not an image
        {"image": "img/truncated.png", "text": "x", "label": "dog"},     # 4 corrupt image data
        '{"image": "img/a.png", "label": ',                               # 5 malformed JSON
        {"image": "", "text": "   ", "label": "dog"},                    # 6 neither image nor text
        {"image": "img/b.png", "text": "x", "label": {"a": 1}},          # 7 unknown label type
        {"image": "img/b.png", "text": "x", "label": 3},                 # 8 mixed label type
        "",                                                               # 9 blank: ignored
        {"image": "img/b.png", "text": "ok", "label": "dog"},            # 10 good
        "[1, 2]",                                                         # 11 not an object
        {"image": "img/b.png", "text": "x"},                             # 12 no label
        {"image": 5, "text": "x", "label": "dog"},                       # 13 image not a path
    ])
    with pytest.raises(DatasetError) as caught:
        plugin.read_dataset(manifest)
    assert bad_rows(caught) == [
        (2, "image"), (3, "image"), (4, "image"), (5, "json"), (6, "inputs"),
        (7, "label"), (8, "label"), (11, "json"), (12, "label"), (13, "image"),
    ]
    message = str(caught.value)
    assert "line 2: image: img/missing.png: file not found" in message
    assert "line 8: label: mixed label types" in message
    assert "--skip-bad-rows" in message


def test_skip_bad_rows_keeps_the_good_ones_and_lists_the_bad(plugin, folder):
    manifest = write_jsonl(folder / "m.jsonl", [
        {"image": "img/a.png", "text": "fine", "label": "cat"},
        {"image": "img/missing.png", "text": "x", "label": "cat"},
        {"image": "img/b.png", "text": "ok", "label": "dog"},
        {"image": "img/broken.png", "label": "bird"},
    ])
    dataset = plugin.read_dataset(manifest, DatasetOptions(skip_bad_rows=True))
    assert [sample.meta["line"] for sample in dataset.samples] == [1, 3]
    assert [row.line for row in dataset.skipped] == [2, 4]
    # Labels only seen on skipped rows do not become classes.
    assert dataset.label_schema.task("label").label_names == ["cat", "dog"]


def test_text_required_makes_empty_text_a_bad_row(plugin, folder):
    manifest = write_jsonl(folder / "m.jsonl", [
        {"image": "img/a.png", "text": "", "label": "cat"},
        {"image": "img/b.png", "text": "here", "label": "dog"},
        {"image": "img/b.png", "label": "dog"},
    ])
    assert len(plugin.read_dataset(manifest).samples) == 3
    with pytest.raises(DatasetError) as caught:
        plugin.read_dataset(manifest, DatasetOptions(text_required=True))
    assert bad_rows(caught) == [(1, "text"), (3, "text")]


def test_csv_lines_count_the_header_and_multiline_cells(plugin, folder):
    manifest = folder / "m.csv"
    manifest.write_text(
        "image,text,label\n"
        "img/a.png,\"first line\nsecond line\",cat\n"   # lines 2-3
        "img/missing.png,x,dog\n"                        # line 4
        "img/b.png,x\n"                                  # line 5: too few fields
        "img/b.png,ok,dog\n"                             # line 6
        ",,dog\n"                                        # line 7: neither image nor text
    )
    with pytest.raises(DatasetError) as caught:
        plugin.read_dataset(manifest)
    assert bad_rows(caught) == [(4, "image"), (5, "csv"), (7, "inputs")]
    dataset = plugin.read_dataset(manifest, DatasetOptions(skip_bad_rows=True))
    assert [s.meta["line"] for s in dataset.samples] == [2, 6]
    assert dataset.samples[0].texts["text"] == "first line second line"


def test_csv_label_kinds_follow_the_documented_rules(plugin, folder):
    manifest = folder / "m.csv"
    manifest.write_text(
        "\ufeffimage,text,label,tags,json_tags,score,code\n"  # BOM is tolerated
        "img/a.png,x,cat,a|b,\"[\"\"a\"\", \"\"c\"\"]\",1.5,1\n"
        "img/b.png,y,dog,b,[],2,2\n"
        "img/c.jpg,z,cat,,\"[\"\"c\"\"]\",3e-1,2\n"
    )
    options = DatasetOptions(label_cols=["label", "tags", "json_tags", "score", "code"], task_kinds={"code": "multiclass"})
    dataset = plugin.read_dataset(manifest, options)
    schema = dataset.label_schema
    assert [t.kind for t in schema.tasks] == ["multiclass", "multilabel", "multilabel", "regression", "multiclass"]
    assert schema.task("tags").label_names == ["a", "b"]
    assert schema.task("json_tags").label_names == ["a", "c"]
    assert schema.task("code").label_names == ["1", "2"]
    first, second, third = dataset.samples
    assert first.labels == {"label": "cat", "tags": ["a", "b"], "json_tags": ["a", "c"], "score": 1.5, "code": "1"}
    assert second.labels["tags"] == ["b"] and second.labels["json_tags"] == []
    assert third.labels["tags"] is None and third.labels["score"] == pytest.approx(0.3)


def test_csv_numbers_mixed_with_words_are_class_names(plugin, folder):
    manifest = folder / "m.csv"
    manifest.write_text("image,label\nimg/a.png,3\nimg/b.png,dog\n")
    dataset = plugin.read_dataset(manifest)
    assert dataset.label_schema.task("label").kind == "multiclass"
    assert dataset.label_schema.task("label").label_names == ["3", "dog"]


def test_csv_malformed_json_list_is_a_bad_row(plugin, folder):
    manifest = folder / "m.csv"
    manifest.write_text("image,tags\nimg/a.png,[\"a\"\nimg/b.png,b|c\n")
    with pytest.raises(DatasetError) as caught:
        plugin.read_dataset(manifest, DatasetOptions(label_cols=["tags"]))
    assert bad_rows(caught) == [(2, "tags")]
    assert "malformed JSON list" in str(caught.value)


def test_jsonl_bools_are_classes_and_forced_kinds_coerce(plugin, folder):
    manifest = write_jsonl(folder / "m.jsonl", [
        {"image": "img/a.png", "urgent": True, "n": 1, "t": "a|b"},
        {"image": "img/b.png", "urgent": False, "n": 2, "t": ["c"]},
    ])
    options = DatasetOptions(label_cols=["urgent", "n", "t"], task_kinds={"n": "multiclass", "t": "multilabel"})
    dataset = plugin.read_dataset(manifest, options)
    assert dataset.label_schema.task("urgent").label_names == ["false", "true"]
    assert dataset.label_schema.task("n").label_names == ["1", "2"]
    assert dataset.samples[0].labels["t"] == ["a", "b"]


def test_forced_regression_refuses_words(plugin, folder):
    manifest = write_jsonl(folder / "m.jsonl", [{"image": "img/a.png", "v": "high"}, {"image": "img/b.png", "v": "2.5"}])
    with pytest.raises(DatasetError) as caught:
        plugin.read_dataset(manifest, DatasetOptions(label_cols=["v"], task_kinds={"v": "regression"}))
    assert bad_rows(caught) == [(1, "v")]


def test_nan_regression_labels_are_bad_rows(plugin, folder):
    manifest = folder / "m.csv"
    manifest.write_text("image,v\nimg/a.png,1.0\nimg/b.png,nan\nimg/c.jpg,2\n")
    with pytest.raises(DatasetError) as caught:
        plugin.read_dataset(manifest, DatasetOptions(label_cols=["v"], task_kinds={"v": "regression"}))
    assert bad_rows(caught) == [(3, "v")]


def test_a_column_needs_two_classes(plugin, folder):
    manifest = write_jsonl(folder / "m.jsonl", [{"image": "img/a.png", "label": "cat"}, {"image": "img/b.png", "label": "cat"}])
    with pytest.raises(ManifestError, match="at least two classes"):
        plugin.read_dataset(manifest)


def test_missing_columns_are_named(plugin, folder):
    manifest = write_jsonl(folder / "m.jsonl", [{"picture": "img/a.png", "label": "cat"}])
    with pytest.raises(ManifestError, match="no column 'kind'"):
        plugin.read_dataset(manifest, DatasetOptions(label_cols=["kind"]))
    # A column the user names explicitly must exist; the default names may be absent.
    with pytest.raises(ManifestError, match="no column 'photo'"):
        plugin.read_dataset(manifest, DatasetOptions(image_col="photo"))


def test_file_level_problems(plugin, tmp_path):
    with pytest.raises(ManifestError, match="no such file"):
        plugin.read_dataset(tmp_path / "absent.jsonl")
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(ManifestError, match="unsupported format"):
        plugin.read_dataset(tmp_path / "data.txt")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ManifestError, match="empty"):
        plugin.read_dataset(tmp_path / "empty.csv")
    (tmp_path / "latin.jsonl").write_bytes(b'{"text": "ok", "label": "a"}\n{"text": "caf\xe9", "label": "b"}\n')
    with pytest.raises(DatasetError) as caught:
        plugin.read_dataset(tmp_path / "latin.jsonl")
    assert caught.value.rows[0].line == 2


def test_a_folder_reads_its_manifest(plugin, tmp_path):
    manifest = plugin.make_sample_dataset(tmp_path / "set", n=12, seed=3)
    assert manifest == tmp_path / "set" / "manifest.jsonl"
    assert len(plugin.read_dataset(tmp_path / "set").samples) == 12
    with pytest.raises(ManifestError, match="holds none of"):
        plugin.read_dataset(tmp_path)


def test_reading_against_a_fixed_schema(plugin, folder):
    schema = LabelSchema(tasks=(Task(name="label", kind="multiclass", labels=(Label(name="cat"), Label(name="dog"), Label(name="cow"))),))
    manifest = write_jsonl(folder / "m.jsonl", [
        {"image": "img/a.png", "label": "cat"},
        {"image": "img/b.png", "label": "bird"},
    ])
    with pytest.raises(DatasetError) as caught:
        plugin.read_dataset(manifest, label_schema=schema)
    assert bad_rows(caught) == [(2, "label")]
    assert "unknown label" in str(caught.value)
    # A split holding one class is fine when the schema is given, not inferred.
    dataset = plugin.read_dataset(manifest, DatasetOptions(skip_bad_rows=True), label_schema=schema)
    assert dataset.label_schema == schema
    assert [s.labels["label"] for s in dataset.samples] == ["cat"]


def test_big_images_are_shrunk_on_reading(folder):
    Image.new("RGB", (2000, 1000), "white").save(folder / "img" / "big.jpg")
    manifest = write_jsonl(folder / "m.jsonl", [{"image": "img/big.jpg", "label": "a"}, {"image": "img/a.png", "label": "b"}])
    dataset = GenericPlugin(keep_image_side=256).read_dataset(manifest)
    assert max(dataset.samples[0].image.size) == 256
    assert dataset.samples[0].image.size[0] == 2 * dataset.samples[0].image.size[1]
