#!/usr/bin/env bash
# Reproduces EVALUATION.md: generate a training set and a held-out set, train the default
# model on photo+text+OCR, on the photo alone (image + the text OCR reads in it) and on the
# ticket text alone, evaluate each on the held-out split, and score the zero-shot cold start
# on the same split.
#   plugins/support_ticket/scripts/evaluate_all.sh [WORK_DIR]
# Environment: TWINLENS_BIN (default twinlens), PYTHON (default python), N_TEST (400) and
# TRAIN_PARTS ("1200:0 900:2 900:3": size:seed of each generated training part).
#
# OCR is the slow step of reading a generated set (about half a second a photo on one core),
# and one process OCRs one photo at a time, so the training set is generated as parts, one
# process each, and the parts are then joined into one export. Steps whose output exists
# are skipped, so an interrupted run can be started again.
set -euo pipefail
WORK=${1:-support-ticket-eval}
N_TEST=${N_TEST:-400}
TRAIN_PARTS=${TRAIN_PARTS:-"1200:0 900:2 900:3"}
BIN=${TWINLENS_BIN:-twinlens}
PY=${PYTHON:-python}
export HF_HUB_OFFLINE=1
# One torch/ONNX thread per process: the parts run side by side.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$WORK"

generate() {  # name n seed
  [[ -f "$WORK/$1/tickets.jsonl.ocr.json" ]] && return 0
  "$PY" - "$WORK/$1" "$2" "$3" <<'PY'
import sys, time
from pathlib import Path
from twinlens.contract.registry import get_plugin
out, n, seed = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
plugin = get_plugin("support_ticket")
started = time.perf_counter()
export = plugin.make_sample_dataset(out, n=n, seed=seed)
plugin.read_dataset(export)  # runs OCR once; later reads take the text from the cache
print(f"{out.name}: {n} tickets (seed {seed}) generated and OCR-read in {time.perf_counter() - started:.0f} s")
PY
}

pids=()
generate test "$N_TEST" 1 & pids+=($!)
parts=()
for part in $TRAIN_PARTS; do
  name="train-seed${part#*:}"
  parts+=("$name")
  generate "$name" "${part%%:*}" "${part#*:}" & pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done

# Join the parts: rows in order, attachments through one symlink per part, OCR caches merged.
"$PY" - "$WORK" "${parts[@]}" <<'PY'
import json, sys
from pathlib import Path
work, parts = Path(sys.argv[1]), sys.argv[2:]
out = work / "train"
out.mkdir(exist_ok=True)
rows, texts, engine = [], {}, None
for index, name in enumerate(parts):
    link = out / f"part{index}"
    if not link.is_symlink():
        link.symlink_to(Path("..") / name / "attachments")
    for line in (work / name / "tickets.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        row["attachments"] = [path.replace("attachments/", f"part{index}/", 1) for path in row["attachments"]]
        rows.append(row)
    cache = json.loads((work / name / "tickets.jsonl.ocr.json").read_text(encoding="utf-8"))
    engine = cache["engine"]
    texts.update(cache["texts"])
(out / "tickets.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
(out / "tickets.jsonl.ocr.json").write_text(json.dumps({"engine": engine, "texts": texts}), encoding="utf-8")
print(f"train: {len(rows)} tickets from {', '.join(parts)}")
PY

train() {  # name modalities
  [[ -f "$WORK/bundles/$1/config.json" ]] && return 0
  local start=$SECONDS
  "$BIN" train --plugin support_ticket --data "$WORK/train/tickets.jsonl" --out "$WORK/bundles/$1" \
    --modalities "$2" --no-progress > "$WORK/train-$1.log" 2>&1
  echo "trained $1 (--modalities $2) in $(( SECONDS - start )) s"
}
# The fused and photo-only models take most of the time; they train side by side.
train fused image,text,ocr & fused=$!
train photo image,ocr & photo=$!
wait $fused; wait $photo
train text text

for name in fused photo text; do
  echo "== evaluate $name on the held-out split"
  "$BIN" evaluate --model "$WORK/bundles/$name" --data "$WORK/test/tickets.jsonl" --json "$WORK/eval-$name.json"
done
echo "== zero-shot on the held-out split"
"$PY" -m twinlens_support_ticket.zero_shot_eval --data "$WORK/test/tickets.jsonl" --json "$WORK/eval-zero-shot.json"
