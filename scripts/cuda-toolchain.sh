#!/usr/bin/env bash
# A CUDA 13.0 toolchain from PyPI wheels, for building the CUDA binaries on a machine without a
# GPU or a system CUDA install (see README, "CUDA builds"). Usage:
#   scripts/cuda-toolchain.sh [DIR]        # default DIR: target/cuda-13.0
# then:  source DIR/env.sh
# The wheels are NVIDIA's (proprietary licence): installed at build time, never committed.
# 13.0.x is pinned: PTX from a newer nvcc is rejected by driver 580.
set -euo pipefail

dir=$(realpath -m "${1:-$(dirname "$0")/../target/cuda-13.0}")
root="$dir/nvidia/cu13"
if [[ -x "$root/bin/nvcc" && -f "$dir/env.sh" ]]; then
    echo "CUDA toolchain already in $dir"; exit 0
fi
mkdir -p "$dir/wheels"
python3 -m pip download --quiet --no-deps -d "$dir/wheels" \
    nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-cublas==13.0.2.14 \
    nvidia-cuda-nvrtc==13.0.88 nvidia-curand==10.4.0.35 nvidia-cuda-culibos==13.0.85
# pip keeps the executable bits that unzip would drop.
python3 -m pip install --quiet --no-deps --no-index --upgrade --target "$dir" "$dir"/wheels/*.whl

cd "$root"
[[ -e lib64 ]] || ln -s lib lib64
# Unversioned names, as the linker and CMake's FindCUDAToolkit look for them.
for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13; do
    [[ -e lib/$lib ]] || { echo "missing lib/$lib in the wheels" >&2; exit 1; }
    ln -sf "$lib" "lib/${lib%.so.*}.so"
done
# PyPI ships no static cuBLAS: llama.cpp's static CUDA build asks for it, so empty archives stand
# in and the shared libraries are linked instead (-lcublas -lcublasLt, see build-cuda.sh).
for a in libcublas_static.a libcublasLt_static.a; do
    [[ -e lib/$a ]] || ar rc "lib/$a"
done
# The driver's libcuda.so.1 exists only on GPU machines: a stub with every cu* symbol of cuda.h
# lets binaries link here and load the real one there.
# Both the names as written and as the preprocessor makes them (cuMemAlloc -> cuMemAlloc_v2).
mkdir -p lib/stubs
{
    grep -oE '^[[:space:]]*CUresult CUDAAPI cu[A-Za-z0-9_]+' include/cuda.h | awk '{print $3}'
    gcc -E -P -I include include/cuda.h | grep -oE 'CUresult +cu[A-Za-z0-9_]+ *\(' | tr -d '(' | awk '{print $2}'
} | sort -u | sed 's/.*/void &(void) {}/' > lib/stubs/cuda_stub.c
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o lib/stubs/libcuda.so lib/stubs/cuda_stub.c
ln -sf libcuda.so lib/stubs/libcuda.so.1

cat > "$dir/env.sh" <<ENV
export CUDA_PATH="$root"
export CUDA_HOME="$root"
# llama-cpp-sys-2 finds the libraries it links (cudart_static, culibos, the libcuda stub) through
# find_cuda_helper, which on Linux reads this (it appends lib64 and lib64/stubs), not CUDA_PATH.
export CUDA_LIBRARY_PATH="$root"
export PATH="$root/bin:\$PATH"
export LIBRARY_PATH="$root/lib:$root/lib/stubs\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
export LD_LIBRARY_PATH="$root/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
ENV
"$root/bin/nvcc" --version | tail -2
echo "CUDA toolchain in $dir: source $dir/env.sh"
