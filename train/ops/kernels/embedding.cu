// Embedding lookup and its backward on f32 tables: a gather of rows, and a scatter-add of the
// gradient rows into a zeroed table gradient with one atomic per element (every id in parallel,
// where candle's index_add walks the ids one by one). The summation order is not deterministic.
#include "common.cuh"

// out[r, :] = table[ids[r], :] for r < n, rows of c; an id outside the table (which the caller
// refuses first) gives NaNs.
extern "C" __global__ void embedding_fwd_f32(size_t n, int c, int vocab, const float* table,
                                             const uint32_t* ids, float* out) {
    FOR_EACH(i, n * c) {
        const uint32_t id = ids[i / c];
        out[i] = id < (uint32_t)vocab ? table[(size_t)id * c + i % c] : NAN;
    }
}

// dtable[ids[r], :] += g[r, :] (ids outside the table are skipped: their forward was NaN).
extern "C" __global__ void embedding_bwd_f32(size_t n, int c, int vocab, const float* g,
                                             const uint32_t* ids, float* dtable) {
    FOR_EACH(i, n * c) {
        const uint32_t id = ids[i / c];
        if (id < (uint32_t)vocab) atomicAdd(dtable + (size_t)id * c + i % c, g[i]);
    }
}
