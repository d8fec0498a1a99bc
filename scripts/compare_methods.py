#!/usr/bin/env python3
"""Side-by-side comparison of decoding methods on the default model, interleaved per prompt so
that machine noise hits every method alike. Prints, per method, mean accepted length and
tokens/s (total generated tokens / total decoding time) and the ratio to vanilla.

usage: scripts/compare_methods.py [--ahead target/release/ahead] [--corpus FILE] [--prompts N]
"""
import argparse
import json
import subprocess
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--ahead", default="target/release/ahead")
parser.add_argument("--corpus", default="tests/fixtures/corpus/tinystories_valid_head.txt")
parser.add_argument("--prompts", type=int, default=12)
parser.add_argument("--max-tokens", type=int, default=200)
parser.add_argument("--draft", default="tests/fixtures/stories260K/stories260K.bin")
args = parser.parse_args()

text = open(args.corpus, encoding="utf-8").read()
# Held-out story openings: the first sentence of stories from the second half of the file.
# The last 10% of the corpus: text `ahead train draft` holds out (the vendored draft never saw it).
stories = [s.strip() for s in text[len(text) * 9 // 10:].split("\n\n") if len(s.strip()) > 80]
# At most 300 characters: code tokenizes into many byte tokens and the context is 512.
prompts = [(s.split(". ")[0] + ".")[:300] for s in stories[: args.prompts]]

methods = {
    "vanilla": ["--method", "vanilla"],
    "prompt-lookup": ["--method", "prompt-lookup"],
    "draft (self, k=4)": ["--method", "draft", "--draft", args.draft, "--num-draft", "4"],
    "draft (vendored, k=2)": ["--method", "draft", "--num-draft", "2"],
    "draft (vendored, k=4)": ["--method", "draft", "--num-draft", "4"],
    "draft (vendored, controller)": ["--method", "draft"],
    "medusa (12-node tree)": ["--method", "medusa", "--num-draft", "12", "--medusa-choices",
                              "[[0],[1],[2],[0,0],[0,1],[0,2],[1,0],[2,0],[0,0,0],[0,0,1],[0,1,0],[1,0,0]]"],
    "medusa (6-node tree)": ["--method", "medusa", "--num-draft", "6", "--medusa-choices",
                             "[[0],[1],[0,0],[0,1],[1,0],[0,0,0]]"],
    "medusa (1 node, k=1)": ["--method", "medusa", "--num-draft", "1"],
    "medusa (controller)": ["--method", "medusa"],
    "lookahead W15 N5 G15": ["--method", "lookahead", "--num-draft", "16", "--lookahead-window", "15",
                             "--lookahead-ngram", "5", "--lookahead-guesses", "15"],
    "lookahead W4 N4 G4": ["--method", "lookahead", "--num-draft", "16", "--lookahead-window", "4",
                           "--lookahead-ngram", "4", "--lookahead-guesses", "4"],
    "lookahead (controller)": ["--method", "lookahead"],
}
totals = {m: {"tokens": 0, "seconds": 0.0, "forwards": 0} for m in methods}
for p in prompts:
    for name, flags in methods.items():
        out = subprocess.run(
            [args.ahead, "generate", "--prompt", p, "--max-tokens", str(args.max_tokens), "--ignore-eos", "--json"] + flags,
            capture_output=True, text=True, check=True,
        )
        s = json.loads(out.stdout)["stats"]
        t = totals[name]
        t["tokens"] += s["generated_tokens"]
        t["seconds"] += s["generated_tokens"] / s["tokens_per_second"]
        t["forwards"] += s["target_forwards"]

base = totals["vanilla"]["tokens"] / totals["vanilla"]["seconds"]
print(f"{len(prompts)} prompts x {args.max_tokens} tokens, greedy")
print(f"{'method':<22}{'mean accepted':>14}{'tokens/s':>12}{'vs vanilla':>12}")
for name, t in totals.items():
    tps = t["tokens"] / t["seconds"]
    print(f"{name:<22}{t['tokens'] / t['forwards']:>14.2f}{tps:>12.0f}{tps / base:>11.2f}x")
