#!/usr/bin/env bash
# Every GPU check in one go, on a GPU machine with the CUDA 13.0 runtime, Python with PyTorch,
# no Rust and no internet, from the archive scripts/build-cuda.sh makes. Usage, from the
# repository root:
#   scripts/gpu-check.sh [dist/gpu-check.tar.xz] [path/to/torch_ref.py]
# Figures go to $OUT (default ./gpu-check-out): all-steps.txt grows with every step's output as it
# finishes (so a call cut short still brings back what ran), summary.txt at the end, and the
# training run's log and result. Each step runs even when an earlier one failed.
# Environment:
#   PARTS="kernels ops agent train torch draft"  which parts run (to split the checks over calls);
#                                    kernels: the CUDA kernels against the composite code
#                                    (kernel-check; the parts after it avoid kernels that
#                                    failed, see below); ops times the training file's operations one
#                                    by one; train24 (not by default) trains as on a card of
#                                    CARD_GIB=24 GiB, the harness holding the rest of this one;
#                                    zero-fill (not by default) trains with candle's backward as
#                                    published (CANDLE_GRAD_ZERO_FILL=1), against part train;
#                                    interim (not by default) trains with the interim attention
#                                    (AUTORESEARCH_ATTENTION=interim) instead of the flash kernels;
#                                    profile (not by default) lists the trainer's kernels by time
#                                    under Nsight Systems, where nsys is installed
#   BUDGET=60 DRAFT_BUDGET=30        training seconds of the train step and of each bench draft run
#   STEP_LIMIT=240 TRAIN_LIMIT=420   seconds before a step (a training step) is killed; the gpu
#                                    profile's 11 warm-up steps do not count against the budget
#   KERNEL_CHECK_LIMIT=120           the same for kernel-check (small shapes and a few timings: a
#                                    kernel that hangs should not take the whole call)
#   KERNEL_CHECK_RUNS=4              runs of kernel-check at most, each avoiding the kernels the
#                                    one before died in
#   OP_SHAPE="ROWS SEQ"              op-timings shape (default the gpu profile's 32 x 2048)
#   MODEL_ARGS, PROFILE=gpu          for a dry run on a CPU machine (an archive from
#                                    `build-cuda.sh cpu`): e.g. MODEL_ARGS="--layers 2 --hidden 256
#                                    --heads 4 --kv-heads 2 --ffn 512" PROFILE=cpu
set -uo pipefail
archive=${1:-dist/gpu-check.tar.xz}
torch_ref=${2:-}
out=$(realpath -m "${OUT:-gpu-check-out}")
mkdir -p "$out/train-run"
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
parts=" ${PARTS:-kernels ops agent train torch draft} "
budget=${BUDGET:-60}
read -r -a model_args <<< "${MODEL_ARGS:-}"
profile=${PROFILE:-gpu}

step() {  # step LIMIT NAME COMMAND...: runs it, keeps and times its output
    local limit=$1 name=$2; shift 2
    local start=$SECONDS
    echo "== $name"
    timeout "$limit" "$@" > "$logs/$name.txt" 2>&1
    local rc=$?
    echo "$name: exit $rc in $((SECONDS - start))s" | tee -a "$logs/steps.txt"
    tail -n 8 "$logs/$name.txt"
    { echo "===== $name (exit $rc)"; cat "$logs/$name.txt"; } >> "$out/all-steps.txt"
}
limit=${STEP_LIMIT:-240}
train_limit=${TRAIN_LIMIT:-420}
wants() { [[ $parts == *" $1 "* ]]; }

