#!/usr/bin/env bash
# Every GPU check in one go, on a GPU machine with the CUDA 13.0 runtime, Python with PyTorch,
# no Rust and no internet, from the archive scripts/build-cuda.sh makes. Figures go to $OUT
# (default ./gpu-check-out): summary.txt, all-steps.txt (every step's output) and the training run's
# log and result. Usage, from the repository root:
#   scripts/gpu-check.sh [dist/gpu-check.tar.xz] [path/to/torch_ref.py]
# Each step runs even when an earlier one failed, so one call yields every figure it can.
set -uo pipefail
archive=${1:-dist/gpu-check.tar.xz}
torch_ref=${2:-}
out=$(realpath -m "${OUT:-gpu-check-out}")
mkdir -p "$out"
work=$(mktemp -d)
logs="$work/logs"
mkdir -p "$logs"
tar -C "$work" -xJf "$archive" || { echo "cannot unpack $archive" >&2; exit 1; }
bin="$work/gpu-check"
# build-cuda.sh packs the reference script when it finds it beside the checkout.
for candidate in "$torch_ref" shared/bench/torch_ref.py ../shared/bench/torch_ref.py "$bin/torch_ref.py"; do
    [[ -n $candidate && -f $candidate ]] && { torch_ref=$(realpath "$candidate"); break; }
done
export LD_LIBRARY_PATH="/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
budget=${BUDGET:-60}
# For a dry run on a CPU machine (an archive from `build-cuda.sh cpu`): a tiny model and the cpu
# profile, e.g. MODEL_ARGS="--layers 2 --hidden 256 --heads 4 --kv-heads 2 --ffn 512" PROFILE=cpu.
read -r -a model_args <<< "${MODEL_ARGS:-}"
profile=${PROFILE:-gpu}

step() {  # step NAME COMMAND...: runs it (at most STEP_LIMIT seconds), keeps its output, times it
    local name=$1; shift
    local start=$SECONDS
    echo "== $name"
    timeout "${STEP_LIMIT:-240}" "$@" > "$logs/$name.txt" 2>&1
    local rc=$?
    echo "$name: exit $rc in $((SECONDS - start))s" | tee -a "$logs/steps.txt"
    tail -n 5 "$logs/$name.txt"
}

step nvidia-smi nvidia-smi

# A model too large to carry: Qwen2.5-1.5B's shape, Q8_0, random weights, written here.
pip_dir="$work/py"
# gguf always; numpy and yaml only where this Python lacks them (the carried ones are for 3.12).
wheels=("$bin"/gguf-*.whl)
python3 -c "import numpy" 2>/dev/null || wheels+=("$bin"/numpy-*.whl)
python3 -c "import yaml" 2>/dev/null || wheels+=("$bin"/pyyaml-*.whl)
step gguf-install python3 -m pip install --quiet --no-deps --no-index --target "$pip_dir" "${wheels[@]}"
step make-model env PYTHONPATH="$pip_dir${PYTHONPATH:+:$PYTHONPATH}" python3 "$bin/make-random-gguf.py" "$bin/model.gguf" "${model_args[@]}"
step doctor "$bin/autoresearch" doctor --model "$bin/model.gguf"

step bench-agent "$bin/autoresearch" bench agent --model "$bin/model.gguf"
# Grammar-constrained proposals; without Rust here the candidates cannot be compiled, which the
# output says for each one after showing that it parsed and applied.
step propose "$bin/autoresearch" propose --model "$bin/model.gguf" --count 3 --action set \
    --train-file "$bin/train.rs" --program "$bin/program.md"
step bench-swap "$bin/autoresearch" bench swap --model "$bin/model.gguf" --cycles 2

data="$work/data"
step prepare "$bin/autoresearch" prepare --profile "$profile" --data-dir "$data"
# The run's weights stay behind: only its log and result come back.
step train "$bin/autoresearch" train --trainer-bin "$bin/train" --budget "$budget" \
    --data-dir "$data" --run-dir "$work/train-run"
mkdir -p "$out/train-run"
cp "$work/train-run/train.log" "$work/train-run/result.json" "$out/train-run/" 2>/dev/null
# When the confined run fails, the figures still come back from an unconfined one, said as such.
confinement=()
if [[ ! -f $work/train-run/result.json ]]; then
    confinement=(--unconfined)
    step train-unconfined "$bin/autoresearch" train --trainer-bin "$bin/train" --budget "$budget" \
        --data-dir "$data" --run-dir "$work/train-run" --unconfined
    cp "$work/train-run/train.log" "$work/train-run/result.json" "$out/train-run/" 2>/dev/null
fi
if [[ -n $torch_ref ]]; then
    step torch-ref python3 "$torch_ref"
else
    echo "torch_ref.py not found: pass its path as the second argument" | tee -a "$logs/steps.txt"
fi
# Think while training: the trainer alone and with the agent drafting beside it, same budget.
step bench-draft "$bin/autoresearch" bench draft --model "$bin/model.gguf" --trainer-bin "$bin/train" \
    --train-file "$bin/train.rs" --program "$bin/program.md" --data-dir "$data" \
    --budget "${DRAFT_BUDGET:-30}" "${confinement[@]}"

{
    echo "# GPU check, $(date -u +%FT%TZ)"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    echo "## trainer (result.json)"
    cat "$out/train-run/result.json" 2>/dev/null || echo "no result"
    echo "## torch.compile reference"
    grep -iE "tokens/s|mfu|peak" "$logs/torch-ref.txt" 2>/dev/null
    echo "## agent"
    grep -E "load|pp|tg|tokens/s" "$logs/bench-agent.txt" 2>/dev/null
    grep -E "valid edits" "$logs/propose.txt" 2>/dev/null
    echo "## swap cycles"
    cat "$logs/bench-swap.txt" 2>/dev/null | grep -E "used|cycle"
    echo "## think while training"
    grep -E "^(draft|trainer|drafts|no draft)" "$logs/bench-draft.txt" 2>/dev/null
    echo "## steps"
    cat "$logs/steps.txt"
} > "$out/summary.txt"
cat "$out/summary.txt"
for f in "$logs"/*.txt; do
    [[ $f == "$logs/steps.txt" ]] && continue
    echo "===== $(basename "$f" .txt)"
    cat "$f"
done > "$out/all-steps.txt"
rm -rf "$work"
