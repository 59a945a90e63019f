"""Real data: train with the defaults a new user gets, evaluate on the official test split,
print every baseline next to what ships (mean ± spread over seeds) and the wall time.

    .venv/bin/python benchmarks/realdata.py [--root DIR] [--seeds 3] [--sets xsdd,mediaeval2016]

DIR holds one folder per data set, each with train.jsonl and test.jsonl in the generic
plugin's format (default: $TWINLENS_REALDATA, else ../shared/realdata next to the
checkout). Each run is exactly `twinlens train --plugin generic --data train.jsonl --out
... --seed S` (plus `--group-col` where the set names groups) followed by
`twinlens evaluate --json`, so the figures are what a user of the CLI sees.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Per set: extra `twinlens train` flags (groups a validation split must respect) and the
# figures that matter for it.
SETS = {
    "xsdd": {"flags": [], "metrics": ("macro_f1", "accuracy")},
    "mediaeval2016": {"flags": ["--group-col", "event"], "metrics": ("auroc", "macro_f1")},
}


def default_root() -> Path:
    return Path(os.environ.get("TWINLENS_REALDATA", REPO.parent / "shared" / "realdata"))


def twinlens(*args: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [str(Path(sys.executable).parent / "twinlens"), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def run_once(root: Path, name: str, seed: int, work: Path) -> dict:
    flags = SETS[name]["flags"]
    model = work / f"{name}-seed{seed}"
    started = time.monotonic()
    twinlens("train", "--plugin", "generic", "--data", str(root / name / "train.jsonl"), "--out", str(model),
             "--seed", str(seed), "--no-progress", *flags)
    seconds = time.monotonic() - started
    report_file = work / f"{name}-seed{seed}.json"
    twinlens("evaluate", "--model", str(model), "--data", str(root / name / "test.jsonl"), "--json", str(report_file), *flags)
    report = json.loads(report_file.read_text())
    config = json.loads((model / "config.json").read_text())
    spent = {name: item.get("seconds") for name, item in config.get("metrics", {}).get("candidates", {}).items()}
    return {"seconds": seconds, "report": report, "shipped": config.get("shipped"), "reason": config.get("shipped_reason"),
            "candidate_seconds": spent}


def head_metrics(report: dict) -> dict[str, float]:
    head = next(iter(report["heads"].values()))
    return {k: head[k] for k in ("macro_f1", "accuracy", "auroc") if head.get(k) is not None}


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values)
    return f"{mean:.3f} ± {statistics.pstdev(values):.3f}" if len(values) > 1 else f"{mean:.3f}"


def print_set(name: str, runs: list[dict]) -> None:
    metrics = SETS[name]["metrics"]
    rows: dict[str, list[dict[str, float]]] = {}
    for run in runs:
        for member, item in run["report"]["members"].items():
            rows.setdefault(member, []).append(head_metrics(item["report"]))
        rows.setdefault(f"SHIPPED ({'/'.join(sorted({r['shipped'] for r in runs}))})", []).append(head_metrics(run["report"]))
    print(f"\n== {name}: test split, {len(runs)} seed(s), defaults ==")
    print(f"{'model':<34}" + "".join(f"{m:>20}" for m in metrics))
    for member, values in rows.items():
        print(f"{member:<34}" + "".join(f"{spread([v[m] for v in values if m in v]):>20}" for m in metrics))
    times = [r["seconds"] for r in runs]
    print(f"{'train wall time (s)':<34}{spread(times):>20}   (max {max(times):.0f} s)")
    for run in runs:
        print(f"  seed: ships {run['shipped']}: {run['reason']}")
        print("        seconds per candidate: " + ", ".join(f"{k} {v}" for k, v in run["candidate_seconds"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=default_root())
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sets", default=",".join(SETS))
    args = parser.parse_args()
    chosen = [s for s in args.sets.split(",") if s]
    missing = [s for s in chosen if not (args.root / s / "train.jsonl").is_file()]
    if missing:
        print(f"skipped: no real data for {', '.join(missing)} under {args.root} (set --root or TWINLENS_REALDATA)")
        chosen = [s for s in chosen if s not in missing]
    print(f"cpu cores: {os.cpu_count()}; load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="twinlens-realdata-") as folder:
        for name in chosen:
            print_set(name, [run_once(args.root, name, seed, Path(folder)) for seed in range(args.seeds)])


if __name__ == "__main__":
    main()
