"""Bulk scoring throughput (`twinlens predict --data` and the batch API) against the raw
predictor, on the generic plugin's default model (resnet18 + MiniLM) trained for one epoch.

    python benchmarks/bulk.py [--rows 5000] [--batch 32] [--threads 2] [--no-api]
                              [--database-url postgresql+psycopg://...]

The file has --rows rows over 200 distinct generated photos. Raw: the rows already
decoded and preprocessed, then `predict_encoded` with contributions in batches. Bulk:
`score_file` from the file on disk to the scored JSONL (reading, decoding, preprocessing on
threads, predicting, deciding, writing). API: the same rows (images as paths inside the
data roots, an admin key) uploaded to `POST /v1/plugins/generic/batches` of a real service
(uvicorn + the in-process worker, SQLite unless --database-url), timed from the upload to
the batch's `succeeded`, then the results file downloaded. Prints the rates and the ratios
to raw (target >= 0.90). Figures only: no thresholds are asserted.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import httpx
import torch

from twinlens.contract.plugin import RawInput
from twinlens.contract.registry import get_plugin
from twinlens.engine.bulk import BulkOptions, score_file
from twinlens.engine.predictor import Predictor
from twinlens.engine.training import train_model


def bulk_file(root: Path, rows: int) -> Path:
    plugin = get_plugin("generic")
    manifest = plugin.make_sample_dataset(root / "data", n=200, seed=0)
    base = [json.loads(line) for line in Path(manifest).read_text().splitlines()]
    out = Path(manifest).with_name("bulk.jsonl")
    out.write_text("".join(json.dumps({**base[i % len(base)], "id": f"row-{i}"}) + "\n" for i in range(rows)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-api", action="store_true", help="skip the batch API path")
    parser.add_argument("--database-url", default=None, help="the API path's database (default: SQLite in a temp folder)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    plugin = get_plugin("generic")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = bulk_file(root, args.rows)
        train = plugin.read_dataset(data.with_name("manifest.jsonl"))
        config = plugin.training_defaults().model_copy(update={"epochs": 1, "progress": False})
        bundle = train_model(plugin, train, out_dir=root / "bundle", spec=plugin.default_model_spec(), config=config).bundle_dir
        predictor = Predictor.from_bundle(bundle)

        rows = [json.loads(line) for line in data.read_text().splitlines()]
        encoded = [predictor.preprocess(plugin.prepare(RawInput(
            image_bytes=(data.parent / r["image"]).read_bytes() if r.get("image") else None, texts={"text": r.get("text")})))
            for r in rows]
        predictor.predict_encoded(encoded[: args.batch])  # warm-up
        started = time.perf_counter()
        for start in range(0, len(encoded), args.batch):
            predictor.predict_encoded(encoded[start : start + args.batch], batch_size=args.batch)
        raw = len(encoded) / (time.perf_counter() - started)
        del encoded

        started = time.perf_counter()
        summary = score_file(plugin, predictor, data, root / "scored.jsonl", BulkOptions(batch_size=args.batch, threads=args.threads))
        bulk = summary.scored / (time.perf_counter() - started)
        # Printed before the API path runs, so a run cut short still reports them.
        print(f"rows: {args.rows}, batch {args.batch}, torch threads {args.threads}, bad rows {len(summary.bad)}")
        print(f"raw predictor (preprocessed, with contributions): {raw:7.1f} rows/s")
        print(f"bulk scoring file -> scored JSONL:               {bulk:7.1f} rows/s")
        print(f"ratio bulk / raw: {bulk / raw:.2f}  (target >= 0.90)", flush=True)
        api = None if args.no_api else api_rate(root, bundle, data, args)
    if api is not None:
        rate, download = api
        print(f"batch API upload -> scored (in-process worker):  {rate:7.1f} rows/s  (results download {download:.2f} s)")
        print(f"ratio batch API / raw: {rate / raw:.2f}  (target >= 0.90)")


def api_rate(root: Path, bundle: Path, data: Path, args) -> tuple[float, float]:
    """Rows per second through the batch API, upload to `succeeded`; and the download time."""
    from twinlens.cli.service import EmbeddedService
    from twinlens.services import keys
    from twinlens.settings import Settings

    rows = [json.loads(line) for line in data.read_text().splitlines()]
    upload = "".join(json.dumps({**r, "image": str(data.parent / r["image"])} if r.get("image") else r) + "\n" for r in rows)
    settings = Settings(data_dir=root / "service", database_url=args.database_url, broker_url=None, model_roots=[root],
                        data_roots=[root], bulk_micro_batch_size=args.batch, prepare_threads=args.threads,
                        bulk_slice_seconds=60.0)
    service = EmbeddedService(settings, port=0).build(migrate=True).start()
    try:
        with service.database.session() as session:
            _, key = keys.create_key(session, "bench", platform_admin=True)
        with httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {key}"}, timeout=600) as client:
            client.post("/v1/models", json={"bundle_path": str(bundle), "activate": True}).raise_for_status()
            _score_via_api(client, upload.splitlines(keepends=True)[: args.batch * 2])  # warm-up: the worker loads the model
            started = time.perf_counter()
            batch = _score_via_api(client, [upload])
            elapsed = time.perf_counter() - started
            started = time.perf_counter()
            lines = client.get(f"/v1/batches/{batch['id']}/results").text.count("\n")
            download = time.perf_counter() - started
        if lines != len(rows) or batch["rows"]["succeeded"] != len(rows):
            raise SystemExit(f"the batch API scored {batch['rows']} and returned {lines} lines for {len(rows)} rows")
        return batch["rows"]["succeeded"] / elapsed, download
    finally:
        service.close()


def _score_via_api(client: httpx.Client, chunks: list[str]) -> dict:
    response = client.post("/v1/plugins/generic/batches", files={"file": ("rows.jsonl", "".join(chunks).encode(), "application/x-ndjson")})
    response.raise_for_status()
    batch = response.json()
    while batch["status"] in ("queued", "running"):
        time.sleep(0.2)
        batch = client.get(f"/v1/batches/{batch['id']}").json()
    if batch["status"] != "succeeded":
        raise SystemExit(f"batch {batch['id']} ended {batch['status']}: {batch['error']}")
    return batch


if __name__ == "__main__":
    main()
