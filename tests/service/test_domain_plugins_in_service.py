"""The domain plugins through the real service (PostgreSQL, HTTP, in-process worker):
a support ticket with a photo and text comes back with fault, severity, action, team,
confidence, OCR text and explanation, as `twinlens predict` gives it too; a chest X-ray
DICOM and report with planted PHI leave none of it in database rows, blobs or logs."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import inspect, text

from service_db import fresh_database, service_settings
from twinlens.cli.service import EmbeddedService, train_sample_model
from twinlens.db.migrate import upgrade
from twinlens.db.session import Database
from twinlens.services import keys

pytestmark = pytest.mark.slow

TWINLENS = str(Path(sys.executable).parent / "twinlens")

# Clearly fake identifiers; the report and history also carry them in free text.
PLANTED_TAGS = {
    "PatientName": "Quillfeather^Marzipan",
    "PatientID": "FAKEMRN-424242",
    "PatientBirthDate": "19580217",
    "PatientAddress": "9 Marmalade Row, Jamtown",
    "ReferringPhysicianName": "Crumpet^Eglantine",
    "AccessionNumber": "ACCPHI7781",
    "InstitutionName": "Saint Nowhere Infirmary",
}
REPORT = ("INDICATION: Marzipan Quillfeather, MRN 77120934, shortness of breath.\n"
          "FINDINGS: Right pleural effusion. No pneumothorax.\n"
          "IMPRESSION: Effusion. Called Dr. Eglantine Crumpet at (555) 555-0177 on 02/11/2024.")
HISTORY = "Mr. Marzipan Quillfeather of 9 Marmalade Row, accession ACC-55120."
PLANTED_STRINGS = ["Quillfeather", "Marzipan", "FAKEMRN-424242", "19580217", "Marmalade", "Jamtown", "Crumpet",
                   "Eglantine", "ACCPHI7781", "Saint Nowhere", "77120934", "555-0177", "02/11/2024", "ACC-55120"]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("domain")
    log_file = root / "service.log"
    handler = logging.FileHandler(log_file)
    handler.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    previous_level = logging.getLogger().level
    logging.getLogger().setLevel(logging.DEBUG)  # the most a deployment could log
    with fresh_database() as url:
        settings = service_settings(root / "data", url, max_upload_bytes=5_000_000, max_image_pixels=20_000_000)
        database = Database(settings.resolved_database_url)
        upgrade(database.engine)
        with database.session() as session:
            _, key = keys.create_key(session, "domain-tests", admin=True)
        running = EmbeddedService(settings, port=0, database=database).build(migrate=False).start()
        # Under data_dir/models: the default model root a registration may name.
        bundles = {name: train_sample_model(name, settings.data_dir / "models" / name, rows=40, epochs=1, tiny=True)
                   for name in ("support_ticket", "chest_xray")}
        import httpx

        client = httpx.Client(base_url=running.url, headers={"Authorization": f"Bearer {key}"}, timeout=120)
        for bundle in bundles.values():
            response = client.post("/v1/models", json={"bundle_path": str(bundle), "activate": True})
            assert response.status_code == 201, response.text
        try:
            yield {"client": client, "root": root, "database": database, "log": log_file, "bundles": bundles, "settings": settings}
        finally:
            client.close()
            running.close()
            logging.getLogger().removeHandler(handler)
            logging.getLogger().setLevel(previous_level)
            database.dispose()


def _support_ticket_photo(root: Path) -> tuple[bytes, str, str]:
    """A generated ticket whose photo shows an on-screen error code."""
    from twinlens.contract.registry import get_plugin

    plugin = get_plugin("support_ticket")
    manifest = plugin.make_sample_dataset(root / "ticket-probe", n=24, seed=11)
    samples = plugin.read_dataset(manifest).samples
    sample = next(s for s in samples if s.image is not None and s.texts.get("ocr") and s.texts.get("text"))
    buffer = io.BytesIO()
    sample.image.save(buffer, "PNG")
    return buffer.getvalue(), sample.texts["text"], sample.texts["ocr"]


def test_support_ticket_job_returns_the_whole_decision(service, tmp_path):
    photo, ticket, ocr = _support_ticket_photo(service["root"])
    response = service["client"].post("/v1/plugins/support_ticket/jobs", params={"wait": 60},
                                      files={"image": ("ticket.png", photo, "image/png")}, data={"text": ticket})
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "succeeded", job
    result = job["result"]
    decision = result["decision"]
    for field in ("fault", "fault_confidence", "severity", "action", "team", "needs_review", "ocr_text", "explanation"):
        assert field in decision, field
    assert decision["fault"] in result["heads"]["fault"]["probabilities"]
    assert decision["ocr_text"] and decision["ocr_text"] == result["explanation"]["extras"]["ocr_text"]
    assert set(result["explanation"]["contributions"]) <= {"image", "text", "ocr"}
    assert result["model_version"]["version"] == job["model_version"]["version"]

    image_path = tmp_path / "ticket.png"
    image_path.write_bytes(photo)
    cli = subprocess.run([TWINLENS, "predict", "--model", str(service["bundles"]["support_ticket"]), "--image", str(image_path),
                          "--text", ticket, "--json"], capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    printed = json.loads(cli.stdout)
    same_keys = ("fault", "severity", "action", "team", "ocr_text")
    assert {k: printed["decision"][k] for k in same_keys} == {k: decision[k] for k in same_keys}


def _phi_dicom() -> bytes:
    from twinlens_chest_xray.sample_data import make_dicom
    from twinlens_chest_xray.synth_image import render_radiograph

    pixels = render_radiograph({"Pleural Effusion": 1.0}, np.random.default_rng(3), size=192)
    data = make_dicom(pixels, modality="DX", phi=PLANTED_TAGS)
    assert b"Quillfeather" in data and b"ACCPHI7781" in data  # the file really carries PHI
    return data


def test_planted_phi_is_stored_nowhere(service):
    response = service["client"].post(
        "/v1/plugins/chest_xray/jobs", params={"wait": 60},
        files={"image": ("study.dcm", _phi_dicom(), "application/dicom")}, data={"report": REPORT, "history": HISTORY},
    )
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "succeeded", job
    assert "research" in json.dumps(job["result"]["decision"]).lower()  # the intended-use notice travels with it
    stored = [_database_text(service["database"]), _files_text(service["settings"].resolved_blob_dir),
              service["log"].read_text(errors="replace"), response.text]
    assert stored[0] and stored[1], "the job really was stored"
    for where, haystack in zip(("database rows", "blob files", "logs", "API response"), stored):
        found = [value for value in PLANTED_STRINGS if value.lower() in haystack.lower()]
        assert not found, f"PHI in {where}: {found}"


def _database_text(database: Database) -> str:
    parts = []
    with database.engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                parts.append(repr(tuple(row)))
    return "\n".join(parts)


def _files_text(folder: Path) -> str:
    return "\n".join(path.read_bytes().decode("latin-1") for path in folder.rglob("*") if path.is_file())
