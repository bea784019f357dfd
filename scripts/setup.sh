#!/usr/bin/env bash
# Makes a fresh Debian/Ubuntu machine ready: the build needs of llama.cpp (cmake, a C++ compiler,
# libclang for bindgen), the default small agent model, Debian's Chromium, in which the
# dashboard's tests open its page headless, and xz, with which the device check's test packs its
# stand-in archive. Safe to run again: it does only
# what is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v c++ >/dev/null 2>&1 || missing+=(g++)
ldconfig -p | grep -q 'libclang[-.0-9]*\.so' || missing+=(libclang1-14)
ls /usr/lib/llvm-*/lib/clang/*/include/stdbool.h >/dev/null 2>&1 || missing+=(libclang-common-14-dev)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v xz >/dev/null 2>&1 || missing+=(xz-utils)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

"$root/scripts/fetch-default-model.sh"
