#!/usr/bin/env python3
"""The dashboard's memory while pages stay open: `autoresearch serve` on a scratch run folder,
PAGES event streams held open (what an open page holds), the live state rewritten ten times a
second (a fast GPU run's step lines) and the journal changed every half second, for SECONDS.
Prints the server's resident memory every 10 s and the events each stream got.

With GROW=1 a record is appended each time (the journal grows 60 times faster than in a night);
otherwise the recorded night's 32 records are written again, so the page gets a new overview
each time while what it shows stays the same size.

    [GROW=1] scripts/dashboard-soak.py BINARY [SECONDS] [PAGES]
"""
import http.client
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time

sys.stdout.reconfigure(line_buffering=True)

binary = sys.argv[1]
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 120
pages = int(sys.argv[3]) if len(sys.argv) > 3 else 4
night = pathlib.Path(__file__).resolve().parent.parent / "docs/runs/cpu60-full/experiments.jsonl"
lines = night.read_text().splitlines()

scratch = tempfile.TemporaryDirectory()
run = pathlib.Path(scratch.name) / "runs" / "soak"
run.mkdir(parents=True)
journal = run / "experiments.jsonl"
grow = os.environ.get("GROW") == "1"
journal.write_text(lines[0] + "\n" if grow else "\n".join(lines) + "\n")
live = {
    "run": {"tag": "soak", "model": "m.gguf", "device": "host RAM", "profile": "cpu",
            "budget_seconds": 60.0, "pid": os.getpid(), "started": "2026-12-02T00:00:00Z"},
    "phase": "training", "n": 1, "run_index": 1, "since": "2026-12-02T00:00:00Z", "step": 0,
    "progress": 0.0, "tokens_per_second": 4000.0, "curve": [], "updated": "",
}

server = subprocess.Popen([binary, "serve", "--runs-dir", str(run.parent), "--tag", "soak",
                           "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
url = server.stdout.readline().split("dashboard: ")[1].strip()
host, port = url.split("//")[1].rstrip("/").split(":")
received = [0] * pages


def follow(i):
    conn = http.client.HTTPConnection(host, int(port))
    conn.request("GET", "/run/soak/api/events")
    stream = conn.getresponse()
    for line in stream:
        if line.startswith(b"event:"):
            received[i] += 1


for i in range(pages):
    threading.Thread(target=follow, args=(i,), daemon=True).start()


def rss_mib():
    for line in open(f"/proc/{server.pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024


start, n, step, next_sample = time.time(), 1, 0, 0.0
print(f"serve pid {server.pid}, {pages} open streams, {seconds:.0f} s")
while time.time() - start < seconds:
    elapsed = time.time() - start
    if elapsed >= next_sample:
        print(f"{elapsed:6.0f} s  rss {rss_mib():6.1f} MiB  records {n:5d}  events per stream {received}")
        next_sample += 10
    step += 1
    live["step"], live["progress"] = step, (step % 600) / 600
    live["curve"] = [[i / 600, 5.0 - i / 600] for i in range(step % 600)]
    tmp = run / "live.json.tmp"
    tmp.write_text(json.dumps(live))
    tmp.rename(run / "live.json")
    if step % 5 == 0 and grow:
        record = json.loads(lines[1 + n % (len(lines) - 1)])
        record["n"] = n
        with journal.open("a") as f:
            f.write(json.dumps(record) + "\n")
        n += 1
    elif step % 5 == 0:
        journal.write_text("\n".join(lines) + "\n")
    time.sleep(0.1)
print(f"{time.time() - start:6.0f} s  rss {rss_mib():6.1f} MiB  records {n:5d}  events per stream {received}")
server.kill()
