// Flash attention (FlashAttention-2's algorithm) on tensor cores, bf16 in and out, f32
// accumulation: causal with a left window (query i sees keys j with j <= i and i - j < window),
// q, k, v, o and their gradients `[B, T, H, HD]`, HD 64 or 128. The `T x T` scores never reach
// memory: the forward keeps a running maximum and sum per query row and saves the row's
// log-sum-exp (`[B, H, T]`, f32); the backward recomputes the probabilities from it.
//
// Kernels, each one block of 4 warps per (tile, batch row · head), grid (tiles, B·H):
//   flash_fwd    64 queries per block (16 per warp), key tiles of 32: o, lse;
//   flash_delta  one warp per (token, head): D = rowsum(dO ∘ O), `[B, H, T]`, f32;
//   flash_dkdv   64 keys per block (16 per warp), query tiles of 16: dk, dv;
//   flash_dq     64 queries per block (16 per warp), key tiles of 32: dq.
// The next tile is always on its way while a block computes: flash_fwd and flash_dq copy key
// tiles into a second buffer with cp.async, flash_dkdv loads query tiles into registers (its
// own keys and values copy in once, by cp.async, beside the first query tile's loads).
// dq has its own kernel (it recomputes the scores) so no atomics are needed and the result is
// the same on every run. Tiles wholly outside the window are skipped; the rest are masked.
// Shared rows are padded by 8 elements so a warp's fragment loads (and each phase of an ldmatrix,
// 8 rows of 16 bytes) hit 32 different banks.
#include "common.cuh"
#include "mma.cuh"

namespace flash {

constexpr int WARPS = 4;
constexpr int THREADS = 32 * WARPS;
constexpr int QUERIES = 16 * WARPS;  // flash_fwd, flash_dq: query rows per block
constexpr int KEYS = 16 * WARPS;     // flash_dkdv: keys per block
constexpr int KEY_TILE = 32;         // flash_fwd, flash_dq: keys per tile, two tiles in flight
constexpr int DKDV_QUERIES = 16;     // flash_dkdv: queries per tile (k and v fill shared memory)
constexpr int PAD = 8;

// Whether query i sees key j.
__device__ __forceinline__ bool sees(int i, int j, int window) { return j <= i && i - j < window; }

// The first key query i sees.
__device__ __forceinline__ int first_key(int i, int window) { return max(0, i + 1 - window); }

// Where one (batch row, head) starts, and the elements between its consecutive tokens.
struct Head {
    size_t base, stride;
    __device__ Head(int bh, int t, int heads, int hd)
        : base(((size_t)(bh / heads) * t * heads + bh % heads) * hd), stride((size_t)heads * hd) {}
};

// This thread's share of rows `first..first + ROWS` of a head, 16 bytes a load (zeros past
// token t), held in registers between `fetch` and `put`: loaded while the block still computes on
// the previous tile, so the load's latency hides behind that work.
template <int HD, int ROWS>
struct Staged {
    static constexpr int VECS = HD / 8, LOADS = (ROWS * VECS + THREADS - 1) / THREADS;
    uint4 part[LOADS];

    __device__ __forceinline__ void fetch(const uint16_t* x, Head at, int first, int t) {
        for (int n = 0; n < LOADS; ++n) {
            const int idx = threadIdx.x + n * THREADS, r = idx / VECS, c = idx % VECS * 8;
            const uint16_t* from = x + at.base + (first + r) * at.stride + c;
            part[n] = make_uint4(0, 0, 0, 0);
            if (idx < ROWS * VECS && first + r < t) part[n] = *reinterpret_cast<const uint4*>(from);
        }
    }

