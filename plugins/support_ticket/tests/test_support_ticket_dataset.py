"""Reading helpdesk exports: JSONL and CSV, bad rows with line numbers, the OCR cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from twinlens.contract.errors import DatasetError
from twinlens.contract.plugin import DatasetOptions

from twinlens_support_ticket import ocr
from twinlens_support_ticket.dataset import read_export
from twinlens_support_ticket.generate.build import make_sample_dataset
from twinlens_support_ticket.ocr_cache import OcrCache
from twinlens_support_ticket.plugin import SupportTicketPlugin

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """A small generated export, read once so its OCR cache exists."""
    folder = tmp_path_factory.mktemp("tickets")
    export = make_sample_dataset(folder, n=16, seed=21)
    read_export(export, progress=False)
    return export


@pytest.fixture
def copy_of(generated, tmp_path) -> Path:
    shutil.copytree(generated.parent, tmp_path / "copy")
    return tmp_path / "copy" / generated.name


@pytest.fixture
def counting_ocr(monkeypatch):
    calls = []
    real = ocr.read_text

    def counted(image):
        calls.append(image.size)
        return real(image)

    monkeypatch.setattr(ocr, "read_text", counted)
    return calls


def test_reads_the_generated_export(generated):
    dataset = SupportTicketPlugin().read_dataset(generated)
    rows = [json.loads(line) for line in generated.read_text().splitlines()]
    assert [s.id for s in dataset.samples] == [row["ticket_id"] for row in rows]
    assert dataset.skipped == []
    for sample, row in zip(dataset.samples, rows):
        assert sample.labels == {"fault": row["fault"], "severity": row["severity"]}
        assert sample.meta["line"] == rows.index(row) + 1
        assert (sample.image is None) == (not row["attachments"])
        assert set(sample.texts) == {"text", "ocr"}
        assert sample.meta["extras"]["ocr_text"] == sample.texts["ocr"]


def test_error_codes_on_screen_reach_the_ocr_input(generated):
    dataset = read_export(generated, progress=False)
    coded = [s for s in dataset.samples if s.texts["ocr"] and "Code" in s.texts["ocr"]]
    assert coded, "this seed renders error dialogs"
    assert all(s.texts["ocr"] not in (s.texts["text"] or "") for s in coded)


def test_second_read_takes_ocr_from_the_cache(copy_of, counting_ocr):
    read_export(copy_of, progress=False)
    assert counting_ocr == []
    assert (copy_of.parent / (copy_of.name + ".ocr.json")).is_file()


def test_cache_is_keyed_by_image_content(copy_of, counting_ocr):
    row = json.loads(copy_of.read_text().splitlines()[0])
    image_path = copy_of.parent / row["attachments"][0]
    Image.new("RGB", (64, 64), (200, 10, 10)).save(image_path, format=Image.open(image_path).format)
    read_export(copy_of, progress=False)
    assert counting_ocr == [(64, 64)]  # only the changed photo is read again


def test_cache_from_another_ocr_engine_is_ignored(copy_of, counting_ocr):
    cache_file = copy_of.parent / (copy_of.name + ".ocr.json")
    data = json.loads(cache_file.read_text())
    data["engine"] = "some other OCR 0.1"
    cache_file.write_text(json.dumps(data))
    dataset = read_export(copy_of, progress=False)
    assert len(counting_ocr) == sum(s.image is not None for s in dataset.samples)
    assert OcrCache.beside(copy_of).entries  # rebuilt with the current engine


def test_folder_path_finds_the_export(generated):
    assert len(read_export(generated.parent, progress=False).samples) == 16


def test_csv_export_reads_like_jsonl(tmp_path):
    csv_export = make_sample_dataset(tmp_path / "csv", n=5, seed=3, fmt="csv")
    jsonl_export = make_sample_dataset(tmp_path / "jsonl", n=5, seed=3)
    from_csv, from_jsonl = read_export(csv_export, progress=False), read_export(jsonl_export, progress=False)
    assert [(s.id, s.texts, s.labels) for s in from_csv.samples] == [(s.id, s.texts, s.labels) for s in from_jsonl.samples]


def test_the_readme_examples_read(tmp_path):
    shutil.copytree(EXAMPLES, tmp_path / "examples")  # the OCR cache is written beside them
    read = {name: read_export(tmp_path / "examples" / name, progress=False) for name in ("helpdesk_export.jsonl", "helpdesk_export.csv")}
    jsonl, csv_set = read["helpdesk_export.jsonl"], read["helpdesk_export.csv"]
    assert [(s.id, s.texts, s.labels) for s in jsonl.samples] == [(s.id, s.texts, s.labels) for s in csv_set.samples]
    first, second, third = jsonl.samples
    assert first.labels == {"fault": "cracked_screen", "severity": "medium"} and first.image is not None
    assert "SYS-7198" in second.texts["ocr"].replace(" ", "")  # read from the screenshot
    assert third.image is None and third.meta["extras"]["safety_mentions"] == ["burning"]
    assert second.meta["extras"]["product"]["warranty_status"] == "unknown"


def write_photo(folder: Path, name: str) -> str:
    Image.new("RGB", (40, 40), (90, 90, 90)).save(folder / name)
    return name


def bad_jsonl(folder: Path) -> Path:
    write_photo(folder, "ok.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    lines = [
        {"ticket_id": "A1", "subject": "Cracked screen", "description": "dropped it", "attachments": ["ok.png"], "fault": "cracked_screen"},
        "{not json",
        {"ticket_id": "", "description": "no id"},
        {"ticket_id": "A1", "description": "same id again"},
        {"ticket_id": "A4", "description": "x", "fault": "exploded_kettle"},
        {"ticket_id": "A5", "description": "x", "attachments": ["nowhere.png"]},
        {"ticket_id": "A6", "subject": "", "description": "", "attachments": []},
        {"ticket_id": "A7", "description": "x", "purchase_date": "last year"},
        {"ticket_id": "A8", "description": "x", "attachments": ["broken.jpg"]},
        {"ticket_id": "A9", "description": "fine row", "severity": "low", "warranty_status": "Expired"},
    ]
    path = folder / "tickets.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n\n")
    return path


def test_bad_rows_are_all_reported_with_line_and_field(tmp_path):
    with pytest.raises(DatasetError) as caught:
        read_export(bad_jsonl(tmp_path), progress=False)
    found = {(row.line, row.field) for row in caught.value.rows}
    assert found == {
        (2, "json"), (3, "ticket_id"), (4, "ticket_id"), (5, "fault"), (6, "attachments"),
        (7, "ticket"), (8, "purchase_date"), (9, "attachments"),
    }
    message = str(caught.value)
    assert "line 5: fault: 'exploded_kettle' is not one of" in message
    assert "--skip-bad-rows" in message


def test_skip_bad_rows_keeps_the_good_ones(tmp_path):
    dataset = read_export(bad_jsonl(tmp_path), DatasetOptions(skip_bad_rows=True), progress=False)
    assert [s.id for s in dataset.samples] == ["A1", "A9"]
    assert len(dataset.skipped) == 8
    assert dataset.samples[1].labels == {"fault": None, "severity": "low"}
    assert dataset.samples[1].meta["extras"]["product"]["warranty_status"] == "expired"


def test_text_required_makes_photo_only_rows_bad(tmp_path):
    name = write_photo(tmp_path, "p.png")
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"ticket_id": "P1", "attachments": [name]}) + "\n")
    assert read_export(path, progress=False).samples[0].texts["text"] is None
    with pytest.raises(DatasetError) as caught:
        read_export(path, DatasetOptions(text_required=True), progress=False)
    assert caught.value.rows[0].line == 1 and caught.value.rows[0].field == "description"


def test_csv_bad_rows_count_lines_across_quoted_newlines(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(
        "ticket_id,subject,description,attachments,fault\n"
        'C1,Help,"line one\nline two",,software_error\n'
        "C2,Help,ok,,not_a_fault\n"
        "C3,Help,ok,,software_error,surplus\n",
        encoding="utf-8",
    )
    with pytest.raises(DatasetError) as caught:
        read_export(path, progress=False)
    assert [(row.line, row.field) for row in caught.value.rows] == [(4, "fault"), (5, "csv")]


def test_csv_without_ticket_id_column_is_refused(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,description\n1,hello\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="ticket_id"):
        read_export(path, progress=False)


@pytest.mark.parametrize("name", ["missing.jsonl", "tickets.txt"])
def test_wrong_paths_are_refused(tmp_path, name):
    if name.endswith(".txt"):
        (tmp_path / name).write_text("x")
    with pytest.raises(DatasetError):
        read_export(tmp_path / name, progress=False)
    with pytest.raises(DatasetError, match="tickets.jsonl"):
        read_export(tmp_path, progress=False)
