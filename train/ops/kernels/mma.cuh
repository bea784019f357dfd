// Tensor-core building blocks of the flash-attention kernels: bf16 pairs packed into 32-bit
// registers, the warp-wide `mma.sync.m16n8k16` product, `ldmatrix` and `cp.async` (sm_80 and
// later). The fragment layouts
// are PTX's (lane = 4·group + member): an A fragment (16x16, row-major) holds rows group and
// group + 8, columns 2·member + {0, 1} and 2·member + 8 + {0, 1}; a B fragment (16x8, k by n)
// holds column group, rows 2·member + {0, 1} and 2·member + 8 + {0, 1}; a C fragment (16x8, f32)
// holds rows group and group + 8, columns 2·member + {0, 1}. The lower-index element of a pair
// sits in the low 16 bits.
//
// Built with AUTORESEARCH_EMULATE (the CPU test of the kernels, `kernels/emulate/`), the product
// and the matrix loads are computed on the host with the same layouts, so they are what is tested,
// and an asynchronous copy lands only at the wait that finishes its group, so a missing wait shows.
#pragma once
#include <cuda_bf16.h>
#include <stdint.h>

// Two floats as a bf16 pair (round to nearest even).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    const __nv_bfloat162 p = __floats2bfloat162_rn(lo, hi);
    return (uint32_t)__bfloat16_as_ushort(p.x) | ((uint32_t)__bfloat16_as_ushort(p.y) << 16);
}

// The pair at `p` (4-byte aligned).
__device__ __forceinline__ uint32_t load_pair(const uint16_t* p) {
    return *reinterpret_cast<const uint32_t*>(p);
}

#ifdef AUTORESEARCH_EMULATE
void emulated_mma_bf16_16816(float c[4], const uint32_t a[4], const uint32_t b[2]);
void emulated_ldmatrix_x4_trans(uint32_t r[4], const uint16_t* row);
void emulated_cp_async_16(void* to, const void* from);
void emulated_cp_async_commit();
void emulated_cp_async_wait(int pending);
#endif

// Asynchronous copies global -> shared (sm_80): 16 bytes each, both ends 16-byte aligned. A copy
// lands only once a `cp_async_wait` lets its group finish; a `__syncthreads` after that wait makes
// it visible to the block.
__device__ __forceinline__ void cp_async_16(void* to, const void* from) {
#ifdef AUTORESEARCH_EMULATE
    emulated_cp_async_16(to, from);
#else
    const uint32_t at = (uint32_t)__cvta_generic_to_shared(to);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(at), "l"(from) : "memory");
#endif
}

// Closes this thread's open group of copies.
__device__ __forceinline__ void cp_async_commit() {
#ifdef AUTORESEARCH_EMULATE
    emulated_cp_async_commit();
#else
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

// Waits until at most PENDING of this thread's committed groups (the latest) are still in flight.
template <int PENDING>
__device__ __forceinline__ void cp_async_wait() {
#ifdef AUTORESEARCH_EMULATE
    emulated_cp_async_wait(PENDING);
#else
    asm volatile("cp.async.wait_group %0;\n" ::"n"(PENDING) : "memory");
#endif
}

// Four 8x8 b16 matrices from shared memory, transposed, for one warp: lanes 8i..8i+7 give the
// addresses of matrix i's rows (8 elements, 16-byte aligned), and r[i] receives matrix i's
// elements (2·member, group) and (2·member + 1, group): a B fragment's register, where the matrix
// holds 8 rows k and 8 columns n of a row-major [k][n] tile.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const uint16_t* row) {
#ifdef AUTORESEARCH_EMULATE
    emulated_ldmatrix_x4_trans(r, row);
#else
    const uint32_t at = (uint32_t)__cvta_generic_to_shared(row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(at)
                 : "memory");
#endif
}

// c += a · b for one warp: a 16x16 (bf16), b 16x8 (bf16), c 16x8 (f32).
__device__ __forceinline__ void mma_bf16_16816(float c[4], const uint32_t a[4],
                                               const uint32_t b[2]) {
#ifdef AUTORESEARCH_EMULATE
    emulated_mma_bf16_16816(c, a, b);
#else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}
