// Runs any kernel of `kernels/*.cu` in the emulator (emulate.h) on buffers kept in files, for the
// CPU tests of the kernels (`tests/kernels_emulated.rs`):
//   launcher DIR KERNEL GRID_X GRID_Y BLOCK_X ARG...
// or lists every kernel's C++ signature, one a line, as the compiler sees it (for the test that
// the Rust side's table of kernels, `src/kernels.rs`, declares the same parameters):
//   launcher --signatures
// One ARG per kernel parameter, in order: a number for an int, size_t or float parameter, and
// `@NAME` for a pointer, the buffer in DIR/NAME (4 bytes an element: f32 for float and bf16
// buffers, rounded to bf16 on the way in; u32 for uint32_t). Buffers behind non-const pointers are
// written back to their files after the launch (bf16 widened to f32). One name passed twice is one
// buffer.
#include "emulate.h"

// Each file names its entry-point macro ENTRIES: one translation unit takes them in turn.
#include "attention.cu"
#undef ENTRIES
#include "cross_entropy.cu"
#undef ENTRIES
#include "elementwise.cu"
#undef ENTRIES
#include "embedding.cu"
#include "flash.cu"
#include "gate.cu"
#undef ENTRIES
#include "norm.cu"
#undef ENTRIES
#include "optim.cu"
#include "rope.cu"

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

[[noreturn]] static void die(const std::string& why) {
    std::fprintf(stderr, "launcher: %s\n", why.c_str());
    std::exit(2);
}

// One buffer, in the element type its pointer parameter names.
struct Buffer {
    std::string path;
    std::vector<float> f32;
    std::vector<__nv_bfloat16> bf16;
    std::vector<uint32_t> u32;
    bool written = false;
    int kind = -1;  // 0 f32, 1 bf16, 2 u32

    std::vector<uint32_t> read_words() const {
        FILE* f = std::fopen(path.c_str(), "rb");
        if (!f) die("cannot open " + path);
        std::vector<uint32_t> words;
        uint32_t w;
        while (std::fread(&w, 4, 1, f) == 1) words.push_back(w);
        std::fclose(f);
        return words;
    }

    void write_back() const {
        std::vector<uint32_t> words;
        if (kind == 2) {
            words = u32;
        } else {
            std::vector<float> values = f32;
            if (kind == 1)
                for (auto h : bf16) values.push_back(__bfloat162float(h));
            words.resize(values.size());
            std::memcpy(words.data(), values.data(), 4 * values.size());
        }
        FILE* f = std::fopen(path.c_str(), "wb");
        if (!f || std::fwrite(words.data(), 4, words.size(), f) != words.size())
            die("cannot write " + path);
        std::fclose(f);
    }
};

struct Args {
    std::string dir;
    std::vector<std::string> raw;
    std::map<std::string, Buffer> buffers;

    template <class E>
    E* buffer(const std::string& arg, bool writes) {
        if (arg.empty() || arg[0] != '@') die("a pointer parameter needs @NAME, got " + arg);
        Buffer& b = buffers[arg.substr(1)];
        constexpr int kind = std::is_same_v<E, float> ? 0 : std::is_same_v<E, uint32_t> ? 2 : 1;
        if (b.kind == -1) {
            b.path = dir + "/" + arg.substr(1);
            b.kind = kind;
            const auto words = b.read_words();
            if (kind == 2) {
                b.u32 = words;
            } else {
                std::vector<float> values(words.size());
                std::memcpy(values.data(), words.data(), 4 * words.size());
                if (kind == 0) b.f32 = values;
                else
                    for (float v : values) b.bf16.push_back(__float2bfloat16(v));
            }
        } else if (b.kind != kind) {
            die(arg + " is passed as two element types");
        }
        b.written |= writes;
        if constexpr (std::is_same_v<E, float>) return b.f32.data();
        else if constexpr (std::is_same_v<E, uint32_t>) return b.u32.data();
        else return b.bf16.data();
    }

    template <class T>
    T get(size_t i) {
        const std::string& arg = raw.at(i);
        if constexpr (std::is_pointer_v<T>) {
            using Pointee = std::remove_pointer_t<T>;
            return buffer<std::remove_cv_t<Pointee>>(arg, !std::is_const_v<Pointee>);
        } else if constexpr (std::is_same_v<T, float>) {
            return std::stof(arg);
        } else if constexpr (std::is_same_v<T, int>) {
            return std::stoi(arg);
        } else {
            static_assert(std::is_same_v<T, size_t>, "int, size_t, float or a pointer");
            return std::stoull(arg);
        }
    }
};