    __device__ __forceinline__ void put(uint16_t (*tile)[HD + PAD]) const {
        for (int n = 0; n < LOADS; ++n) {
            const int idx = threadIdx.x + n * THREADS;
            if (idx < ROWS * VECS)
                *reinterpret_cast<uint4*>(&tile[idx / VECS][idx % VECS * 8]) = part[n];
        }
    }
};

// Rows `first..first + ROWS` of a head into shared memory by asynchronous copies (zeros past
// token t, stored directly); they land after the caller's `cp_async_wait` and `__syncthreads`.
template <int HD, int ROWS>
__device__ __forceinline__ void load_tile_async(uint16_t (*tile)[HD + PAD], const uint16_t* x,
                                                Head at, int first, int t) {
    constexpr int VECS = HD / 8;
    for (int idx = threadIdx.x; idx < ROWS * VECS; idx += THREADS) {
        const int r = idx / VECS, c = idx % VECS * 8;
        if (first + r < t)
            cp_async_16(&tile[r][c], x + at.base + (first + r) * at.stride + c);
        else
            *reinterpret_cast<uint4*>(&tile[r][c]) = make_uint4(0, 0, 0, 0);
    }
}

// The key and value tiles of flash_fwd and flash_dq, two buffers each: the next tile's copies
// are in flight while the block computes on this one.
template <int HD>
struct KeyTiles {
    uint16_t (*k)[KEY_TILE][HD + PAD];
    uint16_t (*v)[KEY_TILE][HD + PAD];

    // The block's buffers (each kernel that calls this gets its own), with the copies of the
    // first tile, at key `first`, started. Every thread of the block calls it.
    __device__ static KeyTiles start(const uint16_t* ks, const uint16_t* vs, Head at, int first,
                                     int t) {
        __shared__ __align__(16) uint16_t kbuf[2][KEY_TILE][HD + PAD];
        __shared__ __align__(16) uint16_t vbuf[2][KEY_TILE][HD + PAD];
        garbage_in_emulation(kbuf, vbuf);
        const KeyTiles tiles{kbuf, vbuf};
        tiles.fetch(ks, vs, at, first, 0, t);
        cp_async_commit();
        return tiles;
    }

    // Starts the copies of the tile at key j0 into buffer `tile & 1`.
    __device__ __forceinline__ void fetch(const uint16_t* ks, const uint16_t* vs, Head at, int j0,
                                          int tile, int t) const {
        load_tile_async<HD, KEY_TILE>(k[tile & 1], ks, at, j0, t);
        load_tile_async<HD, KEY_TILE>(v[tile & 1], vs, at, j0, t);
    }

