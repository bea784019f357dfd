// RoPE, then parameter-free RMSNorm over the head, then a scale, on `[B, T, H, hd]`: one warp per
// (token, head) row. Tables: cos and sin `[T, hd/2]` f32 (position-major, as the training file
// builds them). The backward undoes the three in reverse order.
#include "common.cuh"

#define RMS_NORM_EPS 1e-6f

// a = x1·cos + x2·sin, b = x2·cos − x1·sin on the two halves; y = scale · rms_norm([a, b]).
// Saves the norm's rstd per row.
template <typename T>
__device__ void rope_norm_fwd(int rows, int t, int h, int hd, float scale, const T* x,
                              const float* cos, const float* sin, T* y, float* rstd) {
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;
    const int half = hd / 2, pos = (row / h) % t;
    const size_t at = (size_t)row * hd;
    const float* c = cos + (size_t)pos * half;
    const float* s = sin + (size_t)pos * half;
    float ss = 0.f;
    for (int j = lane; j < half; j += 32) {
        const float x1 = to_f(x[at + j]), x2 = to_f(x[at + half + j]);
        const float a = x1 * c[j] + x2 * s[j], b = x2 * c[j] - x1 * s[j];
        ss += a * a + b * b;
    }
    const float r = 1.f / sqrtf(warp_sum(ss) / hd + RMS_NORM_EPS);
    for (int j = lane; j < half; j += 32) {
        const float x1 = to_f(x[at + j]), x2 = to_f(x[at + half + j]);
        y[at + j] = from_f<T>(scale * r * (x1 * c[j] + x2 * s[j]));
        y[at + half + j] = from_f<T>(scale * r * (x2 * c[j] - x1 * s[j]));
    }
    if (lane == 0) rstd[row] = r;
}

// From the output: u = y/scale (the normed rotation), dz = rstd·(du − u·mean(du∘u)) with
// du = scale·dy, then the inverse rotation: dx1 = dza·cos − dzb·sin, dx2 = dza·sin + dzb·cos.
template <typename T>
__device__ void rope_norm_bwd(int rows, int t, int h, int hd, float scale, const T* y, const T* dy,
                              const float* cos, const float* sin, const float* rstd, T* dx) {
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;
    const int half = hd / 2, pos = (row / h) % t;
    const size_t at = (size_t)row * hd;
    const float* c = cos + (size_t)pos * half;
    const float* s = sin + (size_t)pos * half;
    // Σ du∘u = Σ (scale·dy)(y/scale) = Σ dy∘y: the scale cancels.
    float d = 0.f;
    for (int j = lane; j < hd; j += 32) d += to_f(dy[at + j]) * to_f(y[at + j]);
    const float mean = warp_sum(d) / hd, r = rstd[row], inv = 1.f / scale;
    for (int j = lane; j < half; j += 32) {
        const float dza = r * (scale * to_f(dy[at + j]) - inv * to_f(y[at + j]) * mean);
        const float dzb =
            r * (scale * to_f(dy[at + half + j]) - inv * to_f(y[at + half + j]) * mean);
        dx[at + j] = from_f<T>(dza * c[j] - dzb * s[j]);
        dx[at + half + j] = from_f<T>(dza * s[j] + dzb * c[j]);
    }
}

#define ENTRIES(T, S)                                                                              \
    extern "C" __global__ void rope_norm_fwd_##S(int rows, int t, int h, int hd, float scale,     \
                                                 const T* x, const float* cos, const float* sin,   \
                                                 T* y, float* rstd) {                              \
        rope_norm_fwd<T>(rows, t, h, hd, scale, x, cos, sin, y, rstd);                             \
    }                                                                                              \
    extern "C" __global__ void rope_norm_bwd_##S(int rows, int t, int h, int hd, float scale,     \
                                                 const T* y, const T* dy, const float* cos,        \
                                                 const float* sin, const float* rstd, T* dx) {     \
        rope_norm_bwd<T>(rows, t, h, hd, scale, y, dy, cos, sin, rstd, dx);                        \
    }
FOR_DTYPES(ENTRIES)
