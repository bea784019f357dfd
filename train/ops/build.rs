//! With the `cuda` feature: compiles `kernels/*.cu` to PTX with nvcc (the pinned CUDA 13.0
//! toolchain of `scripts/cuda-toolchain.sh`) and writes `kernels.rs`, one `&str` constant per
//! file, which `src/cuda/launch.rs` embeds. The PTX targets compute_80 (bf16 arithmetic needs
//! it): the driver compiles it for the card it runs on, sm_80 (A100, RTX 30) through sm_90
//! (H100/H200), whatever `CUDA_COMPUTE_CAP` candle's own kernels are built for.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    #[cfg(feature = "cuda")]
    {
        println!("cargo::rerun-if-changed=kernels");
        let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
        let ptx = cudaforge::KernelBuilder::new()
            .source_glob("kernels/*.cu")
            .watch(["kernels/common.cuh", "kernels/mma.cuh"])
            .compute_cap(80)
            .arg("-std=c++17")
            .arg("-O3")
            .build_ptx()
            .unwrap_or_else(|e| panic!("compiling kernels/*.cu to PTX: {e}"));
        ptx.write(out.join("kernels.rs"))
            .unwrap_or_else(|e| panic!("writing the PTX bindings: {e}"));
    }
}
