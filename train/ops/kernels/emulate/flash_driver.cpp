// Runs flash.cu's kernels in the emulator (emulate.h) on inputs from files, for the CPU test
// `tests/flash_emulated.rs`, with the launch geometry `src/cuda/flash.rs` uses:
//   flash_driver DIR B T H HD WINDOW SCALE
// reads DIR/{q,k,v,do}.f32 (`[B, T, H, HD]`, little-endian f32, values bf16 holds exactly) and
// writes DIR/{o,dq,dk,dv}.f32 and DIR/lse.f32 (`[B, H, T]`).
#include "emulate.h"
#include "flash.cu"

#include <cstdio>
#include <cstdlib>
#include <string>

static std::vector<float> read(const std::string& path, size_t n) {
    std::vector<float> x(n);
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f || std::fread(x.data(), 4, n, f) != n) {
        std::fprintf(stderr, "flash_driver: cannot read %zu floats from %s\n", n, path.c_str());
        std::exit(2);
    }
    std::fclose(f);
    return x;
}

static void write(const std::string& path, const std::vector<float>& x) {
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f || std::fwrite(x.data(), 4, x.size(), f) != x.size()) {
        std::fprintf(stderr, "flash_driver: cannot write %s\n", path.c_str());
        std::exit(2);
    }
    std::fclose(f);
}

static std::vector<bf16> to_bf16(const std::vector<float>& x) {
    std::vector<bf16> out(x.size());
    for (size_t i = 0; i < x.size(); ++i) out[i] = __float2bfloat16(x[i]);
    return out;
}

static std::vector<float> to_f32(const std::vector<bf16>& x) {
    std::vector<float> out(x.size());
    for (size_t i = 0; i < x.size(); ++i) out[i] = __bfloat162float(x[i]);
    return out;
}

int main(int argc, char** argv) {
    if (argc != 8) {
        std::fprintf(stderr, "usage: flash_driver DIR B T H HD WINDOW SCALE\n");
        return 2;
    }
    const std::string dir = argv[1];
    const int b = std::atoi(argv[2]), t = std::atoi(argv[3]), h = std::atoi(argv[4]),
              hd = std::atoi(argv[5]), window = std::atoi(argv[6]);
    const float scale = std::strtof(argv[7], nullptr);
    if (hd != 64 && hd != 128) {
        std::fprintf(stderr, "flash_driver: HD must be 64 or 128, got %d\n", hd);
        return 2;
    }
    const size_t n = (size_t)b * t * h * hd, rows = (size_t)b * h * t;
    const auto q = to_bf16(read(dir + "/q.f32", n)), k = to_bf16(read(dir + "/k.f32", n)),
               v = to_bf16(read(dir + "/v.f32", n)), d_o = to_bf16(read(dir + "/do.f32", n));
    std::vector<bf16> o(n), dq(n), dk(n), dv(n);
    std::vector<float> lse(rows), delta(rows);

    const unsigned tile_count = (t + flash::QUERIES - 1) / flash::QUERIES;
    const emu::Dim3 tiles{tile_count, (unsigned)(b * h), 1};
    const emu::Dim3 block{flash::THREADS, 1, 1};
    emu::launch(tiles, block, [&] {
        (hd == 64 ? flash_fwd_hd64_bf16 : flash_fwd_hd128_bf16)(t, h, window, scale, q.data(),
                                                                k.data(), v.data(), o.data(),
                                                                lse.data());
    });
    const int warps_per_block = 256 / 32;
    const emu::Dim3 per_row{(unsigned)((rows + warps_per_block - 1) / warps_per_block), 1, 1};
    emu::launch(per_row, {256, 1, 1}, [&] {
        flash_delta_bf16((int)rows, t, h, hd, o.data(), d_o.data(), delta.data());
    });
    emu::launch(tiles, block, [&] {
        (hd == 64 ? flash_dkdv_hd64_bf16 : flash_dkdv_hd128_bf16)(
            t, h, window, scale, q.data(), k.data(), v.data(), d_o.data(), lse.data(),
            delta.data(), dk.data(), dv.data());
    });
    emu::launch(tiles, block, [&] {
        (hd == 64 ? flash_dq_hd64_bf16 : flash_dq_hd128_bf16)(t, h, window, scale, q.data(),
                                                              k.data(), v.data(), d_o.data(),
                                                              lse.data(), delta.data(), dq.data());
    });
    write(dir + "/o.f32", to_f32(o));
    write(dir + "/lse.f32", lse);
    write(dir + "/dq.f32", to_f32(dq));
    write(dir + "/dk.f32", to_f32(dk));
    write(dir + "/dv.f32", to_f32(dv));
    return 0;
}
