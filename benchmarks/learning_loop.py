"""One round of the learning loop on generated support tickets, through the real service
(the API over HTTP, the in-process worker, SQLite): a champion trained on a small base set
serves live tickets; reviewers correct the champion's mistakes through the API; a training
run from base data + corrections makes a candidate; both are measured on a frozen holdout
of tickets neither saw, and the gate judges the candidate.

    python benchmarks/learning_loop.py [--base 100] [--live 240] [--holdout 160] [--time-limit 15]

Prints the held-out figures before and after, next to a control: the same recipe
retrained on the base data alone (so the gain is the corrections', not a reroll's).
Photos are left out of the tickets (text, subject and product metadata only) to keep OCR
off a two-core run; figures, not asserts.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import httpx
from twinlens_support_ticket.generate.build import make_sample_dataset
from twinlens_support_ticket.plugin import SupportTicketPlugin

from twinlens.cli.service import EmbeddedService, tiny_encoders
from twinlens.db.migrate import upgrade
from twinlens.db.session import Database
from twinlens.services import keys
from twinlens.settings import Settings

TASK = "fault"


def text_only(export: Path) -> Path:
    """The same export with its attachments dropped (no photos, so no OCR)."""
    rows = [json.loads(line) for line in export.read_text().splitlines() if line.strip()]
    for row in rows:
        row["attachments"] = []
    export.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return export


def tickets(root: Path, name: str, n: int, seed: int) -> Path:
    return text_only(make_sample_dataset(root / name, n=n, seed=seed))


def spec_json() -> dict:
    return {k: v.model_dump(mode="json") if hasattr(v, "model_dump") else v for k, v in tiny_encoders().items()}


def train_champion(root: Path, base: Path, time_limit: float) -> Path:
    from twinlens.engine.recipe import RecipeOptions, train_auto

    plugin = SupportTicketPlugin()
    spec = plugin.default_model_spec().model_copy(update=tiny_encoders())
    config = plugin.training_defaults().model_copy(update={"epochs": 3, "seed": 0, "progress": False})
    out = root / "champion"
    train_auto(plugin, plugin.read_dataset(base), out_dir=out, spec=spec, config=config,
               options=RecipeOptions(time_limit=time_limit, seed=0, progress=False))
    return out


def wait(client: httpx.Client, path: str, done, timeout: float = 900.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(path).json()
        if done(body):
            return body
        time.sleep(0.3)
    raise SystemExit(f"{path} did not finish in {timeout}s")


def wait_run(client: httpx.Client, run_id: str) -> dict:
    run = wait(client, f"/v1/training-runs/{run_id}", lambda b: b["status"] in ("succeeded", "failed"))
    if run["status"] != "succeeded":
        raise SystemExit(f"training run {run_id} failed: {run['error']}")
    return run


def submit(client: httpx.Client, row: dict) -> str:
    texts = {"subject": row.get("subject"), "text": row.get("description")}
    metadata = {k: row[k] for k in ("product_line", "model", "purchase_date", "warranty_status") if row.get(k)}
    response = client.post("/v1/plugins/support_ticket/jobs", json={"inputs": texts, "metadata": metadata})
    response.raise_for_status()
    return response.json()["id"]


def figures(client: httpx.Client, model_id: str, holdout_id: str) -> dict:
    found = [e for e in client.get(f"/v1/models/{model_id}/evaluations").json()["data"] if e["holdout_id"] == holdout_id]
    return found[0]["metrics"]["tasks"][TASK]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=int, default=100)
    parser.add_argument("--live", type=int, default=240)
    parser.add_argument("--holdout", type=int, default=160)
    parser.add_argument("--time-limit", type=float, default=15.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="twinlens-loop-bench-"))
    base, live, holdout = (tickets(root, "base", args.base, 11), tickets(root, "live", args.live, 12),
                           tickets(root, "holdout", args.holdout, 13))
    started = time.perf_counter()
    champion_bundle = train_champion(root, base, args.time_limit)
    # One client sends every ticket and correction at once: no rate limit applies to this run.
    unlimited = {f"rate_limit_{who}_{what}": 1e6 for who in ("key", "tenant") for what in ("per_second", "burst")}
    settings = Settings(data_dir=root / "service", database_url=f"sqlite:///{root / 'twinlens.db'}", broker_url=None,
                        model_roots=[root], data_roots=[root], output_roots=[root], max_wait_seconds=60,
                        **{k: int(v) if k.endswith("burst") else v for k, v in unlimited.items()})
    database = Database(settings.resolved_database_url)
    upgrade(database.engine)
    with database.session() as session:
        _, key = keys.create_key(session, "bench", admin=True, platform_admin=True)
    service = EmbeddedService(settings, port=0, database=database).build(migrate=False).start()
    logging.getLogger().setLevel(logging.WARNING)  # figures, not request lines
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        with httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as client:
            champion = client.post("/v1/models", json={"bundle_path": str(champion_bundle), "activate": True}).json()
            holdout_row = client.post("/v1/holdouts", json={"plugin": "support_ticket", "data_path": str(holdout)}).json()
            rows = [json.loads(line) for line in live.read_text().splitlines()]
            ids = [submit(client, row) for row in rows]
            answers = [wait(client, f"/v1/jobs/{job_id}", lambda b: b["status"] in ("succeeded", "failed")) for job_id in ids]
            mistakes = 0
            for row, answer in zip(rows, answers):
                predicted = ((answer.get("result") or {}).get("heads") or {}).get(TASK, {}).get("label")
                if predicted != row[TASK]:  # a reviewer corrects the champion's mistake
                    mistakes += 1
                    client.post(f"/v1/jobs/{answer['id']}/feedback",
                                json={"labels": {TASK: row[TASK], "severity": row["severity"]}}).raise_for_status()
            common = {"plugin": "support_ticket", "data_path": str(base), "model_spec": spec_json(), "preset": "auto",
                      "time_limit_seconds": args.time_limit, "epochs": 3, "seed": 0}
            loop_run = client.post("/v1/training-runs/from-corrections", json={**common, "output_dir": str(root / "candidate")})
            loop_run.raise_for_status()
            candidate = wait_run(client, loop_run.json()["id"])["model_version"]["id"]
            control_run = client.post("/v1/training-runs", json={**common, "output_dir": str(root / "control")})
            control = wait_run(client, control_run.json()["id"])["model_version"]["id"]
            evaluation = client.post(f"/v1/models/{control}/evaluations")
            wait_run(client, evaluation.json()["id"])
            report = client.post(f"/v1/models/{candidate}/gate").json()
            before, after, retrained = (figures(client, m, holdout_row["id"]) for m in (champion["id"], candidate, control))
    finally:
        service.close()
    print(f"support tickets (text only): base {args.base}, live {args.live} ({mistakes} champion mistakes corrected), "
          f"holdout {args.holdout}; recipe time limit {args.time_limit:g} s; {time.perf_counter() - started:.0f} s in all")
    print(f"{'held-out ' + TASK:<36}{'macro-F1':>10}{'accuracy':>10}{'ECE':>8}")
    for name, values in (("before: champion (base)", before), ("control: base, retrained", retrained),
                         ("after: base + corrections", after)):
        print(f"{name:<36}{values['macro_f1']:>10.3f}{values['accuracy']:>10.3f}{values['ece']:>8.3f}")
    print(f"change in macro-F1: {after['macro_f1'] - before['macro_f1']:+.3f} over the champion, "
          f"{after['macro_f1'] - retrained['macro_f1']:+.3f} over the control")
    print("gate:", "PASS" if report["passed"] else "BLOCKED")
    for check in report["checks"]:
        print(f"  [{'pass' if check['passed'] else 'FAIL'}] {check['name']}: {check['detail']}")


if __name__ == "__main__":
    main()
