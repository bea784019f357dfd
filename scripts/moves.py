#!/usr/bin/env python3
"""The agent's seconds by move in recorded runs, with what each move brought: how many of each
move, their mean agent seconds, how many were kept, and how many brought a code edit (the reply
format that made the candidate). Usage: scripts/moves.py runs/TAG [runs/TAG ...]"""
import collections
import json
import sys

for folder in sys.argv[1:]:
    records = [json.loads(line) for line in open(f"{folder}/experiments.jsonl")]
    experiments = [r for r in records if r.get("kind") == "experiment"]
    if not experiments:
        print(f"{folder}: no experiments")
        continue
    by_move = collections.defaultdict(list)
    for r in experiments:
        by_move[(r.get("choice") or {}).get("move", "(no controller)")].append(r)
    agent = sum(r["timing"]["agent_seconds"] for r in experiments) / len(experiments)
    print(f"{folder}: {len(experiments)} experiments, agent {agent:.1f} s per experiment")
    for move, rs in sorted(by_move.items(), key=lambda kv: -len(kv[1])):
        seconds = sum(r["timing"]["agent_seconds"] for r in rs) / len(rs)
        kept = sum(r["outcome"] == "keep" for r in rs)
        code = sum(r.get("action") == "replace" for r in rs)
        print(f"  {move:16} {len(rs):3} moves  agent {seconds:5.1f} s  kept {kept}  code {code}")
