"""The planted-PHI corpus (fixtures/phi_corpus.json) through the real chest_xray service.

Each case is one study: a DICOM file whose header holds the patient's name, IDs and
dates (or a PNG), a report and a history. All cases go through the API over HTTP into
the in-process worker, on PostgreSQL and on the embedded SQLite default, with everything
logged at DEBUG. Then every place the service keeps or says anything is read back: the
API's answers, every column of every table, every file under the data folder (the blob
store), the database's write-ahead log (PostgreSQL's WAL records of the test database,
found with pg_waldump; SQLite's -wal file and database file) and the DEBUG log. No
planted string may be in any of them, and each case's clinical words must survive in
the stored texts. Both figures are printed.
"""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import httpx
import numpy as np
import psycopg
import pytest
from sqlalchemy import inspect, text

from service_db import PG_HOST, PG_PORT, PG_USER, fresh_database, service_settings
from twinlens.cli.service import EmbeddedService, train_sample_model
from twinlens.db.migrate import upgrade
from twinlens.db.session import Database
from twinlens.services import keys

CORPUS = Path(__file__).parent / "fixtures" / "phi_corpus.json"
CASES = json.loads(CORPUS.read_text(encoding="utf-8"))["cases"]
KINDS = ("header name", "header ID", "date", "phone", "email", "MRN", "address", "name in another language")
WAL_BLOCK = 8192  # wal_block_size; checked against the server below
LONG_PAGE_HEADER, SHORT_PAGE_HEADER = 40, 24  # XLogLongPageHeaderData / XLogPageHeaderData, MAXALIGNed
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")  # configured by uvicorn, not propagating


# -- the corpus itself ------------------------------------------------------------------
def test_corpus_covers_every_kind_of_phi() -> None:
    assert len(CASES) >= 30
    assert len({case["id"] for case in CASES}) == len(CASES)
    kinds = {case["kind"] for case in CASES}
    assert set(KINDS) <= kinds, set(KINDS) - kinds
    for case in CASES:
        assert case["planted"] and case["clinical"], case["id"]
        texts = " ".join(filter(None, (case["report"], case["history"], json.dumps(case.get("metadata") or {}))))
        for planted in case["planted"]:  # a planted string is in what is sent (text or header)
            assert planted in texts or planted in json.dumps(case["header"] or {}, ensure_ascii=False), (case["id"], planted)
        for word in case["clinical"]:
            assert word in texts, (case["id"], word)


# -- the service ------------------------------------------------------------------------
@dataclass
class CorpusRun:
    backend: str
    database: Database
    data_dir: Path
    log_file: Path
    answers: dict[str, list[str]] = field(default_factory=dict)  # case id -> the API's answers
    stored_texts: dict[str, str] = field(default_factory=dict)  # case id -> texts as the API shows them
    wal: str = ""


@pytest.fixture(scope="module")
def chest_bundle(tmp_path_factory) -> Path:
    """A tiny chest_xray network (one epoch): the corpus needs jobs that succeed, not a good model."""
    bundle = tmp_path_factory.mktemp("phi-model") / "chest-tiny"
    return train_sample_model("chest_xray", bundle, rows=24, epochs=1, tiny=True, preset="network")


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def corpus_run(request, tmp_path_factory, chest_bundle) -> Iterator[CorpusRun]:
    root = tmp_path_factory.mktemp(f"phi-{request.param}")
    log_file = root / "service.log"
    with _database_url(request.param, root) as url, _debug_log(log_file) as handler:
        roots = [tmp_path_factory.getbasetemp()]  # the model bundle is trained under pytest's temporary folder
        settings = service_settings(root / "data", url, max_upload_bytes=2_000_000, max_image_pixels=4_000_000,
                                    model_roots=roots)
        database = Database(settings.resolved_database_url)
        upgrade(database.engine)
        run = CorpusRun(request.param, database, settings.data_dir, log_file)
        service = EmbeddedService(settings, port=0, database=database, log_level="debug").build(migrate=False)
        for name in UVICORN_LOGGERS:  # build() configured them; they do not propagate to the root
            logging.getLogger(name).addHandler(handler)
        service.start()
        try:
            with PostgresWal(url) if request.param == "postgresql" else nullcontext() as wal:
                _submit_corpus(run, service.url, chest_bundle)
                run.wal = wal.records_text() if wal else _sqlite_files_text(run.data_dir)
            yield run
        finally:
            service.close()
            database.dispose()


