#!/usr/bin/env python3
"""Experiments per hour of recorded runs: from the first experiment's start to the last one's end
(the baseline and the model load left out), with the agent's and the training's seconds per
experiment and how many training runs they made. Usage: scripts/rate.py runs/TAG [runs/TAG ...]"""
import datetime
import json
import sys

for folder in sys.argv[1:]:
    records = [json.loads(line) for line in open(f"{folder}/experiments.jsonl")]
    experiments = [r for r in records if r.get("kind") == "experiment"]
    if not experiments:
        print(f"{folder}: no experiments")
        continue
    at = datetime.datetime.fromisoformat
    start = at(experiments[0]["started"])
    end = max(at(r["finished"]) for r in experiments)
    wall = (end - start).total_seconds()
    n = len(experiments)
    agent = sum(r["timing"]["agent_seconds"] for r in experiments) / n
    training = sum(r["timing"]["training_seconds"] for r in experiments) / n
    runs = sum(len(r["runs"]) for r in experiments)
    kept = sum(r["outcome"] == "keep" for r in experiments)
    print(
        f"{folder}: {n} experiments in {wall:.0f} s = {n * 3600 / wall:.1f} per hour; "
        f"agent {agent:.1f} s and training {training:.1f} s per experiment; {runs} runs; {kept} kept"
    )
