// The interim attention kernel (until a flash-attention kernel replaces it): softmax over rows of
// scores `[B·H·T, T]` that cuBLAS computed, with the causal left window and the scale applied here,
// so no mask tensor and no scaled copy exist. One block per query row.
#include "common.cuh"

// Query `i` (the row's position in its T) sees keys lo..=i, lo = max(0, i + 1 − window).
__device__ __forceinline__ int first_key(int i, int window) { return max(0, i + 1 - window); }

// p = softmax(scale · s) over the visible keys, 0 elsewhere.
template <typename T>
__device__ void window_softmax_fwd(int rows, int t, int window, float scale, const T* s, T* p) {
    const int row = blockIdx.x;
    if (row >= rows) return;  // the whole block leaves together
    const int i = row % t, lo = first_key(i, window);
    const T* sr = s + (size_t)row * t;
    T* pr = p + (size_t)row * t;
    float m = -INFINITY;
    for (int j = lo + threadIdx.x; j <= i; j += blockDim.x) m = fmaxf(m, scale * to_f(sr[j]));
    m = block_max(m);
    float z = 0.f;
    for (int j = lo + threadIdx.x; j <= i; j += blockDim.x) z += expf(scale * to_f(sr[j]) - m);
    const float inv = 1.f / block_sum(z);
    for (int j = threadIdx.x; j < t; j += blockDim.x)
        pr[j] = from_f<T>(j >= lo && j <= i ? expf(scale * to_f(sr[j]) - m) * inv : 0.f);
}

// ds = scale · p ∘ (dp − Σ p∘dp) over the visible keys, 0 elsewhere.
template <typename T>
__device__ void window_softmax_bwd(int rows, int t, int window, float scale, const T* p,
                                   const T* dp, T* ds) {
    const int row = blockIdx.x;
    if (row >= rows) return;
    const int i = row % t, lo = first_key(i, window);
    const size_t at = (size_t)row * t;
    float d = 0.f;
    for (int j = lo + threadIdx.x; j <= i; j += blockDim.x) d += to_f(p[at + j]) * to_f(dp[at + j]);
    d = block_sum(d);
    for (int j = threadIdx.x; j < t; j += blockDim.x) {
        const float v = j >= lo && j <= i ? scale * to_f(p[at + j]) * (to_f(dp[at + j]) - d) : 0.f;
        ds[at + j] = from_f<T>(v);
    }
}

#define ENTRIES(T, S)                                                                              \
    extern "C" __global__ void window_softmax_fwd_##S(int rows, int t, int window, float scale,   \
                                                      const T* s, T* p) {                          \
        window_softmax_fwd<T>(rows, t, window, scale, s, p);                                       \
    }                                                                                              \
    extern "C" __global__ void window_softmax_bwd_##S(int rows, int t, int window, float scale,   \
                                                      const T* p, const T* dp, T* ds) {            \
        window_softmax_bwd<T>(rows, t, window, scale, p, dp, ds);                                  \
    }
FOR_DTYPES(ENTRIES)