    // Before the block computes on tile `tile` (keys j0..): once every warp is done with the
    // other buffer, starts the next tile's copies into it (while keys up to `last` remain), then
    // waits for this tile's. Every thread of the block calls it; the first tile was fetched.
    __device__ __forceinline__ void advance(const uint16_t* ks, const uint16_t* vs, Head at,
                                            int j0, int tile, int last, int t) const {
        __syncthreads();
        if (j0 + KEY_TILE <= last) fetch(ks, vs, at, j0 + KEY_TILE, tile + 1, t);
        cp_async_commit();   // a group every time (maybe empty), so the wait below counts right
        cp_async_wait<1>();  // all but the latest group: this tile's copies have landed
        __syncthreads();
    }
};

__device__ __forceinline__ int group() { return (threadIdx.x & 31) >> 2; }
__device__ __forceinline__ int member() { return threadIdx.x & 3; }

// The query block of flash_fwd and flash_dq: its first query, this thread's two rows, and the
// keys its queries see, from the start of the first key tile to the last query.
struct QueryBlock {
    int i0, rows[2], first, last;
    __device__ QueryBlock(int t, int window) {
        i0 = blockIdx.x * QUERIES;
        const int warp = threadIdx.x >> 5;
        rows[0] = i0 + warp * 16 + group();
        rows[1] = rows[0] + 8;
        first = first_key(i0, window) / KEY_TILE * KEY_TILE;
        last = min(t, i0 + QUERIES) - 1;
    }
};

// The A fragment of rows r.., columns c.. of a row-major shared tile.
template <int W>
__device__ __forceinline__ void a_frag(uint32_t a[4], const uint16_t (*s)[W], int r, int c) {
    const int g = group(), m = member();
    a[0] = load_pair(&s[r + g][c + 2 * m]);
    a[1] = load_pair(&s[r + g + 8][c + 2 * m]);
    a[2] = load_pair(&s[r + g][c + 2 * m + 8]);
    a[3] = load_pair(&s[r + g + 8][c + 2 * m + 8]);
}

// The A fragment of columns c.. of this thread's two rows of a head in global memory (zeros
// past token t): q and dO, which stay in registers for a whole block.
__device__ __forceinline__ void a_frag_global(uint32_t a[4], const uint16_t* x, Head at,
                                              const int rows[2], int c, int t) {
    const int m = member();
    for (int r = 0; r < 2; ++r) {
        const uint16_t* p = x + at.base + (size_t)rows[r] * at.stride + c + 2 * m;
        a[r] = rows[r] < t ? load_pair(p) : 0u;
        a[r + 2] = rows[r] < t ? load_pair(p + 8) : 0u;
    }
}

// The B fragment (k0.., n0..) of the transpose of a shared tile: B[k][n] = s[n][k].
template <int W>
__device__ __forceinline__ void b_frag_t(uint32_t b[2], const uint16_t (*s)[W], int k0, int n0) {
    const int g = group(), m = member();
    b[0] = load_pair(&s[n0 + g][k0 + 2 * m]);
    b[1] = load_pair(&s[n0 + g][k0 + 2 * m + 8]);
}

// The B fragments (k0..k0 + 15) of n-tiles n0 and n0 + 8 of a row-major shared tile,
// B[k][n] = s[k][n]: b[0..2] for n0, b[2..4] for n0 + 8; one ldmatrix.
template <int W>
__device__ __forceinline__ void b_frags(uint32_t b[4], const uint16_t (*s)[W], int k0, int n0) {
    const int lane = threadIdx.x & 31, matrix = lane >> 3;
    ldmatrix_x4_trans(b, &s[k0 + (matrix & 1) * 8 + (lane & 7)][n0 + (matrix >> 1) * 8]);
}

// acc (16 x HD, C fragments) += a (16 x 16) · rows k0..k0 + 15 of a row-major shared tile.
template <int HD, int W>
__device__ __forceinline__ void mma_tile_rows(float acc[HD / 8][4], const uint32_t a[4],
                                              const uint16_t (*s)[W], int k0) {
    for (int n = 0; n < HD / 8; n += 2) {
        uint32_t b[4];
        b_frags(b, s, k0, n * 8);
        mma_bf16_16816(acc[n], a, b);
        mma_bf16_16816(acc[n + 1], a, b + 2);
    }
}

// Two C fragments (16 x 8 each, side by side) as one A fragment (16 x 16), rounded to bf16.
__device__ __forceinline__ void a_from_c(uint32_t a[4], const float lo[4], const float hi[4]) {
    a[0] = pack_bf16(lo[0], lo[1]);
    a[1] = pack_bf16(lo[2], lo[3]);
    a[2] = pack_bf16(hi[0], hi[1]);
    a[3] = pack_bf16(hi[2], hi[3]);
}

// Reductions over the four threads that hold one fragment row.
__device__ __forceinline__ float row_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float row_sum(float v) {
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// Stores this thread's two rows of an accumulator `[HD/8][4]`, times `scale`, as bf16.
template <int HD>
__device__ __forceinline__ void store_rows(__nv_bfloat16* out, Head at, const int rows[2], int t,
                                           const float acc[HD / 8][4], const float scale[2]) {
    for (int r = 0; r < 2; ++r) {
        if (rows[r] >= t) continue;
        __nv_bfloat16* p = out + at.base + (size_t)rows[r] * at.stride + 2 * member();
        for (int n = 0; n < HD / 8; ++n)
            *reinterpret_cast<uint32_t*>(p + n * 8) =
                pack_bf16(acc[n][2 * r] * scale[r], acc[n][2 * r + 1] * scale[r]);
    }
}

template <int HD>
__device__ void fwd(int t, int heads, int window, float scale, const uint16_t* q,
                    const uint16_t* k, const uint16_t* v, __nv_bfloat16* o, float* lse) {
    const Head at(blockIdx.y, t, heads, HD);
    const QueryBlock block(t, window);
    const KeyTiles<HD> tiles = KeyTiles<HD>::start(k, v, at, block.first, t);
    const int* rows = block.rows;
    const int m = member();
    uint32_t qf[HD / 16][4];
    for (int kk = 0; kk < HD / 16; ++kk) a_frag_global(qf[kk], q, at, rows, kk * 16, t);
    float acc[HD / 8][4] = {};
    float run_max[2] = {-INFINITY, -INFINITY}, run_sum[2] = {0.f, 0.f};
    for (int j0 = block.first, tile = 0; j0 <= block.last; j0 += KEY_TILE, ++tile) {
        tiles.advance(k, v, at, j0, tile, block.last, t);
        const uint16_t(*ks)[HD + PAD] = tiles.k[tile & 1];
        const uint16_t(*vs)[HD + PAD] = tiles.v[tile & 1];
        float s[KEY_TILE / 8][4] = {};  // scores: this warp's 16 queries x 32 keys
        for (int kk = 0; kk < HD / 16; ++kk)
            for (int n = 0; n < KEY_TILE / 8; ++n) {
                uint32_t b[2];
                b_frag_t(b, ks, kk * 16, n * 8);
                mma_bf16_16816(s[n], qf[kk], b);
            }
        float tile_max[2] = {-INFINITY, -INFINITY};
        for (int n = 0; n < KEY_TILE / 8; ++n)
            for (int e = 0; e < 4; ++e) {
                const int j = j0 + n * 8 + 2 * m + (e & 1);
                s[n][e] = sees(rows[e >> 1], j, window) ? s[n][e] * scale : -INFINITY;
                tile_max[e >> 1] = fmaxf(tile_max[e >> 1], s[n][e]);
            }
        // A row that sees no key yet keeps max -inf; 0 stands in so no inf - inf appears.
        float ref[2], alpha[2];
        for (int r = 0; r < 2; ++r) {
            const float next = fmaxf(run_max[r], row_max(tile_max[r]));
            ref[r] = next == -INFINITY ? 0.f : next;
            alpha[r] = __expf(run_max[r] - ref[r]);
            run_max[r] = next;
            run_sum[r] *= alpha[r];
        }
        for (int n = 0; n < KEY_TILE / 8; ++n)
            for (int e = 0; e < 4; ++e) {
                s[n][e] = __expf(s[n][e] - ref[e >> 1]);
                run_sum[e >> 1] += s[n][e];
            }
        for (int n = 0; n < HD / 8; ++n)
            for (int e = 0; e < 4; ++e) acc[n][e] *= alpha[e >> 1];
        for (int kk = 0; kk < KEY_TILE / 16; ++kk) {
            uint32_t p[4];
            a_from_c(p, s[2 * kk], s[2 * kk + 1]);
            mma_tile_rows<HD>(acc, p, vs, kk * 16);
        }
    }
    float inv[2];
    for (int r = 0; r < 2; ++r) {
        run_sum[r] = row_sum(run_sum[r]);  // key i is always seen: the sum is positive
        inv[r] = 1.f / run_sum[r];
        if (rows[r] < t && m == 0)
            lse[(size_t)blockIdx.y * t + rows[r]] = run_max[r] + logf(run_sum[r]);
    }
    store_rows<HD>(o, at, rows, t, acc, inv);
}

// D = rowsum(dO ∘ O) of each (token, head) row, stored as `[B, H, T]`.
__device__ void delta(int rows, int t, int heads, int hd, const __nv_bfloat16* o,
                      const __nv_bfloat16* d_o, float* out) {
    const int row = (int)((blockIdx.x * blockDim.x + threadIdx.x) >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;  // the whole warp leaves together
    float s = 0.f;
    const size_t at = (size_t)row * hd;
    for (int c = lane; c < hd; c += 32) s += to_f(o[at + c]) * to_f(d_o[at + c]);
    s = warp_sum(s);
    const int h = row % heads, i = row / heads % t, b = row / heads / t;
    if (lane == 0) out[((size_t)b * heads + h) * t + i] = s;
}

template <int HD>
__device__ void dkdv(int t, int heads, int window, float scale, const uint16_t* q,
                     const uint16_t* k, const uint16_t* v, const uint16_t* d_o, const float* lse,
                     const float* delta, __nv_bfloat16* dk, __nv_bfloat16* dv) {
    __shared__ __align__(16) uint16_t ks[KEYS][HD + PAD];
    __shared__ __align__(16) uint16_t vs[KEYS][HD + PAD];
    __shared__ __align__(16) uint16_t qs[DKDV_QUERIES][HD + PAD];
    __shared__ __align__(16) uint16_t os[DKDV_QUERIES][HD + PAD];
    __shared__ float lse_s[DKDV_QUERIES], delta_s[DKDV_QUERIES];
    garbage_in_emulation(ks, vs, qs, os, lse_s, delta_s);
    const Head at(blockIdx.y, t, heads, HD);
    const int j0 = blockIdx.x * KEYS, warp = threadIdx.x >> 5, m = member();
    const int keys[2] = {j0 + warp * 16 + group(), j0 + warp * 16 + group() + 8};
    // k and v copy in while the first query tile loads; they land before the loop's first barrier.
    load_tile_async<HD, KEYS>(ks, k, at, j0, t);
    load_tile_async<HD, KEYS>(vs, v, at, j0, t);
    cp_async_commit();
    float dka[HD / 8][4] = {}, dva[HD / 8][4] = {};
    // The last query that sees one of these keys is j0 + KEYS - 1 + window - 1.
    const int end = min(t, j0 + KEYS + window - 1);
    // The next query tile, in registers: q, dO, and (threads below DKDV_QUERIES) lse and D.
    Staged<HD, DKDV_QUERIES> q_next, o_next;
    float lse_next = 0.f, delta_next = 0.f;
    auto fetch = [&](int i0) {
        q_next.fetch(q, at, i0, t);
        o_next.fetch(d_o, at, i0, t);
        const int i = i0 + (int)threadIdx.x;
        if (threadIdx.x < DKDV_QUERIES && i < t) {
            lse_next = lse[(size_t)blockIdx.y * t + i];
            delta_next = delta[(size_t)blockIdx.y * t + i];
        }
    };
    fetch(j0);
    cp_async_wait<0>();
    for (int i0 = j0; i0 < end; i0 += DKDV_QUERIES) {
        __syncthreads();  // the previous tile is used up (and k, v are in, the first time)
        q_next.put(qs);
        o_next.put(os);
        if (threadIdx.x < DKDV_QUERIES) {
            lse_s[threadIdx.x] = lse_next;
            delta_s[threadIdx.x] = delta_next;
        }
        __syncthreads();
        if (i0 + DKDV_QUERIES < end) fetch(i0 + DKDV_QUERIES);
        // Transposed scores and the probabilities' gradient: this warp's 16 keys x 16 queries.
        float st[2][4] = {}, dpt[2][4] = {};
        for (int kk = 0; kk < HD / 16; ++kk) {
            uint32_t ka[4], va[4];
            a_frag(ka, ks, warp * 16, kk * 16);
            a_frag(va, vs, warp * 16, kk * 16);
            for (int n = 0; n < 2; ++n) {
                uint32_t b[2];
                b_frag_t(b, qs, kk * 16, n * 8);
                mma_bf16_16816(st[n], ka, b);
                b_frag_t(b, os, kk * 16, n * 8);
                mma_bf16_16816(dpt[n], va, b);
            }
        }
        for (int n = 0; n < 2; ++n)
            for (int e = 0; e < 4; ++e) {
                const int il = n * 8 + 2 * m + (e & 1), i = i0 + il;
                const float p = i < t && sees(i, keys[e >> 1], window)
                                    ? __expf(st[n][e] * scale - lse_s[il])
                                    : 0.f;
                st[n][e] = p;
                dpt[n][e] = p * (dpt[n][e] - delta_s[il]);  // dS, before the scale
            }
        uint32_t p[4], ds[4];
        a_from_c(p, st[0], st[1]);
        a_from_c(ds, dpt[0], dpt[1]);
        mma_tile_rows<HD>(dva, p, os, 0);
        mma_tile_rows<HD>(dka, ds, qs, 0);
    }
    const float k_scale[2] = {scale, scale}, v_scale[2] = {1.f, 1.f};
    store_rows<HD>(dk, at, keys, t, dka, k_scale);
    store_rows<HD>(dv, at, keys, t, dva, v_scale);
}

template <int HD>
__device__ void dq(int t, int heads, int window, float scale, const uint16_t* q,
                   const uint16_t* k, const uint16_t* v, const uint16_t* d_o, const float* lse,
                   const float* delta, __nv_bfloat16* dq) {
    const Head at(blockIdx.y, t, heads, HD);
    const QueryBlock block(t, window);
    const KeyTiles<HD> tiles = KeyTiles<HD>::start(k, v, at, block.first, t);
    const int* rows = block.rows;
    const int m = member();
    uint32_t qf[HD / 16][4], of[HD / 16][4];
    for (int kk = 0; kk < HD / 16; ++kk) {
        a_frag_global(qf[kk], q, at, rows, kk * 16, t);
        a_frag_global(of[kk], d_o, at, rows, kk * 16, t);
    }
    float row_lse[2], row_delta[2];
    for (int r = 0; r < 2; ++r) {
        row_lse[r] = rows[r] < t ? lse[(size_t)blockIdx.y * t + rows[r]] : 0.f;
        row_delta[r] = rows[r] < t ? delta[(size_t)blockIdx.y * t + rows[r]] : 0.f;
    }
    float acc[HD / 8][4] = {};
    for (int j0 = block.first, tile = 0; j0 <= block.last; j0 += KEY_TILE, ++tile) {
        tiles.advance(k, v, at, j0, tile, block.last, t);
        const uint16_t(*ks)[HD + PAD] = tiles.k[tile & 1];
        const uint16_t(*vs)[HD + PAD] = tiles.v[tile & 1];
        float s[KEY_TILE / 8][4] = {}, dp[KEY_TILE / 8][4] = {};
        for (int kk = 0; kk < HD / 16; ++kk)
            for (int n = 0; n < KEY_TILE / 8; ++n) {
                uint32_t b[2];
                b_frag_t(b, ks, kk * 16, n * 8);
                mma_bf16_16816(s[n], qf[kk], b);
                b_frag_t(b, vs, kk * 16, n * 8);
                mma_bf16_16816(dp[n], of[kk], b);
            }
        for (int n = 0; n < KEY_TILE / 8; ++n)
            for (int e = 0; e < 4; ++e) {
                const int r = e >> 1, j = j0 + n * 8 + 2 * m + (e & 1);
                const float p =
                    sees(rows[r], j, window) ? __expf(s[n][e] * scale - row_lse[r]) : 0.f;
                s[n][e] = p * (dp[n][e] - row_delta[r]);  // dS, before the scale
            }
        for (int kk = 0; kk < KEY_TILE / 16; ++kk) {
            uint32_t ds[4];
            a_from_c(ds, s[2 * kk], s[2 * kk + 1]);
            mma_tile_rows<HD>(acc, ds, ks, kk * 16);
        }
    }
    const float q_scale[2] = {scale, scale};
    store_rows<HD>(dq, at, rows, t, acc, q_scale);
}

__device__ __forceinline__ const uint16_t* bits(const __nv_bfloat16* p) {
    return reinterpret_cast<const uint16_t*>(p);
}

}  // namespace flash

typedef __nv_bfloat16 bf16;

#define FLASH_ENTRIES(HD)                                                                          \
    extern "C" __global__ void __launch_bounds__(flash::THREADS)                                   \
        flash_fwd_hd##HD##_bf16(int t, int heads, int window, float scale, const bf16* q,         \
                                const bf16* k, const bf16* v, bf16* o, float* lse) {              \
        flash::fwd<HD>(t, heads, window, scale, flash::bits(q), flash::bits(k), flash::bits(v), o, \
                       lse);                                                                       \
    }                                                                                              \
    extern "C" __global__ void __launch_bounds__(flash::THREADS) flash_dkdv_hd##HD##_bf16(         \
        int t, int heads, int window, float scale, const bf16* q, const bf16* k, const bf16* v,   \
        const bf16* d_o, const float* lse, const float* delta, bf16* dk, bf16* dv) {               \
        flash::dkdv<HD>(t, heads, window, scale, flash::bits(q), flash::bits(k), flash::bits(v),   \
                        flash::bits(d_o), lse, delta, dk, dv);                                     \
    }                                                                                              \
    extern "C" __global__ void __launch_bounds__(flash::THREADS) flash_dq_hd##HD##_bf16(           \
        int t, int heads, int window, float scale, const bf16* q, const bf16* k, const bf16* v,   \
        const bf16* d_o, const float* lse, const float* delta, bf16* dq) {                         \
        flash::dq<HD>(t, heads, window, scale, flash::bits(q), flash::bits(k), flash::bits(v),     \
                      flash::bits(d_o), lse, delta, dq);                                           \
    }
FLASH_ENTRIES(64)
FLASH_ENTRIES(128)

extern "C" __global__ void flash_delta_bf16(int rows, int t, int heads, int hd, const bf16* o,
                                            const bf16* d_o, float* out) {
    flash::delta(rows, t, heads, hd, o, d_o, out);
}
