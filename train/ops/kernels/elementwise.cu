// ReLU², the MLP's activation: one pass each way.
#include "common.cuh"

template <typename T> __device__ void relu_sq_fwd(size_t n, const T* x, T* y) {
    FOR_EACH(i, n) {
        const float r = fmaxf(to_f(x[i]), 0.f);
        y[i] = from_f<T>(r * r);
    }
}

// dx = 2·relu(x)·dy
template <typename T> __device__ void relu_sq_bwd(size_t n, const T* x, const T* dy, T* dx) {
    FOR_EACH(i, n) { dx[i] = from_f<T>(2.f * fmaxf(to_f(x[i]), 0.f) * to_f(dy[i])); }
}

#define ENTRIES(T, S)                                                                              \
    extern "C" __global__ void relu_sq_fwd_##S(size_t n, const T* x, T* y) {                       \
        relu_sq_fwd<T>(n, x, y);                                                                   \
    }                                                                                              \
    extern "C" __global__ void relu_sq_bwd_##S(size_t n, const T* x, const T* dy, T* dx) {         \
        relu_sq_bwd<T>(n, x, dy, dx);                                                              \
    }
FOR_DTYPES(ENTRIES)
