// Shared by every kernel file: f32 and bf16 loads and stores (all arithmetic in f32), warp and
// block reductions, and the macros that instantiate a kernel for both dtypes under the names the
// Rust side loads (`<kernel>_f32`, `<kernel>_bf16`).
#pragma once
#include <cuda_bf16.h>
#include <stdint.h>

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) {
    return __float2bfloat16(x);
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// The sum over the whole block, returned to every thread. Every thread of the block must call it;
// blockDim.x is a multiple of 32 (at most 1024). The first barrier lets a second call reuse the
// scratch only after every warp has read the first call's partial sums.
__device__ __forceinline__ float block_sum(float v) {
    __shared__ float partial[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = lane < (int)(blockDim.x >> 5) ? partial[lane] : 0.f;
    return warp_sum(v);
}

// The maximum over the whole block, with block_sum's rules.
__device__ __forceinline__ float block_max(float v) {
    __shared__ float partial[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = lane < (int)(blockDim.x >> 5) ? partial[lane] : -INFINITY;
    return warp_max(v);
}

// Shared memory starts as garbage on a device; under the emulator (which keeps it in statics, so
// it would start as zeros or the previous block's values) this fills the arrays with NaN bytes, so
// a kernel that reads what it did not write fails there too. Nothing on a device. Every thread of
// the block calls it, before anything else touches the arrays.
template <class... Arrays>
__device__ __forceinline__ void garbage_in_emulation(Arrays&... arrays) {
#ifdef AUTORESEARCH_EMULATE
    if (threadIdx.x == 0) (std::memset(&arrays, 0xff, sizeof arrays), ...);
    __syncthreads();
#endif
}

// A grid-stride loop over `n` elements.
#define FOR_EACH(i, n)                                                                             \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n);                        \
         i += (size_t)gridDim.x * blockDim.x)

// Expands `M(T, suffix)` for f32 and bf16: each kernel file defines its `extern "C"` entry points
// in one macro, named `<kernel>_f32` and `<kernel>_bf16` as the Rust side loads them.
#define FOR_DTYPES(M) M(float, f32) M(__nv_bfloat16, bf16)