@pytest.fixture(scope="module")
def planted_everywhere(corpus_run) -> dict[str, dict[str, list[str]]]:
    """place -> case id -> planted strings found there."""
    shared = {
        "database tables": Haystack(_database_dump(corpus_run.database)),
        "blob store and data folder": Haystack(_folder_text(corpus_run.data_dir)),
        "write-ahead log": Haystack(corpus_run.wal),
        "DEBUG log": Haystack(corpus_run.log_file.read_text(encoding="utf-8", errors="replace")),
    }
    found: dict[str, dict[str, list[str]]] = {}
    for case in CASES:
        places = {"API answers": Haystack("\n".join(corpus_run.answers[case["id"]])), **shared}
        for place, haystack in places.items():
            hits = [planted for planted in case["planted"] if planted in haystack]
            if hits:
                found.setdefault(place, {})[case["id"]] = hits
    return found


def test_every_job_succeeded(corpus_run) -> None:
    assert set(corpus_run.answers) == {case["id"] for case in CASES}


@pytest.mark.parametrize("place", ["API answers", "database tables", "blob store and data folder", "write-ahead log",
                                   "DEBUG log"])
def test_no_planted_phi(planted_everywhere, place) -> None:
    assert not planted_everywhere.get(place), f"planted PHI in {place}: {planted_everywhere.get(place)}"


def test_what_was_searched_holds_what_was_stored(corpus_run) -> None:
    """The searches can see: each case's stored texts are in the database dump, the WAL
    and (the request and result) in the DEBUG log, so an absent string is really absent."""
    dump, wal = Haystack(_database_dump(corpus_run.database)), Haystack(corpus_run.wal)
    log = corpus_run.log_file.read_text(encoding="utf-8", errors="replace")
    for case in CASES:
        sentence = _longest_clinical(case)
        assert sentence in dump, (case["id"], sentence)
        assert sentence in wal, (case["id"], sentence)
    assert "POST /v1/plugins/chest_xray/jobs" in log and "DEBUG" in log


def test_recall_of_planted_phi_and_clinical_words_kept(corpus_run, planted_everywhere, capsys) -> None:
    planted_total = sum(len(case["planted"]) for case in CASES)
    leaked = {(case_id, p) for found in planted_everywhere.values() for case_id, hits in found.items() for p in hits}
    clinical_total = sum(len(case["clinical"]) for case in CASES)
    lost = [(case["id"], word) for case in CASES for word in case["clinical"]
            if word not in Haystack(corpus_run.stored_texts[case["id"]])]
    recall = (planted_total - len(leaked)) / planted_total
    kept = (clinical_total - len(lost)) / clinical_total
    with capsys.disabled():
        print(f"\n[phi corpus, {corpus_run.backend}] {len(CASES)} cases: PHI removed {planted_total - len(leaked)}/"
              f"{planted_total} (recall {recall:.3f}); clinical words kept {clinical_total - len(lost)}/{clinical_total} "
              f"({kept:.3f})")
    assert not leaked, sorted(leaked)
    assert not lost, lost


