"""Bulk scoring batches over real HTTP against the running service (PostgreSQL and SQLite)
and its worker: upload a JSONL or CSV file, follow its progress, download its answers;
bad rows are reported with their line numbers and score nothing, the others are scored;
other tenants see nothing of a batch; cancel, delete, retention and subject erasure
forget its rows."""

from __future__ import annotations

import http.server
import json
import threading
import time
import uuid
from datetime import timedelta

from erasure_helpers import found, planted, stored_text
from service_helpers import png_bytes, problem

from twinlens.db.base import utcnow
from twinlens.db.batch_tables import Batch
from twinlens.worker import tasks


def _upload(client, rows_text: str, name: str = "rows.jsonl", content_type: str = "application/octet-stream"):
    return client.post("/v1/plugins/generic/batches", files={"file": (name, rows_text.encode(), content_type)})


def _jsonl(rows: list) -> str:
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)


def _wait_batch(client, batch_id: str, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/v1/batches/{batch_id}").json()
        if body["status"] in ("succeeded", "failed", "canceled"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"batch {batch_id} did not finish in {timeout}s: {body}")


def _results(client, batch_id: str) -> list[dict]:
    response = client.get(f"/v1/batches/{batch_id}/results")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


class _ImageServer:
    """A loopback HTTP server handing out one PNG: a URL the SSRF guard must refuse."""

    def __enter__(self):
        image = png_bytes(seed=7)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("content-type", "image/png")
                self.send_header("content-length", str(len(image)))
                self.end_headers()
                self.wfile.write(image)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/photo.png"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_a_jsonl_file_is_scored_row_by_row_with_bad_rows_reported_by_line(live, tmp_path):
    images = []
    for i in range(3):
        images.append(tmp_path / f"photo-{i}.png")
        images[-1].write_bytes(png_bytes(seed=i))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    admin = live.new_tenant_key(admin=True)
    with _ImageServer() as loopback_url:
        rows = [
            {"id": "a", "text": "a small red square"},                          # line 1
            {"id": "b", "text": "a big blue circle", "image": str(images[0])},  # line 2
            "{this is not json",                                                 # line 3: unreadable
            {"id": "d", "image": {"path": str(images[1])}, "metadata": {"n": 4}},  # line 4
            {"id": "e"},                                                         # line 5: nothing to score
            {"id": "f", "text": "x" * 5000},                                     # line 6: over the text limit
            {"id": "g", "text": "far away", "image": "/etc/hostname"},           # line 7: outside the data roots
            {"id": "h", "text": "on loopback", "image": loopback_url},           # line 8: refused by the SSRF guard
            {"id": "i", "text": "a broken file", "image": str(tmp_path / "broken.png")},  # line 9: not an image
            {"id": "j", "text": "a green triangle", "image": str(images[2]), "label": "ignored"},  # line 10
        ]
        with live.client(admin) as client:
            response = _upload(client, _jsonl(rows))
            assert response.status_code == 202, response.text
            submitted = response.json()
            assert response.headers["location"] == f"/v1/batches/{submitted['id']}"
            # Bad at upload: reported at once, with their lines.
            assert [row["line"] for row in submitted["bad_rows"]] == [3, 5, 6, 7]
            assert submitted["rows"]["total"] == 10 and submitted["rows"]["failed"] == 4
            finished = _wait_batch(client, submitted["id"])
            lines = _results(client, submitted["id"])

    assert finished["status"] == "succeeded", finished
    assert finished["rows"] == {"total": 10, "done": 10, "succeeded": 4, "failed": 6, "queued": 0}
    bad = {row["line"]: row for row in finished["bad_rows"]}
    assert sorted(bad) == [3, 5, 6, 7, 8, 9]
    assert bad[3]["field"] == "json" and "malformed JSON" in bad[3]["reason"]
    assert bad[5]["id"] == "e" and "neither an image nor any text" in bad[5]["reason"]
    assert bad[6]["field"] == "text" and "limit" in bad[6]["reason"]
    assert bad[7]["field"] == "image" and "outside the folders TWINLENS_DATA_ROOTS" in bad[7]["reason"]
    assert bad[8]["field"] == "inputs.image.url" and "non-public address" in bad[8]["reason"]
    assert bad[9]["field"] == "image"
    assert [line["line"] for line in lines] == list(range(1, 11))  # every row, in file order
    scored = [line for line in lines if line["status"] == "succeeded"]
    assert [line["id"] for line in scored] == ["a", "b", "d", "j"]
    for line in scored:
        assert line["model_version"] == finished["model_version"]["version"]
        probabilities = line["prediction"]["heads"]["label"]["probabilities"]
        assert abs(sum(probabilities.values()) - 1.0) < 1e-3
        assert "needs_review" in line["decision"]
    assert {line["line"]: line["error"]["field"] for line in lines if line["status"] == "failed"}[8] == "inputs.image.url"


def test_a_csv_file_from_a_plain_key_scores_text_and_refuses_server_paths(live, tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(png_bytes(seed=3))
    csv_text = f'id,text,image\n1,"a small, red square",\n2,a blue circle,{photo}\n3,"two\nlines of text",\n'
    with live.client(live.new_tenant_key()) as client:
        response = _upload(client, csv_text, name="tickets.csv")
        assert response.status_code == 202, response.text
        finished = _wait_batch(client, response.json()["id"])
        lines = _results(client, finished["id"])
    assert finished["filename"] == "tickets.csv"
    assert [(line["line"], line["id"], line["status"]) for line in lines] == [
        (2, "1", "succeeded"), (3, "2", "failed"), (4, "3", "succeeded")]
    assert "admin keys" in lines[1]["error"]["reason"]


def test_other_tenants_see_nothing_of_a_batch(live):
    with live.client(live.new_tenant_key()) as owner:
        batch = _upload(owner, _jsonl([{"text": "a small red square"}])).json()
        _wait_batch(owner, batch["id"])
    with live.client(live.new_tenant_key(admin=True)) as other:
        for response in (other.get(f"/v1/batches/{batch['id']}"), other.get(f"/v1/batches/{batch['id']}/results"),
                         other.post(f"/v1/batches/{batch['id']}/cancel"), other.delete(f"/v1/batches/{batch['id']}")):
            problem(response, 404)
        assert batch["id"] not in [b["id"] for b in other.get("/v1/batches").json()["data"]]
    with live.client(live.new_tenant_key()) as owner_again:  # another key of another tenant, to be sure
        problem(owner_again.get(f"/v1/batches/{batch['id']}"), 404)


def test_files_that_cannot_be_a_batch_are_refused_whole(live):
    with live.client(live.new_tenant_key()) as client:
        problem(_upload(client, "text\nhello\n", name="rows.xlsx"), 415)
        problem(_upload(client, "", name="rows.jsonl"), 422)
        too_big = _jsonl([{"text": "a small red square " * 10}] * (live.settings.bulk_max_upload_bytes // 200 + 1))
        body = problem(_upload(client, too_big), 413)
        assert body["detail"]
        listed = client.get("/v1/batches").json()["data"]
    assert listed == []  # nothing half-written


def test_cancel_stops_a_batch_and_delete_forgets_it(live):
    with live.client(live.new_tenant_key()) as client:
        batch = _upload(client, _jsonl([{"text": f"shape number {i}"} for i in range(3000)])).json()
        canceled = client.post(f"/v1/batches/{batch['id']}/cancel")
        assert canceled.status_code == 200, canceled.text
        assert canceled.json()["status"] == "canceled"
        time.sleep(1.0)  # a worker on it stops at its next micro-batch
        settled = client.get(f"/v1/batches/{batch['id']}").json()["rows"]
        time.sleep(1.0)
        assert client.get(f"/v1/batches/{batch['id']}").json()["rows"] == settled
        assert settled["queued"] > 0
        assert len(_results(client, batch["id"])) == settled["done"]
        problem(client.post(f"/v1/batches/{batch['id']}/cancel"), 409)

        assert client.delete(f"/v1/batches/{batch['id']}").status_code == 204
        problem(client.get(f"/v1/batches/{batch['id']}"), 404)
        problem(client.get(f"/v1/batches/{batch['id']}/results"), 404)


def test_retention_purges_a_finished_batch_rows_and_answers(live):
    strings = {"text": planted("batchtext"), "note": planted("batchnote"), "row_id": planted("rowid"), "bad": planted("bad")}
    with live.client(live.new_tenant_key()) as client:
        batch = _upload(client, _jsonl([{"id": strings["row_id"], "text": f"the screen says {strings['text']}",
                                         "metadata": {"note": strings["note"]}},
                                        {"id": strings["bad"]}])).json()
        assert _wait_batch(client, batch["id"])["rows"]["succeeded"] == 1
        # A scored line keeps its answer, not its inputs; the ids are echoed in the results.
        assert found(strings, stored_text(live)) == {"row_id": strings["row_id"], "bad": strings["bad"]}
        with live.db.session() as session:
            session.get(Batch, uuid.UUID(batch["id"])).finished_at = utcnow() - timedelta(days=live.settings.retention_days + 1)

        tasks.purge_expired_inputs(live.service.worker.context)  # the worker's own periodic task

        assert not found(strings, stored_text(live))
        after = client.get(f"/v1/batches/{batch['id']}").json()
        assert after["purged_at"] and after["rows"]["succeeded"] == 1 and after["rows"]["failed"] == 1  # the counts stay
        assert after["bad_rows"] == []
        assert problem(client.get(f"/v1/batches/{batch['id']}/results"), 410)["detail"]


def test_erasing_a_subject_deletes_the_batch_rows_that_named_it(live):
    subject = f"customer-{uuid.uuid4().hex[:8]}"
    secret = planted("subjecttext")
    with live.client(live.new_tenant_key(admin=True)) as client:
        batch = _upload(client, _jsonl([{"id": secret, "text": "my order", "metadata": {"subject_ref": subject}},
                                        {"text": "someone else entirely"}])).json()
        _wait_batch(client, batch["id"])
        assert found({"secret": secret}, stored_text(live))
        erased = client.delete(f"/v1/subjects/{subject}")
        assert erased.status_code == 200, erased.text
        assert erased.json()["batch_rows"] == 1
        lines = _results(client, batch["id"])
    assert [line["line"] for line in lines] == [2]
    assert not found({"secret": secret}, stored_text(live))
