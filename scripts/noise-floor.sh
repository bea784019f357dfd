#!/usr/bin/env bash
# The noise floor's sources on a prepared profile, measured: the same training file run again
# with the plain wall clock (the step count varies with the machine's load), run again with the
# harness's clock (which does not count the time the hypervisor steals), and run with other seeds
# (another initialisation). Prints every run's val_bpb and step count, then each source's
# standard deviation. Needs a release build of the appliance (cargo build --release).
#
#   scripts/noise-floor.sh DATA_DIR [BUDGET_SECONDS] [RUNS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
data=${1:?usage: scripts/noise-floor.sh DATA_DIR [BUDGET_SECONDS] [RUNS]}
budget=${2:-60}
runs=${3:-4}
bin=${CARGO_TARGET_DIR:-$root/target}/release/autoresearch
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

run() { # name, training file
  wall=0
  [[ $1 == wall-* ]] && wall=1
  AUTORESEARCH_WALL_CLOCK=$wall "$bin" train --budget "$budget" --data-dir "$data" --train-file "$2" --run-dir "$out/$1" >/dev/null 2>&1
  python3 - "$out/$1/result.json" "$1" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]}\t{r['val_bpb']:.6f}\t{r['num_steps']}")
EOF
}

: > "$out/results.tsv"
for i in $(seq 1 "$runs"); do
  run "wall-$i" "$root/train/src/train.rs" | tee -a "$out/results.tsv"
  run "rerun-$i" "$root/train/src/train.rs" | tee -a "$out/results.tsv"
  sed "s/^const SEED: u64 = 42;/const SEED: u64 = $i;/" "$root/train/src/train.rs" > "$out/seed-$i.rs"
  run "seed-$i" "$out/seed-$i.rs" | tee -a "$out/results.tsv"
done
python3 - "$out/results.tsv" <<'EOF'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
for source in ("wall", "rerun", "seed"):
    v = [float(r[1]) for r in rows if r[0].startswith(source)]
    steps = [int(r[2]) for r in rows if r[0].startswith(source)]
    print(f"{source}: sigma {statistics.stdev(v):.6f} over {len(v)} runs (mean {statistics.mean(v):.6f}), steps {min(steps)}-{max(steps)}")
EOF
