// Parameter-free RMSNorm (one warp per row) and the residual scalar mix λr·x + λ0·x0, whose
// backward reduces dλr and dλ0 across the whole grid (block sums, then one atomic per block).
#include "common.cuh"

#define RMS_NORM_EPS 1e-6f

// y = x · rstd, rstd = 1/sqrt(mean(x²) + eps), per row of `cols`; saves rstd (f32, one per row).
template <typename T>
__device__ void rms_norm_fwd(int rows, int cols, const T* x, T* y, float* rstd) {
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;  // a whole warp leaves together
    const T* xr = x + (size_t)row * cols;
    T* yr = y + (size_t)row * cols;
    float ss = 0.f;
    for (int j = lane; j < cols; j += 32) {
        const float v = to_f(xr[j]);
        ss += v * v;
    }
    const float r = 1.f / sqrtf(warp_sum(ss) / cols + RMS_NORM_EPS);
    for (int j = lane; j < cols; j += 32) yr[j] = from_f<T>(to_f(xr[j]) * r);
    if (lane == 0) rstd[row] = r;
}

// dx = rstd · (dy − y · mean(dy ∘ y)), from the output y.
template <typename T>
__device__ void rms_norm_bwd(int rows, int cols, const T* y, const T* dy, const float* rstd,
                             T* dx) {
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;
    const size_t at = (size_t)row * cols;
    float d = 0.f;
    for (int j = lane; j < cols; j += 32) d += to_f(dy[at + j]) * to_f(y[at + j]);
    const float mean = warp_sum(d) / cols, r = rstd[row];
    for (int j = lane; j < cols; j += 32)
        dx[at + j] = from_f<T>(r * (to_f(dy[at + j]) - to_f(y[at + j]) * mean));
}

// y = λ[0]·x + λ[1]·x0; λ: two f32 on the device (no copy to the host).
template <typename T>
__device__ void lambda_mix_fwd(size_t n, const T* x, const T* x0, const float* lambda, T* y) {
    const float a = lambda[0], b = lambda[1];
    FOR_EACH(i, n) { y[i] = from_f<T>(a * to_f(x[i]) + b * to_f(x0[i])); }
}

// dx = λ[0]·g, dx0 = λ[1]·g, dλ[0] += Σ g∘x, dλ[1] += Σ g∘x0 (dλ zeroed by the caller).
template <typename T>
__device__ void lambda_mix_bwd(size_t n, const T* x, const T* x0, const T* g, const float* lambda,
                               T* dx, T* dx0, float* dlambda) {
    const float a = lambda[0], b = lambda[1];
    float sa = 0.f, sb = 0.f;
    FOR_EACH(i, n) {
        const float gi = to_f(g[i]);
        dx[i] = from_f<T>(a * gi);
        dx0[i] = from_f<T>(b * gi);
        sa += gi * to_f(x[i]);
        sb += gi * to_f(x0[i]);
    }
    sa = block_sum(sa);
    sb = block_sum(sb);
    if (threadIdx.x == 0) {
        atomicAdd(dlambda, sa);
        atomicAdd(dlambda + 1, sb);
    }
}

#define ENTRIES(T, S)                                                                              \
    extern "C" __global__ void rms_norm_fwd_##S(int rows, int cols, const T* x, T* y,             \
                                                float* rstd) {                                     \
        rms_norm_fwd<T>(rows, cols, x, y, rstd);                                                   \
    }                                                                                              \
    extern "C" __global__ void rms_norm_bwd_##S(int rows, int cols, const T* y, const T* dy,      \
                                                const float* rstd, T* dx) {                        \
        rms_norm_bwd<T>(rows, cols, y, dy, rstd, dx);                                              \
    }                                                                                              \
    extern "C" __global__ void lambda_mix_fwd_##S(size_t n, const T* x, const T* x0,              \
                                                  const float* lambda, T* y) {                     \
        lambda_mix_fwd<T>(n, x, x0, lambda, y);                                                    \
    }                                                                                              \
    extern "C" __global__ void lambda_mix_bwd_##S(size_t n, const T* x, const T* x0, const T* g,  \
                                                  const float* lambda, T* dx, T* dx0,              \
                                                  float* dlambda) {                                \
        lambda_mix_bwd<T>(n, x, x0, g, lambda, dx, dx0, dlambda);                                  \
    }
FOR_DTYPES(ENTRIES)