# -- submitting -------------------------------------------------------------------------
def _submit_corpus(run: CorpusRun, url: str, bundle: Path) -> None:
    """Every case submitted before any is awaited, so the worker batches them as it would."""
    with run.database.session() as session:
        _, key = keys.create_key(session, f"phi-corpus-{run.backend}", platform_admin=True)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as client:
        response = _call(client, "POST", "/v1/models", json={"bundle_path": str(bundle), "activate": True})
        assert response.status_code == 201, response.text
        accepted = {case["id"]: _submit_case(client, case) for case in CASES}
        listing = _all_finished(client, len(CASES))
        for case in CASES:
            shown = _call(client, "GET", f"/v1/jobs/{accepted[case['id']].json()['id']}")
            assert shown.status_code == 200, shown.text
            assert shown.json()["status"] == "succeeded", (case["id"], shown.text)
            run.answers[case["id"]] = [accepted[case["id"]].text, shown.text, listing]  # the listing shows them all
            run.stored_texts[case["id"]] = json.dumps([shown.json()["inputs"], shown.json()["metadata"]],
                                                      ensure_ascii=False)


def _submit_case(client: httpx.Client, case: dict) -> httpx.Response:
    image, media_type = _study_image(case)
    texts = {name: case[name] for name in ("report", "history") if case.get(name)}
    data = {**texts, **({"metadata": json.dumps(case["metadata"])} if case.get("metadata") else {})}
    response = _call(client, "POST", "/v1/plugins/chest_xray/jobs",
                     files={"image": (f"{case['id']}.img", image, media_type)}, data=data)
    assert response.status_code == 202, (case["id"], response.text)
    return response


def _all_finished(client: httpx.Client, count: int, timeout: float = 180.0) -> str:
    """The job listing once all `count` jobs have finished (polled four times a second)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listing = _call(client, "GET", "/v1/jobs", params={"plugin": "chest_xray", "limit": 100})
        assert listing.status_code == 200, listing.text
        jobs = listing.json()["data"]
        if len(jobs) == count and all(job["status"] in ("succeeded", "failed", "canceled") for job in jobs):
            return listing.text
        time.sleep(0.25)
    raise AssertionError(f"the corpus jobs did not finish in {timeout:.0f} s")


def _call(client: httpx.Client, method: str, url: str, **kwargs) -> httpx.Response:
    """One request, waiting out a 429 as its Retry-After says, as a well-behaved client does."""
    for _ in range(20):
        response = client.request(method, url, **kwargs)
        if response.status_code != 429:
            return response
        time.sleep(float(response.headers.get("Retry-After", "1")))
    return response


def _study_image(case: dict) -> tuple[bytes, str]:
    """The case's DICOM (its header planted) or PNG, of one drawn radiograph with one
    pixel changed per case so that each case stores a blob of its own."""
    pixels = _radiograph().copy()
    pixels[0, CASES.index(case) % pixels.shape[1]] = 1.0
    if case["header"]:
        from twinlens_chest_xray.sample_data import make_dicom

        return make_dicom(pixels, modality="DX", phi=case["header"]), "application/dicom"
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.rint(pixels * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue(), "image/png"


@lru_cache(maxsize=1)
def _radiograph() -> np.ndarray:
    from twinlens_chest_xray.synth_image import render_radiograph

    return render_radiograph({"Pleural Effusion": 1.0}, np.random.default_rng(0), size=64)


# -- where to look ----------------------------------------------------------------------
@contextmanager
def _database_url(backend: str, root: Path) -> Iterator[str]:
    """A fresh PostgreSQL database, or a SQLite file in the data folder under `root`."""
    if backend == "sqlite":
        (root / "data").mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{root / 'data' / 'twinlens.db'}"
        return
    with fresh_database() as url:
        yield url


@contextmanager
def _debug_log(path: Path) -> Iterator[logging.Handler]:
    """Everything the process logs, at DEBUG, into one file (the most a deployment could log)."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        for name in ("", *UVICORN_LOGGERS):
            logging.getLogger(name).removeHandler(handler)
        root.setLevel(previous)
        handler.close()


