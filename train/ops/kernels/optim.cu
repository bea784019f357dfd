// The AdamW update of one parameter in one pass: new weight and moments into fresh buffers
// (the caller copies them into place), f32 throughout.
#include "common.cuh"

// m' = β1·m + (1−β1)·g, v' = β2·v + (1−β2)·g²,
// w' = w·keep − lr · (m'·inv_c1) / (sqrt(v'·inv_c2) + eps), keep = 1 − lr·wd.
extern "C" __global__ void adamw_f32(size_t n, const float* w, const float* g, const float* m,
                                     const float* v, float lr, float beta1, float beta2, float eps,
                                     float keep, float inv_c1, float inv_c2, float* w_out,
                                     float* m_out, float* v_out) {
    FOR_EACH(i, n) {
        const float gi = g[i];
        const float mi = beta1 * m[i] + (1.f - beta1) * gi;
        const float vi = beta2 * v[i] + (1.f - beta2) * gi * gi;
        m_out[i] = mi;
        v_out[i] = vi;
        w_out[i] = w[i] * keep - lr * (mi * inv_c1) / (sqrtf(vi * inv_c2) + eps);
    }
}