step 30 nvidia-smi nvidia-smi
if wants kernels; then
    # Kernels' first runs on a device. kernel-check checks every kernel (the caller's settings
    # aside) and ends with the settings that keep training off those that failed. When it dies
    # instead (a kernel that faults takes the CUDA context with it), the last check it announced
    # names the kernels to avoid, and it runs again under the settings gathered so far, up to
    # KERNEL_CHECK_RUNS times. The rest of this call (training, op-timings, the A/B parts) runs
    # under those settings, unless the caller gave its own; the summary's steps say what changed.
    composite="" attention=""
    for ((run = 1; run <= ${KERNEL_CHECK_RUNS:-4}; run++)); do
        name=kernel-check died_in=""
        ((run > 1)) && name=kernel-check-$run
        avoiding=()
        [[ -n $composite ]] && avoiding+=("AUTORESEARCH_COMPOSITE=$composite")
        [[ -n $attention ]] && avoiding+=("AUTORESEARCH_ATTENTION=$attention")
        step "${KERNEL_CHECK_LIMIT:-120}" "$name" env -u AUTORESEARCH_COMPOSITE -u AUTORESEARCH_ATTENTION \
            "${avoiding[@]}" "$bin/kernel-check"
        log="$logs/$name.txt"
        if grep -qE "^kernel-check: [0-9]+ checks" "$log"; then
            settings=$(sed -n "s/^kernel-check fallback: //p" "$log")
        else
            died_in=$(grep "^RUN " "$log" | tail -n 1)
            settings=${died_in##*| avoid: }
            echo "kernel-check died in: ${died_in:-its start}" | tee -a "$logs/steps.txt"
        fi
        for word in $settings; do
            case $word in
                AUTORESEARCH_COMPOSITE=*) composite=${composite:+$composite,}${word#*=} ;;
                AUTORESEARCH_ATTENTION=*) attention=${word#*=} ;;
            esac
        done
        # Done when it ran to its end, or died where no setting helps (outside any op's kernels).
        [[ -z $died_in || -z $settings ]] && break
    done
    if [[ -n $composite && -z ${AUTORESEARCH_COMPOSITE:-} ]]; then
        export AUTORESEARCH_COMPOSITE=$composite
        echo "kernels failed kernel-check: the rest of this call runs the composite code for $composite" \
            | tee -a "$logs/steps.txt"
    fi
    if [[ -n $attention && -z ${AUTORESEARCH_ATTENTION:-} ]]; then
        export AUTORESEARCH_ATTENTION=$attention
        echo "the flash kernels failed kernel-check: the rest of this call runs the interim attention" \
            | tee -a "$logs/steps.txt"
    fi
fi
if wants ops; then
    step "$limit" op-timings "$bin/op-timings" ${OP_SHAPE:-}
fi

if wants agent || wants draft; then
    # A model too large to carry: Qwen2.5-1.5B's shape, Q8_0, random weights, written here.
    pip_dir="$work/py"
    # gguf always; numpy and yaml only where this Python lacks them (the carried ones are for 3.12).
    wheels=("$bin"/gguf-*.whl)
    python3 -c "import numpy" 2>/dev/null || wheels+=("$bin"/numpy-*.whl)
    python3 -c "import yaml" 2>/dev/null || wheels+=("$bin"/pyyaml-*.whl)
    step "$limit" gguf-install python3 -m pip install --quiet --no-deps --no-index --target "$pip_dir" "${wheels[@]}"
    step "$limit" make-model env PYTHONPATH="$pip_dir${PYTHONPATH:+:$PYTHONPATH}" \
        python3 "$bin/make-random-gguf.py" "$bin/model.gguf" "${model_args[@]}"
fi
if wants agent; then
    step "$limit" doctor "$bin/autoresearch" doctor --model "$bin/model.gguf"
    step "$limit" bench-agent "$bin/autoresearch" bench agent --model "$bin/model.gguf"
    # Grammar-constrained proposals; without Rust here the candidates cannot be compiled, which
    # the output says for each one after showing that it parsed and applied.
    step "$limit" propose "$bin/autoresearch" propose --model "$bin/model.gguf" --count 3 \
        --action set --train-file "$bin/train.rs" --program "$bin/program.md"
    step "$limit" bench-swap "$bin/autoresearch" bench swap --model "$bin/model.gguf" --cycles 2
fi

data="$work/data"
confinement=()
if wants train || wants train24 || wants zero-fill || wants interim || wants profile || wants draft; then
    step "$limit" prepare "$bin/autoresearch" prepare --profile "$profile" --data-dir "$data"
fi
# train_part NAME OUTDIR [VAR=VALUE...]: `autoresearch train` on the prepared data with the variables
# set, each step's forward, backward and optimizer timed apart (result.json's parts); its log and
# result go to $out/OUTDIR (the weights stay behind). When the confined run fails, the figures
# still come back from an unconfined one, said so, and later runs go unconfined too.
train_part() {
    local name=$1 dir=$2; shift 2
    mkdir -p "$out/$dir"
    step "$train_limit" "$name" env AUTORESEARCH_TIME_PARTS=1 "$@" "$bin/autoresearch" train \
        --trainer-bin "$bin/train" --budget "$budget" --data-dir "$data" --run-dir "$work/$dir" \
        "${confinement[@]}"
    if [[ ! -f $work/$dir/result.json && ${#confinement[@]} -eq 0 ]] \
        && grep -q "CUDA\|Landlock\|confine" "$logs/$name.txt"; then
        confinement=(--unconfined)
        step "$train_limit" "$name-unconfined" env AUTORESEARCH_TIME_PARTS=1 "$@" "$bin/autoresearch" \
            train --trainer-bin "$bin/train" --budget "$budget" --data-dir "$data" \
            --run-dir "$work/$dir" --unconfined
    fi
    cp "$work/$dir/train.log" "$work/$dir/result.json" "$out/$dir/" 2>/dev/null
}
if wants train; then
    train_part train train-run
fi
if wants train24; then
    # A small card's setting on this one: rows per micro-batch and the evaluation's batches fit
    # themselves into CARD_GIB, and result.json's peak leaves out what the harness holds.
    train_part "train-${CARD_GIB:-24}gib" "train-${CARD_GIB:-24}gib" AUTORESEARCH_GPU_MEMORY_GIB="${CARD_GIB:-24}"
fi
if wants interim; then
    # The flash kernels' A/B: cuBLAS scores with the windowed-softmax kernels instead.
    train_part train-interim train-interim AUTORESEARCH_ATTENTION=interim
fi
if wants zero-fill; then
    # The candle patch's A/B: the same program with the backward as published, run directly (the
    # confinement passes only AUTORESEARCH_* variables; this is the archive's own program).
    mkdir -p "$out/train-zero-fill" "$work/train-zero-fill"
    step "$train_limit" train-zero-fill env CANDLE_GRAD_ZERO_FILL=1 AUTORESEARCH_TIME_PARTS=1 \
        AUTORESEARCH_DATA_DIR="$data" AUTORESEARCH_RUN_DIR="$work/train-zero-fill" \
        AUTORESEARCH_BUDGET="$budget" "$bin/train"
    cp "$work/train-zero-fill/result.json" "$out/train-zero-fill/" 2>/dev/null
fi
if wants profile; then
    # The per-kernel table (CUDA's own tracing): the row-fitting probes, the warm-up steps and a
    # few timed ones, then an evaluation of one batch (its own data folder), so that the table is
    # the training's.
    nsys_bin=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -n 1)
    if [[ -n $nsys_bin ]]; then
        mkdir -p "$work/train-profile"
        step "$limit" prepare-profile "$bin/autoresearch" prepare --profile "$profile" \
            --data-dir "$work/data-profile" --eval-tokens 65536
        step "$train_limit" profile "$nsys_bin" profile --trace=cuda --force-overwrite=true \
            -o "$work/profile" env AUTORESEARCH_DATA_DIR="$work/data-profile" \
            AUTORESEARCH_RUN_DIR="$work/train-profile" AUTORESEARCH_BUDGET=5 "$bin/train"
        step "$limit" kernel-table "$nsys_bin" stats --report cuda_gpu_kern_sum --format table \
            "$work/profile.nsys-rep"
    else
        echo "no nsys on this machine: no per-kernel table" | tee -a "$logs/steps.txt"
    fi
fi
if wants torch; then
    if [[ -n $torch_ref ]]; then
        step "$limit" torch-ref python3 "$torch_ref"
    else
        echo "torch_ref.py not found: pass its path as the second argument" | tee -a "$logs/steps.txt"
    fi
fi
if wants draft; then
    # Think while training: the trainer alone and with the agent drafting beside it.
    step $((2 * train_limit)) bench-draft "$bin/autoresearch" bench draft --model "$bin/model.gguf" \
        --trainer-bin "$bin/train" --train-file "$bin/train.rs" --program "$bin/program.md" \
        --data-dir "$data" --budget "${DRAFT_BUDGET:-30}" "${confinement[@]}"
fi

{
    echo "# GPU check, $(date -u +%FT%TZ), parts:$parts"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    echo "## trainer (result.json)"
    cat "$out/train-run/result.json" 2>/dev/null && echo || echo "no result"
    echo "## torch.compile reference"
    grep -E "tok_per_s" "$logs/torch-ref.txt" 2>/dev/null
    # The ratio, when both ran in this call.
    python3 - "$out/train-run/result.json" "$logs/torch-ref.txt" <<'PY' 2>/dev/null
import json, re, sys
ours = json.load(open(sys.argv[1]))
ref = dict(re.findall(r"(\w+)=(\S+)", open(sys.argv[2]).read()))
print(f"trainer / torch.compile: tokens/s {ours['tokens_per_second'] / float(ref['tok_per_s']):.3f}, "
      f"MFU {ours['mfu_percent']:.2f}% / {float(ref['mfu_pct']):.1f}%")
PY
    # Seconds per step by part, when the trainer timed them; and with candle's backward as
    # published, when part zero-fill ran; with the interim attention, when part interim ran.
    for run in train-run train-zero-fill train-interim; do
        python3 - "$out/$run/result.json" "$run" <<'PY' 2>/dev/null
import json, sys
r = json.load(open(sys.argv[1]))
p = r["parts"]
n = p["steps"]
print(f"{sys.argv[2]} per step: forward {p['forward_seconds'] / n:.3f} s, backward {p['backward_seconds'] / n:.3f} s, "
      f"optimizer {p['optimizer_seconds'] / n:.3f} s ({n} steps), {r['tokens_per_second']:.0f} tokens/s")
PY
    done
    echo "## as a ${CARD_GIB:-24} GiB card"
    grep -hE "rows per step|do not fit|at a time" "$out/train-${CARD_GIB:-24}gib/train.log" 2>/dev/null
    python3 - "$out/train-${CARD_GIB:-24}gib/result.json" <<'PY' 2>/dev/null
import json, sys
r = json.load(open(sys.argv[1]))
print(f"peak {r['peak_vram_mb'] / 1024:.2f} GiB, {r['tokens_per_second']:.0f} tokens/s, val_bpb {r['val_bpb']:.4f}")
PY
    echo "## the trainer's kernels by time (nsys)"
    head -n 40 "$logs/kernel-table.txt" 2>/dev/null
    echo "## kernels (kernel-check: the CUDA kernels against the composite code)"
    for log in "$logs"/kernel-check.txt "$logs"/kernel-check-*.txt; do
        [[ -f $log ]] || continue
        echo "# $(basename "$log" .txt)"
        grep -E "^(FAIL|TIME|kernel-check)" "$log"
    done
    echo "## operations (ms per micro-batch, forward + backward)"
    cat "$logs/op-timings.txt" 2>/dev/null
    echo "## agent"
    grep -E "load|pp|tg|tokens/s" "$logs/bench-agent.txt" 2>/dev/null
    grep -E "valid edits" "$logs/propose.txt" 2>/dev/null
    echo "## swap cycles"
    grep -E "used|cycle" "$logs/bench-swap.txt" 2>/dev/null
    echo "## think while training"
    grep -E "^(draft|trainer|drafts|no draft)" "$logs/bench-draft.txt" 2>/dev/null
    echo "## steps"
    cat "$logs/steps.txt"
} > "$out/summary.txt"
cat "$out/summary.txt"
rm -rf "$work"