template <class... A, size_t... I>
static void call(void (*kernel)(A...), Args& a, emu::Dim3 grid, emu::Dim3 block,
                 std::index_sequence<I...>) {
    if (a.raw.size() != sizeof...(A))
        die("the kernel takes " + std::to_string(sizeof...(A)) + " arguments, got " +
            std::to_string(a.raw.size()));
    std::tuple<A...> args{a.get<A>(I)...};  // braces: evaluated left to right
    emu::launch(grid, block, [&] { std::apply(kernel, args); });
}

// A parameter's C++ type, spelled as `Param::c_type` in src/kernels.rs spells it.
template <class P>
static std::string c_type() {
    if constexpr (std::is_pointer_v<P>) {
        using E = std::remove_pointer_t<P>;
        return (std::is_const_v<E> ? "const " : "") + c_type<std::remove_cv_t<E>>() + "*";
    } else if constexpr (std::is_same_v<P, int>) {
        return "int";
    } else if constexpr (std::is_same_v<P, size_t>) {
        return "size_t";
    } else if constexpr (std::is_same_v<P, float>) {
        return "float";
    } else if constexpr (std::is_same_v<P, uint32_t>) {
        return "uint32_t";
    } else {
        static_assert(std::is_same_v<P, __nv_bfloat16>, "a parameter type with no name here");
        return "bf16";
    }
}

// A kernel as the launcher knows it: how to run it, and its parameters' types.
struct Entry {
    std::function<void(Args&, emu::Dim3, emu::Dim3)> run;
    std::vector<std::string> params;
};

template <class... A>
static Entry entry(void (*kernel)(A...)) {
    return {[kernel](Args& a, emu::Dim3 grid, emu::Dim3 block) {
                call(kernel, a, grid, block, std::index_sequence_for<A...>{});
            },
            {c_type<A>()...}};
}

#define BOTH(name) {#name "_f32", entry(name##_f32)}, {#name "_bf16", entry(name##_bf16)},
#define ONE(name) {#name, entry(name)},

int main(int argc, char** argv) {
    const std::map<std::string, Entry> kernels = {
        BOTH(window_softmax_fwd) BOTH(window_softmax_bwd) BOTH(softcap_ce_fwd)
        BOTH(softcap_ce_bwd) BOTH(relu_sq_fwd) BOTH(relu_sq_bwd) ONE(embedding_fwd_f32)
        ONE(embedding_bwd_f32) BOTH(gate_mix_fwd) BOTH(gate_mix_bwd) ONE(adamw_f32)
        BOTH(rms_norm_fwd) BOTH(rms_norm_bwd) BOTH(lambda_mix_fwd) BOTH(lambda_mix_bwd)
        BOTH(rope_norm_fwd) BOTH(rope_norm_bwd) ONE(flash_fwd_hd64_bf16)
        ONE(flash_fwd_hd128_bf16) ONE(flash_dkdv_hd64_bf16) ONE(flash_dkdv_hd128_bf16)
        ONE(flash_dq_hd64_bf16) ONE(flash_dq_hd128_bf16) ONE(flash_delta_bf16)};
    if (argc == 2 && std::string(argv[1]) == "--signatures") {
        for (const auto& [name, e] : kernels) {
            std::string line = name + "(";
            for (size_t i = 0; i < e.params.size(); ++i) line += (i ? ", " : "") + e.params[i];
            std::printf("%s)\n", line.c_str());
        }
        return 0;
    }
    if (argc < 6) die("usage: launcher DIR KERNEL GRID_X GRID_Y BLOCK_X ARG... | launcher --signatures");
    Args a;
    a.dir = argv[1];
    const auto found = kernels.find(argv[2]);
    if (found == kernels.end()) die(std::string("no kernel named ") + argv[2]);
    const emu::Dim3 grid{(unsigned)std::stoul(argv[3]), (unsigned)std::stoul(argv[4]), 1};
    const emu::Dim3 block{(unsigned)std::stoul(argv[5]), 1, 1};
    a.raw.assign(argv + 6, argv + argc);
    // A kernel whose threads do not all reach a barrier would wait forever here (on a device it
    // is undefined): end the run with a message instead of hanging the test.
    std::signal(SIGALRM, [](int) {
        const char why[] =
            "launcher: the kernel did not finish in 300 s (threads waiting at a barrier or warp "
            "operation that others never reach?)\n";
        (void)!write(2, why, sizeof why - 1);
        _exit(3);
    });
    alarm(300);
    found->second.run(a, grid, block);
    for (const auto& [name, b] : a.buffers)
        if (b.written) b.write_back();
    return 0;
}
