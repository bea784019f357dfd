// A CPU emulator for the CUDA kernels, so the CI machine (no GPU) runs them (`launcher.cpp`, and
// the test `tests/kernels_emulated.rs`): every thread of a block is a host thread, blocks run one
// after another, `__shared__` variables are statics (one block at a time, so one copy serves),
// `__syncthreads` is a barrier of the block, atomics are atomics, and the warp operations
// (shuffles, the tensor-core product, ldmatrix) exchange values through a per-warp scratch between
// two barriers of the warp. The tensor-core product and ldmatrix read their operands with the
// fragment layouts mma.cuh documents, so a kernel that indexes its fragments wrongly fails here.
//
// Include this first, then the kernel files; build with -DAUTORESEARCH_EMULATE, -I on this folder
// (its cuda_bf16.h) and C++20. Slow by design: meant for small shapes.
#pragma once
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <math.h>
#include <memory>
#include <deque>
#include <thread>
#include <vector>

using std::max;
using std::min;

struct uint4 {
    unsigned x, y, z, w;
};
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

namespace emu {

struct Dim3 {
    unsigned x = 1, y = 1, z = 1;
};

inline thread_local Dim3 thread_idx, block_idx;
inline Dim3 block_dim, grid_dim;

// One warp's exchange area for the shuffles and the tensor-core product.
struct Scratch {
    uint32_t word[32];
    uint32_t a[32][4];
    uint32_t b[32][2];
    const uint16_t* row[32];
};

struct Block {
    std::barrier<> all;
    std::vector<std::unique_ptr<std::barrier<>>> warps;
    std::vector<Scratch> scratch;
    explicit Block(unsigned threads) : all(threads), scratch((threads + 31) / 32) {
        for (unsigned w = 0; w < (threads + 31) / 32; ++w)
            warps.push_back(std::make_unique<std::barrier<>>(std::min(32u, threads - 32 * w)));
    }
};

inline Block* block;

inline void finish_copies();

inline unsigned warp() { return thread_idx.x / 32; }
inline unsigned lane() { return thread_idx.x % 32; }
inline void warp_sync() { block->warps[warp()]->arrive_and_wait(); }

// Runs `kernel` (a callable taking no arguments) on a grid of blocks, one block at a time: one
// host thread per thread of a block, each running its part of every block in turn, with a barrier
// between blocks (so a block's statics, its shared memory, are its own while it runs).
template <class Kernel>
void launch(Dim3 grid, Dim3 threads, Kernel kernel) {
    grid_dim = grid;
    block_dim = threads;
    Block b(threads.x);
    block = &b;
    std::vector<std::thread> pool;
    for (unsigned tx = 0; tx < threads.x; ++tx)
        pool.emplace_back([=, &b] {
            thread_idx = {tx, 0, 0};
            for (unsigned by = 0; by < grid.y; ++by)
                for (unsigned bx = 0; bx < grid.x; ++bx) {
                    block_idx = {bx, by, 0};
                    kernel();
                    finish_copies();
                    b.all.arrive_and_wait();
                }
        });
    for (auto& t : pool) t.join();
    block = nullptr;
}

// The bf16 at half `hi` of a pair, as a float.
inline float half_of(uint32_t pair, int hi) {
    const uint32_t u = (hi ? pair >> 16 : pair & 0xffffu) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

}  // namespace emu

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
#define threadIdx (emu::thread_idx)
#define blockIdx (emu::block_idx)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)

inline float __expf(float x) { return std::exp(x); }
inline void __syncthreads() { emu::block->all.arrive_and_wait(); }

template <class T>
T __shfl_xor_sync(unsigned, T v, int offset) {
    static_assert(sizeof(T) == 4, "the emulator shuffles 4-byte values");
    emu::Scratch& s = emu::block->scratch[emu::warp()];
    std::memcpy(&s.word[emu::lane()], &v, 4);
    emu::warp_sync();
    T out;
    std::memcpy(&out, &s.word[emu::lane() ^ (unsigned)offset], 4);
    emu::warp_sync();
    return out;
}

// c += a · b with PTX's m16n8k16 fragment layouts (see mma.cuh): each lane publishes its
// fragments, then computes its own four outputs from the whole warp's.
inline void emulated_mma_bf16_16816(float c[4], const uint32_t a[4], const uint32_t b[2]) {
    emu::Scratch& s = emu::block->scratch[emu::warp()];
    const unsigned lane = emu::lane();
    std::memcpy(s.a[lane], a, sizeof s.a[lane]);
    std::memcpy(s.b[lane], b, sizeof s.b[lane]);
    emu::warp_sync();
    auto a_at = [&](int row, int col) {
        return emu::half_of(s.a[row % 8 * 4 + col % 8 / 2][(row >= 8) + 2 * (col >= 8)], col & 1);
    };
    auto b_at = [&](int k, int n) { return emu::half_of(s.b[n * 4 + k % 8 / 2][k >= 8], k & 1); };
    const int group = (int)lane / 4, member = (int)lane % 4;
    for (int e = 0; e < 4; ++e) {
        const int row = group + 8 * (e >> 1), col = 2 * member + (e & 1);
        float sum = 0.f;
        for (int k = 0; k < 16; ++k) sum += a_at(row, k) * b_at(k, col);
        c[e] += sum;
    }
    emu::warp_sync();
}

// ldmatrix.x4.trans (see mma.cuh): each lane publishes its row address, then reads its four
// registers from the whole warp's rows. A row address off a 16-byte boundary is the device's
// misaligned-address fault: the emulator stops there too.
inline void emulated_ldmatrix_x4_trans(uint32_t r[4], const uint16_t* row) {
    emu::Scratch& s = emu::block->scratch[emu::warp()];
    const unsigned lane = emu::lane();
    if (reinterpret_cast<uintptr_t>(row) % 16 != 0) {
        std::fprintf(stderr, "ldmatrix: lane %u's row address is not 16-byte aligned\n", lane);
        std::abort();
    }
    s.row[lane] = row;
    emu::warp_sync();
    const unsigned group = lane / 4, member = lane % 4;
    for (int i = 0; i < 4; ++i)
        r[i] = (uint32_t)s.row[8 * i + 2 * member][group] |
               ((uint32_t)s.row[8 * i + 2 * member + 1][group] << 16);
    emu::warp_sync();
}

// atomicAdd on f32 (the embedding's scatter-add, the λ-mix's grid reduction).
inline float atomicAdd(float* at, float value) {
    return std::atomic_ref<float>(*at).fetch_add(value);
}

// cp.async: a copy is held (its source read now: the kernels' sources do not change during a
// launch) and lands in shared memory only when a wait finishes its group, as late as the device
// may land it, so a kernel that reads a tile before waiting for it reads stale data here.
namespace emu {
struct Copy {
    void* to;
    uint8_t bytes[16];
};
inline thread_local std::vector<Copy> open_group;
inline thread_local std::deque<std::vector<Copy>> in_flight;
}  // namespace emu

inline void emulated_cp_async_16(void* to, const void* from) {
    if (reinterpret_cast<uintptr_t>(to) % 16 != 0 || reinterpret_cast<uintptr_t>(from) % 16 != 0) {
        std::fprintf(stderr, "cp.async: an address is not 16-byte aligned\n");
        std::abort();
    }
    emu::Copy copy{to, {}};
    std::memcpy(copy.bytes, from, 16);
    emu::open_group.push_back(copy);
    // Until the wait, the destination holds neither old nor new data (NaN bytes): a kernel that
    // overwrites a buffer other warps still read shows it.
    std::memset(to, 0xff, 16);
}

inline void emulated_cp_async_commit() {
    emu::in_flight.push_back(std::move(emu::open_group));
    emu::open_group.clear();
}

inline void emulated_cp_async_wait(int pending) {
    while ((int)emu::in_flight.size() > pending) {
        for (const emu::Copy& c : emu::in_flight.front()) std::memcpy(c.to, c.bytes, 16);
        emu::in_flight.pop_front();
    }
}

// At the end of a thread's part of a block: copies it started and never waited for are a kernel
// bug (empty groups are fine).
inline void emu::finish_copies() {
    bool pending = !open_group.empty();
    for (const auto& group : in_flight) pending |= !group.empty();
    if (pending) {
        std::fprintf(stderr, "cp.async: a thread ended its block with copies it never waited for\n");
        std::abort();
    }
    in_flight.clear();
}
