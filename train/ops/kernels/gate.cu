// The value-embedding mix y = v + ve · 2σ(l), the gate logit l of each (token, head) broadcast
// over the head's hd values: one warp per (token, head) row.
#include "common.cuh"

__device__ __forceinline__ float sigmoid(float x) { return 1.f / (1.f + expf(-x)); }

template <typename T>
__device__ void gate_mix_fwd(int rows, int hd, const T* v, const T* ve, const T* l, T* y) {
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;
    const float g = 2.f * sigmoid(to_f(l[row]));
    const size_t at = (size_t)row * hd;
    for (int j = lane; j < hd; j += 32) y[at + j] = from_f<T>(to_f(v[at + j]) + g * to_f(ve[at + j]));
}

// dv = dy, dve = dy · 2σ(l), dl = 2σ(l)(1 − σ(l)) · Σ_hd dy ∘ ve
template <typename T>
__device__ void gate_mix_bwd(int rows, int hd, const T* ve, const T* l, const T* dy, T* dve,
                             T* dl) {
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;
    const float s = sigmoid(to_f(l[row]));
    const size_t at = (size_t)row * hd;
    float d = 0.f;
    for (int j = lane; j < hd; j += 32) {
        const float g = to_f(dy[at + j]);
        dve[at + j] = from_f<T>(2.f * s * g);
        d += g * to_f(ve[at + j]);
    }
    d = warp_sum(d);
    if (lane == 0) dl[row] = from_f<T>(2.f * s * (1.f - s) * d);
}

#define ENTRIES(T, S)                                                                              \
    extern "C" __global__ void gate_mix_fwd_##S(int rows, int hd, const T* v, const T* ve,        \
                                                const T* l, T* y) {                                \
        gate_mix_fwd<T>(rows, hd, v, ve, l, y);                                                    \
    }                                                                                              \
    extern "C" __global__ void gate_mix_bwd_##S(int rows, int hd, const T* ve, const T* l,        \
                                                const T* dy, T* dve, T* dl) {                      \
        gate_mix_bwd<T>(rows, hd, ve, l, dy, dve, dl);                                             \
    }
FOR_DTYPES(ENTRIES)
