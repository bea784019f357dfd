#!/usr/bin/env bash
# Builds llama.cpp's own llama-bench against the very llama.cpp sources the appliance links (the
# copy vendored in the llama-cpp-sys-2 crate), with the crate's flags on a default x86-64 build
# (release, GGML_NATIVE off), so `autoresearch bench agent --llama-bench` compares like with like.
# The crate leaves out llama-bench's two source files; they come from the llama.cpp vendored in
# llama-cpp-python's source distribution on PyPI (MIT, same tool layout), fetched at build time.
# Output: the path of the llama-bench binary. Needs cmake, a C++ compiler and python3 with pip.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
work="${CARGO_TARGET_DIR:-$root/target}/llama-bench"
mkdir -p "$work"

host=$(rustc -vV | sed -n 's/^host: //p')
manifest=$(cargo metadata --offline --format-version 1 --filter-platform "$host" | python3 -c '
import json, sys
print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "llama-cpp-sys-2"))')
crate_src="$(dirname "$manifest")/llama.cpp"

if [ ! -f "$work/llama-bench-tool/llama-bench.cpp" ]; then
  python3 -m pip install --quiet --target "$work/pytools" scikit-build-core
  PYTHONPATH="$work/pytools" python3 -m pip download --quiet --no-deps --no-binary :all: \
    --no-build-isolation -d "$work" llama-cpp-python==0.3.36
  tar xzf "$work"/llama_cpp_python-0.3.36.tar.gz -C "$work" \
    llama_cpp_python-0.3.36/vendor/llama.cpp/tools/llama-bench
  mkdir -p "$work/llama-bench-tool"
  cp "$work"/llama_cpp_python-0.3.36/vendor/llama.cpp/tools/llama-bench/* "$work/llama-bench-tool/"
fi

rm -rf "$work/src"
cp -r "$crate_src" "$work/src"
chmod -R u+w "$work/src"
cp "$work"/llama-bench-tool/* "$work/src/tools/llama-bench/"
# Only llama-bench: the crate does not ship the other tools' sources.
printf 'find_package(Threads REQUIRED)\nllama_add_compile_flags()\nadd_subdirectory(llama-bench)\n' \
  >"$work/src/tools/CMakeLists.txt"
cmake -S "$work/src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_CURL=OFF \
  -DLLAMA_OPENSSL=OFF >"$work/cmake.log"
cmake --build "$work/build" --target llama-bench -j "$(nproc)" >>"$work/cmake.log"
echo "$work/build/bin/llama-bench"
