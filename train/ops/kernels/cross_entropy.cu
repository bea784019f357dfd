// Soft-capped cross-entropy per row of logits `[N, V]`: z = cap·tanh(l/cap), loss = lse(z) − z[t].
// One block per row; the log-sum-exp is taken about the row's largest z (z <= cap bounds it above,
// but with a large cap, the training file's "off", every exp(z − cap) would be 0 in f32).
#include "common.cuh"

__device__ __forceinline__ float capped(float l, float cap) { return cap * tanhf(l / cap); }

// loss[r] and lse[r] (f32); a target outside the vocabulary (which the caller refuses first) gives
// a NaN loss.
template <typename T>
__device__ void softcap_ce_fwd(int n, int v, float cap, const T* l, const uint32_t* targets,
                               float* loss, float* lse) {
    const int row = blockIdx.x;
    if (row >= n) return;
    const T* lr = l + (size_t)row * v;
    float m = -INFINITY;
    for (int j = threadIdx.x; j < v; j += blockDim.x) m = fmaxf(m, capped(to_f(lr[j]), cap));
    m = block_max(m);
    float s = 0.f;
    for (int j = threadIdx.x; j < v; j += blockDim.x) s += expf(capped(to_f(lr[j]), cap) - m);
    s = block_sum(s);
    if (threadIdx.x == 0) {
        const float total = m + logf(s);
        const uint32_t t = targets[row];
        lse[row] = total;
        loss[row] = t < (uint32_t)v ? total - capped(to_f(lr[t]), cap) : NAN;
    }
}

// dl = dloss[r] · (softmax(z) − onehot(t)) · (1 − (z/cap)²)
template <typename T>
__device__ void softcap_ce_bwd(int n, int v, float cap, const T* l, const uint32_t* targets,
                               const float* lse, const float* dloss, T* dl) {
    const int row = blockIdx.x;
    if (row >= n) return;
    const size_t at = (size_t)row * v;
    const float g = dloss[row], total = lse[row];
    const uint32_t t = targets[row];
    for (int j = threadIdx.x; j < v; j += blockDim.x) {
        const float z = capped(to_f(l[at + j]), cap), c = z / cap;
        const float p = expf(z - total) - ((uint32_t)j == t ? 1.f : 0.f);
        dl[at + j] = from_f<T>(g * p * (1.f - c * c));
    }
}

#define ENTRIES(T, S)                                                                              \
    extern "C" __global__ void softcap_ce_fwd_##S(int n, int v, float cap, const T* l,            \
                                                  const uint32_t* targets, float* loss,            \
                                                  float* lse) {                                    \
        softcap_ce_fwd<T>(n, v, cap, l, targets, loss, lse);                                       \
    }                                                                                              \
    extern "C" __global__ void softcap_ce_bwd_##S(int n, int v, float cap, const T* l,            \
                                                  const uint32_t* targets, const float* lse,       \
                                                  const float* dloss, T* dl) {                     \
        softcap_ce_bwd<T>(n, v, cap, l, targets, lse, dloss, dl);                                  \
    }
FOR_DTYPES(ENTRIES)
