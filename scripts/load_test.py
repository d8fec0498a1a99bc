#!/usr/bin/env python3
"""Aggregate throughput of a running `ahead serve` under concurrent load, per method, side by side.

usage: scripts/load_test.py [URL] [--requests N] [--concurrency C] [--max-tokens T]
       (URL defaults to http://127.0.0.1:8000/v1/completions)

Sends N greedy completions (ignore_eos, so every request generates T tokens) from C threads for
each method in turn, twice (interleaved passes: the machine is shared and noisy), and prints the
generated tokens per second of wall time.
"""
import argparse
import json
import threading
import time
import urllib.request

p = argparse.ArgumentParser()
p.add_argument("url", nargs="?", default="http://127.0.0.1:8000/v1/completions")
p.add_argument("--requests", type=int, default=200)
p.add_argument("--concurrency", type=int, default=16)
p.add_argument("--max-tokens", type=int, default=64)
p.add_argument("--methods", default="vanilla,auto,medusa")
args = p.parse_args()


def run(method):
    done, lock, idx = [], threading.Lock(), iter(range(args.requests))

    def worker():
        while True:
            with lock:
                i = next(idx, None)
            if i is None:
                return
            body = json.dumps({"prompt": "Once upon a time", "max_tokens": args.max_tokens, "temperature": 0,
                               "seed": i, "ahead": {"method": method, "ignore_eos": True}}).encode()
            req = urllib.request.Request(args.url, body, {"content-type": "application/json"})
            usage = json.load(urllib.request.urlopen(req))["usage"]
            with lock:
                done.append(usage["completion_tokens"])

    start = time.time()
    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.time() - start)


for _ in range(2):
    for m in args.methods.split(","):
        print(f"{m:14} {run(m):10.0f} tok/s")