class PostgresWal:
    """The test database's WAL records written while the block runs, read by `records_text()`.

    pg_waldump lists the records (with the relation each touches, so other databases of
    the shared cluster are left out); their bytes are read from the segment files, page
    headers skipped, so a value split across a WAL page is still found. Columns are set
    to uncompressed storage first, so a value is in the WAL as it was stored, and a
    temporary replication slot holds the segments until they are read (a checkpoint may
    not recycle them meanwhile); it goes with its session, at the end or if this dies."""

    def __init__(self, url: str):
        self.dbname = url.rsplit("/", 1)[1]
        self.slot = f"phi_corpus_{self.dbname}"[:63]

    def __enter__(self) -> "PostgresWal":
        self._slot_session = self._connect()
        self._slot_session.execute("SELECT pg_create_physical_replication_slot(%s, true, true)", (self.slot,))
        with self._connect() as connection:
            self._store_uncompressed(connection)
            row = connection.execute("SELECT pg_current_wal_insert_lsn()::text, current_setting('data_directory'), "
                                     "(SELECT oid FROM pg_database WHERE datname = current_database()), "
                                     "(SELECT setting::int FROM pg_settings WHERE name = 'wal_segment_size'), "
                                     "(SELECT setting::int FROM pg_settings WHERE name = 'wal_block_size'), "
                                     "current_setting('server_version_num')").fetchone()
        self.start, self.data_dir, self.oid, self.segment_size, block, version = row
        assert block == WAL_BLOCK, block
        self.waldump = Path(f"/usr/lib/postgresql/{int(version) // 10000}/bin/pg_waldump")
        return self

    def __exit__(self, *exc) -> None:
        self._slot_session.close()  # the temporary slot is dropped with its session

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=self.dbname, autocommit=True)

    @staticmethod
    def _store_uncompressed(connection: psycopg.Connection) -> None:
        columns = connection.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
            "AND data_type IN ('text', 'json', 'jsonb', 'character varying')").fetchall()
        for table, column in columns:
            connection.execute(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" SET STORAGE EXTERNAL')

    def records_text(self) -> str:
        with self._connect() as connection:
            end = connection.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()[0]
            timeline = connection.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()[0]
        assert self.waldump.is_file() and Path(self.data_dir, "pg_wal").is_dir(), "the WAL is not readable here"
        listing = subprocess.run([str(self.waldump), "-p", str(Path(self.data_dir, "pg_wal")), "-s", self.start, "-e", end],
                                 capture_output=True, text=True, timeout=120)
        records = [(lsn, length) for lsn, length, oid in _waldump_records(listing.stdout) if oid == self.oid]
        assert records, f"pg_waldump found no record of database {self.oid}: {listing.stderr[-2000:]}"
        segments = _SegmentReader(Path(self.data_dir, "pg_wal"), timeline, self.segment_size)
        return "\n".join(_decoded(segments.read(lsn, length)) for lsn, length in records)


_RECORD = re.compile(r"len \(rec/tot\):\s*\d+/\s*(\d+), tx:.*?lsn: ([0-9A-F]+/[0-9A-F]+),.*?rel \d+/(\d+)/\d+")


def _waldump_records(listing: str) -> Iterator[tuple[int, int, int]]:
    """(lsn, total length, database oid) of each record that touches a relation."""
    for line in listing.splitlines():
        match = _RECORD.search(line)
        if match:
            high, low = match.group(2).split("/")
            yield (int(high, 16) << 32) | int(low, 16), int(match.group(1)), int(match.group(3))


class _SegmentReader:
    def __init__(self, folder: Path, timeline: int, segment_size: int):
        self.folder, self.timeline, self.segment_size = folder, timeline, segment_size
        self._cache: dict[int, bytes] = {}

    def _segment(self, number: int) -> bytes:
        if number not in self._cache:
            per_id = 0x100000000 // self.segment_size
            name = f"{self.timeline:08X}{number // per_id:08X}{number % per_id:08X}"
            self._cache[number] = (self.folder / name).read_bytes()
        return self._cache[number]

    def read(self, lsn: int, length: int) -> bytes:
        """`length` bytes of record data from `lsn` on, without the page headers between."""
        out, position = bytearray(), lsn
        while len(out) < length:
            segment = self._segment(position // self.segment_size)
            offset = position % self.segment_size
            page_start = offset - offset % WAL_BLOCK
            header = LONG_PAGE_HEADER if page_start == 0 else SHORT_PAGE_HEADER
            offset = max(offset, page_start + header)
            take = min(length - len(out), page_start + WAL_BLOCK - offset)
            out += segment[offset:offset + take]
            position = (position // self.segment_size) * self.segment_size + offset + take
        return bytes(out)


def _sqlite_files_text(data_dir: Path) -> str:
    """SQLite's write-ahead log and the database file itself (free pages included)."""
    files = sorted(data_dir.glob("twinlens.db*"))
    assert any(path.name.endswith("-wal") for path in files), files  # the service runs in WAL mode
    return "\n".join(_decoded(path.read_bytes()) for path in files)


def _database_dump(database: Database) -> str:
    """Every column of every row of every table, as text."""
    parts = []
    with database.engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            for row in connection.execute(text(f'SELECT * FROM "{table}"')).mappings():
                parts.append(json.dumps({table: dict(row)}, default=str, ensure_ascii=False))
    return "\n".join(parts)


def _folder_text(folder: Path) -> str:
    return "\n".join(_decoded(path.read_bytes()) for path in sorted(folder.rglob("*")) if path.is_file())


def _decoded(data: bytes) -> str:
    # Both readings: UTF-8 finds non-ASCII names as stored, Latin-1 never fails on binary.
    return data.decode("utf-8", errors="replace") + "\n" + data.decode("latin-1")


class Haystack:
    """Text to search for planted strings: case-insensitively, also as JSON escapes them
    (SQLAlchemy writes JSON with \\uXXXX), and a number only as a whole number: "01103"
    is not in a probability "0.0110337", nor "4471" in a word weight rounded to "0.4471",
    nor in a hexadecimal identifier "9f01103c-..." (job ids and digests are random hex, so
    any five digits turn up in one now and then)."""

    HEX_ID_DIGITS = 32  # a UUID's hex digits; digests are longer

    def __init__(self, text: str):
        self.folded = text.casefold()

    def __contains__(self, needle: str) -> bool:
        return any(self._whole(form.casefold()) for form in {needle, json.dumps(needle)[1:-1]})

    def _whole(self, form: str) -> bool:
        start = self.folded.find(form)
        while start >= 0:
            end = start + len(form)
            clear_before = not (form[0].isdigit() and self._number_ends_at(start))
            clear_after = not (form[-1].isdigit() and self._number_starts_at(end))
            if clear_before and clear_after and not (form.isdigit() and self._inside_hex_id(start, end)):
                return True
            start = self.folded.find(form, start + 1)
        return False

    def _number_ends_at(self, index: int) -> bool:
        """A digit, or a decimal point after one, just before `index`."""
        before = self.folded[max(0, index - 2):index]
        return before[-1:].isdigit() or (len(before) == 2 and before[1] == "." and before[0].isdigit())

    def _inside_hex_id(self, start: int, end: int) -> bool:
        hex_chars = set("0123456789abcdef-")
        while start > 0 and self.folded[start - 1] in hex_chars:
            start -= 1
        while end < len(self.folded) and self.folded[end] in hex_chars:
            end += 1
        return sum(c != "-" for c in self.folded[start:end]) >= self.HEX_ID_DIGITS

    def _number_starts_at(self, index: int) -> bool:
        """A digit, or a decimal point before one, at `index`."""
        after = self.folded[index:index + 2]
        return after[:1].isdigit() or (len(after) == 2 and after[0] == "." and after[1].isdigit())


def _longest_clinical(case: dict) -> str:
    return max(case["clinical"], key=len)


