#!/usr/bin/env bash
# Cross-builds the CUDA binaries for an sm_90 card (H100/H200) on a machine without a GPU, with
# the toolchain from scripts/cuda-toolchain.sh, and packs them for a GPU machine that has the CUDA
# 13.0 runtime but no Rust (see scripts/gpu-check.sh). Usage:
#   scripts/build-cuda.sh [trainer|all|cpu]    # default all
# trainer: the training program, kernel-check and the op-timings example (candle, ~20 min on 2
# cores), after checking the fused ops' PTX (every entry point present, assembled by ptxas for
# sm_80, sm_86, sm_89 and sm_90: A100, RTX 30, RTX 40 and H100/H200);
# all: also the appliance with llama.cpp's CUDA backend (~50 min more on 2 cores);
# cpu: no CUDA at all, the CPU builds packed the same way, for a dry run of gpu-check.sh here.
# Output: target/cuda/release/{train,autoresearch} and dist/gpu-check.tar.xz (at most 64 MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
# Where the CPU build lives (the caller's CARGO_TARGET_DIR, if any), before the CUDA build takes
# its own.
cpu_target=${CARGO_TARGET_DIR:-target}
# The builds below run offline; the CUDA-only crates (candle-kernels, cudaforge, ...) are not in a
# fresh machine's registry cache until fetched, as the lock file pins them.
cargo fetch --locked

if [[ $what == cpu ]]; then
    cargo build --release --offline -p autoresearch-train -p autoresearch
    cargo build --release --offline -p autoresearch-harness --example op-timings
    cargo build --release --offline -p autoresearch-ops --example kernel-check
    built=$cpu_target/release
    files=(train autoresearch examples/op-timings examples/kernel-check)
else
    scripts/cuda-toolchain.sh
    source target/cuda-13.0/env.sh
    export CARGO_TARGET_DIR="$PWD/target/cuda"
    # candle's kernels and llama.cpp's, for one architecture (CUDAARCHS is not forwarded).
    export CUDA_COMPUTE_CAP=90
    export CMAKE_CUDA_ARCHITECTURES=90-real
    # PyPI has no static cuBLAS (cuda-toolchain.sh leaves empty archives in its place): link
    # the shared libraries, which the GPU machine's CUDA install provides.
    export RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-lcublas -C link-arg=-lcublasLt"
    # The fused ops' kernels: every entry point the ops launch is in the PTX (a unit test that
    # needs no GPU; the driver stub stands in for libcuda), and the PTX assembles for the data
    # centre cards and the 24 GB desktop ones (RTX 3090, 4090).
    LD_LIBRARY_PATH="$CUDA_PATH/lib/stubs:$LD_LIBRARY_PATH" \
        cargo test --release --offline -p autoresearch-ops --features cuda --lib cuda::
    out=$(ls -td "$CARGO_TARGET_DIR"/release/build/autoresearch-ops-*/out | head -1)
    archs=(sm_80 sm_86 sm_89 sm_90)
    for arch in "${archs[@]}"; do
        for file in "$out"/*.ptx; do
            ptxas -arch=$arch -o /dev/null "$file" || { echo "$file does not assemble for $arch" >&2; exit 1; }
        done
    done
    echo "the fused ops' PTX: $(ls "$out"/*.ptx | wc -l) files, assembled for ${archs[*]}"
    cargo build --release --offline -p autoresearch-train --features cuda
    cargo build --release --offline -p autoresearch-harness --example op-timings --features cuda
    cargo build --release --offline -p autoresearch-ops --example kernel-check --features cuda
    built=target/cuda/release
    files=(train examples/op-timings examples/kernel-check)
    if [[ $what == all ]]; then
        cargo build --release --offline -p autoresearch --features cuda
        files+=(autoresearch)
    fi
fi

rm -rf dist/gpu-check
mkdir -p dist/gpu-check
for f in "${files[@]}"; do
    cp "$built/$f" dist/gpu-check/
    # Symbols only: the kernels and code stay.
    strip "dist/gpu-check/$(basename "$f")"
done
cp scripts/gpu-check.sh scripts/make-random-gguf.py train/src/train.rs program.md dist/gpu-check/
# PyTorch's reference, run beside our trainer for the ratio (from the shared material, when here).
[[ -f ../shared/bench/torch_ref.py ]] && cp ../shared/bench/torch_ref.py dist/gpu-check/
# The CPU build of the appliance prepares data and confines the trainer when the CUDA one is not
# built (trainer mode); it runs on the GPU machine as it is.
[[ -f dist/gpu-check/autoresearch ]] || cp "$cpu_target/release/autoresearch" dist/gpu-check/
# The gguf package (and what it imports) writes the random model on the GPU machine, whose
# Python 3.12 cannot reach PyPI.
python3 -m pip download --quiet --no-deps -d dist/gpu-check gguf==0.19.0
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 -d dist/gpu-check numpy pyyaml
# A 64 MiB window lets xz store the kernels that train and op-timings share once.
tar -C dist --sort=name -cf - gpu-check | xz -9 -T1 > dist/gpu-check.tar.xz
size=$(stat -c %s dist/gpu-check.tar.xz)
echo "dist/gpu-check.tar.xz: $((size / 1048576)) MiB"
if (( size > 64 * 1048576 )); then
    echo "over the 64 MiB a GPU machine can receive at once: strip the binaries or split the archive" >&2
    exit 1
fi
