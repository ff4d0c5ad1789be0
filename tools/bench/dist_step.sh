#!/usr/bin/env bash
# The data-parallel benchmark of docs/perf.md: an NGDiff step of an opt-125m-shaped model (random
# weights) at one global batch (forget + retain, 8 x 128 tokens each), on 1 rank x 2 threads and on
# 2 ranks x 1 thread (mpirun), alternating; prints each run's median step time and, for 2 ranks,
# the gradient all-reduce time per step (run.json's comm_seconds).
#   tools/bench/dist_step.sh [BUILD_DIR] [ROUNDS]
# Needs the venv's torch + transformers once, to write the random checkpoint (tools/bench/).
set -euo pipefail
BUILD=${1:-build}
ROUNDS=${2:-3}
LETHE="$BUILD/tools/lethe"
DIR=$(mktemp -d /tmp/lethe-dist-bench-XXXXXX)
trap 'rm -rf "$DIR"' EXIT
PY=${PYTHON:-/opt/lethe-venv/bin/python}
"$PY" - "$DIR" <<'PYEOF'
import json, sys, torch
from transformers import OPTConfig, OPTForCausalLM
out = sys.argv[1]
torch.manual_seed(0)
OPTForCausalLM(OPTConfig()).save_pretrained(out + "/model")  # opt-125m shape, random
g = torch.Generator().manual_seed(1)
for name in ("forget", "retain"):
    with open(f"{out}/{name}.jsonl", "w") as f:
        for i in range(64):
            ids = [2] + torch.randint(4, 50000, (127,), generator=g).tolist()
            f.write(json.dumps({"input_ids": ids, "labels": [-100] + ids[1:]}) + "\n")
PYEOF
ROOT=""
[ "$(id -u)" = 0 ] && ROOT="--allow-run-as-root"
common=(--set model.path="$DIR/model" --set data.format=tokenized --set data.forget="$DIR/forget.jsonl"
        --set data.retain="$DIR/retain.jsonl" --set method.name=ngdiff --set method.auto_lr=false
        --set trainer.max_steps=4 --set trainer.grad_accum=1 --set trainer.max_grad_norm=0
        --set data.shuffle=false --set data.pairing=sequential)
median() {  # run.json → "median step s, median comm s" over steps 2..
  python3 - "$1" <<'PY'
import json, statistics, sys
s = json.load(open(sys.argv[1]))["steps"][1:]
print(f"{statistics.median(x['seconds'] for x in s):.3f} "
      f"{statistics.median(x.get('comm_seconds', 0.0) for x in s):.3f}")
PY
}
for r in $(seq 1 "$ROUNDS"); do
  OMP_NUM_THREADS=2 "$LETHE" unlearn "${common[@]}" --set trainer.batch_size=8 \
      --set trainer.threads=2 --set output.dir="$DIR/one" >/dev/null 2>&1
  echo "round $r: 1 rank x 2 threads, batch 8: $(median "$DIR/one/run.json") (step s, comm s)"
  mpirun $ROOT --oversubscribe -np 2 -x OMP_NUM_THREADS=1 "$LETHE" unlearn "${common[@]}" \
      --set trainer.batch_size=4 --set trainer.threads=1 --set output.dir="$DIR/two" >/dev/null 2>&1
  echo "round $r: 2 ranks x 1 thread, batch 4 each: $(median "$DIR/two/run.json") (step s, comm s)"
done
